"""``ioprofiler show`` and ``ioprofiler tail``: kept requests as the listing, or one line each,
each with its cause (:func:`ioprofiler.cause.cause_of`): the last column of ``--list``, the
line under each headline, the first line of ``show LOG ID``."""

from __future__ import annotations

import argparse
import heapq
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from rich.text import Text

from ioprofiler.cause import cause_of
from ioprofiler.cli.output import Output, escaped
from ioprofiler.logread import (
    GAP,
    MARKER,
    Filter,
    entries,
    follow,
    gap_notice,
    marker_notice,
    records,
)
from ioprofiler.render.console import SLOW_MS, trace_renderables
from ioprofiler.stored import load
from ioprofiler.words import counted

_CANDIDATES_SHOWN = 20  # ids listed when a prefix matches several requests


def headline(record: dict[str, Any], width: int | None = None, cause: bool = False) -> Text:
    """``2026-11-27T03:12:01.512 4f2a… GET /listing/7 500 812.0 ms, I/O 640.2 ms, 9 calls
    route /listing/<int:id>  kept: slow, status  web1 pid 4121``: one line, or, when
    ``width`` is given and it would not fit, the request on the first line and the rest on
    indented lines below. ``cause`` adds the request's cause last (``cause: N+1: …``)."""
    status = record.get("status", 0)
    request = Text()
    request.append(f"{record.get('time', '')[:23]} ", style="dim")
    request.append(f"{record.get('id', '')} ", style="bold")
    request.append(f"{record.get('method', '')} {record.get('path', '')} ")
    request.append(str(status), style="bold red" if str(status).startswith("5") else "green")
    request.append(f" {record.get('duration_ms', 0):.1f} ms", style="bold yellow")
    request.append(
        f", I/O {record.get('io_ms', 0):.1f} ms, {counted(record.get('calls', 0), 'call')}"
    )
    parts = [request]
    if record.get("route"):
        parts.append(Text(f"route {record['route']}", style="cyan"))
    reasons = ", ".join(record.get("reasons") or [record.get("reason", "?")])
    parts.append(Text(f"kept: {reasons}", style="magenta"))
    parts.append(Text(f"{record.get('host', '')} pid {record.get('pid', '')}", style="dim"))
    if cause:
        line = cause_line(record)
        if width is not None:  # alone on its line at most: cut to fit it
            line.truncate(max(width - 4, 20), overflow="ellipsis")
        parts.append(line)
    return _fitted(parts, width)


def cause_line(record: dict[str, Any]) -> Text:
    """``cause: N+1: SELECT … ran 12× on dbshard01 (3.2 ms) <- listing.py:88 in view``"""
    line = Text("cause: ", style="bold")
    line.append(cause_of(record).line(), style="yellow")
    return line


def _fitted(parts: list[Text], width: int | None) -> Text:
    """``parts`` two spaces apart, starting a new indented line where the next would not
    fit in ``width``."""
    parts = [escaped(part) for part in parts]  # measured as they will be printed
    lines = [parts[0].copy()]
    for part in parts[1:]:
        if width is not None and lines[-1].cell_len + 2 + part.cell_len > width:
            lines.append(Text("    ") + part)
        else:
            lines[-1].append("  ")
            lines[-1].append_text(part)
    return Text("\n").join(lines)


def print_record(
    out: Output, record: dict[str, Any], args: argparse.Namespace, cause_first: bool = False
) -> None:
    """A kept request (or a notice) as ``args`` asks: JSON, one line (``--list``, its cause
    last), or its headline, cause and listing (``cause_first``: the cause, then the rest)."""
    if args.json:
        out.json(record)
        return
    if record.get("type") == GAP:
        out.line(Text(gap_notice(record), style="bold red"))
        return
    if record.get("type") == MARKER:
        out.line(Text(marker_notice(record), style="bold cyan"))
        return
    if args.list:
        out.line(headline(record, out.width, cause=True))
        return
    if cause_first:
        out.line(cause_line(record))
    out.line(headline(record, out.width))
    if not cause_first:
        out.line(cause_line(record))
    for text in listing(record, callsites=args.callsites):
        out.line(text)
    out.line()


def listing(record: dict[str, Any], callsites: bool = False) -> list[Text]:
    """The request's calls, summary and findings as the live console prints them; each slow
    call, and with ``callsites`` every call, ends with where it was made."""
    trace, request = load(record)
    lines = trace_renderables(trace, request)[1:]  # the header: the headline says it
    for event, text in zip(trace.events, lines):  # noqa: B905 (the call lines come first)
        if event.callsite and (callsites or (event.duration_ms or 0) >= SLOW_MS):
            text.append(f"  <- {event.callsite}", style="dim")
    return lines


def _chosen(found: Iterable[dict[str, Any]], slowest: int | None) -> Iterable[dict[str, Any]]:
    if slowest is None:
        return found
    return heapq.nlargest(slowest, found, key=lambda r: r.get("duration_ms", 0))


def run_show(args: argparse.Namespace, keep: Filter) -> int:
    if args.id:
        return _show_one(args, keep)
    out = Output()
    found: Iterable[dict[str, Any]]
    if args.slowest is None:
        found = entries(args.log, keep, args.skipped)  # with the gaps in their place
    else:
        found = _chosen(records(args.log, keep, args.skipped), args.slowest)
    for record in found:
        print_record(out, record, args)
    return 0


def _show_one(args: argparse.Namespace, keep: Filter) -> int:
    """The request whose id is ``args.id`` or begins with it; several ids beginning with it
    are listed, not shown."""
    found = list(records(args.log, keep, args.skipped))
    exact = [record for record in found if record["id"] == args.id]
    ids = list(dict.fromkeys(record["id"] for record in found))
    if not found:
        print(f"ioprofiler: no kept request with id {args.id!r} in {args.log}", file=sys.stderr)
        return 1
    if not exact and len(ids) > 1:
        _tell_ambiguous(args.id, ids, found)
        return 1
    out = Output()
    for record in exact or found:
        print_record(out, record, args, cause_first=True)
    return 0


def _tell_ambiguous(prefix: str, ids: list[str], found: list[dict[str, Any]]) -> None:
    print(
        f"ioprofiler: {len(ids)} kept requests have ids beginning with {prefix!r}; "
        "give more of the id:",
        file=sys.stderr,
    )
    err = Output(sys.stderr)
    first_of = {}
    for record in found:
        first_of.setdefault(record["id"], record)
    for ident in ids[:_CANDIDATES_SHOWN]:
        err.line(headline(first_of[ident]))
    if len(ids) > _CANDIDATES_SHOWN:
        print(f"… and {len(ids) - _CANDIDATES_SHOWN} more", file=sys.stderr)


def _followed(args: argparse.Namespace, keep: Filter) -> Iterator[dict[str, Any]]:
    def waiting(message: str) -> None:
        Output(sys.stderr).line(f"ioprofiler: {message}")

    return follow(
        args.log,
        keep,
        from_start=args.from_start,
        skipped=args.skipped,
        gaps=True,
        waiting=waiting,
    )


def run_tail(args: argparse.Namespace, keep: Filter) -> int:
    out = Output()
    for record in _followed(args, keep):
        print_record(out, record, args)
    return 0
