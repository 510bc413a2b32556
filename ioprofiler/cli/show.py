"""``ioprofiler show`` and ``ioprofiler tail``: kept requests as the listing, or one line each."""

from __future__ import annotations

import argparse
import heapq
from collections.abc import Iterable
from typing import Any

from rich.text import Text

from ioprofiler.cli.output import Output
from ioprofiler.logread import Filter, follow, records
from ioprofiler.render.console import trace_renderables
from ioprofiler.sql_text import visible
from ioprofiler.stored import load


def headline(record: dict[str, Any]) -> Text:
    """``2026-11-27T03:12:01+00:00 4f2a… GET /listing/7 500 812.0 ms  kept: slow, status``"""
    status = record.get("status", 0)
    text = Text()
    text.append(f"{record.get('time', '')[:23]} ", style="dim")
    text.append(f"{visible(str(record.get('id', '')))} ", style="bold")
    text.append(f"{visible(record.get('method', ''))} {visible(record.get('path', ''))} ")
    text.append(str(status), style="bold red" if str(status).startswith("5") else "green")
    text.append(f" {record.get('duration_ms', 0):.1f} ms", style="bold yellow")
    text.append(f", I/O {record.get('io_ms', 0):.1f} ms, {record.get('calls', 0)} calls")
    if record.get("route"):
        text.append(f"  route {visible(record['route'])}", style="cyan")
    reasons = ", ".join(record.get("reasons") or [record.get("reason", "?")])
    text.append(f"  kept: {reasons}", style="magenta")
    text.append(
        f"  {visible(str(record.get('host', '')))} pid {record.get('pid', '')}", style="dim"
    )
    return text


def print_record(out: Output, record: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        out.json(record)
        return
    out.line(headline(record))
    if args.list:
        return
    trace, request = load(record)
    for text in trace_renderables(trace, request)[1:]:
        out.line(text)
    out.line()


def _chosen(found: Iterable[dict[str, Any]], slowest: int | None) -> Iterable[dict[str, Any]]:
    if slowest is None:
        return found
    return heapq.nlargest(slowest, found, key=lambda r: r.get("duration_ms", 0))


def run_show(args: argparse.Namespace, keep: Filter) -> int:
    out = Output()
    shown = 0
    for record in _chosen(records(args.log, keep), args.slowest):
        print_record(out, record, args)
        shown += 1
    if args.id and not shown:
        print(f"ioprofiler: no kept request with id {args.id!r} in {args.log}")
        return 1
    return 0


def run_tail(args: argparse.Namespace, keep: Filter) -> int:
    out = Output()
    for record in follow(args.log, keep, from_start=args.from_start):
        print_record(out, record, args)
    return 0
