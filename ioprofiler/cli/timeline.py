"""``ioprofiler timeline``: per time bucket, each busy route's rate, slow rate and p95, from
the summary records of every request, with the deploy markers where they happened."""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import datetime, timezone
from typing import Any

from rich.text import Text

from ioprofiler.cli.output import Output
from ioprofiler.logread import MARKER, Filter, marker_notice, summaries, summaries_note
from ioprofiler.timeline import Row, Timeline, bucket_seconds


def add_parser(commands: argparse._SubParsersAction, filters: Any) -> None:
    p = commands.add_parser(
        "timeline",
        help="rate, slow rate and p95 per route over time",
        description=(
            "Per time bucket, each busy route's rate, slow rate and p95, from the recorders' "
            "summary records (every request, counted per route), with the deploy markers. "
            "--route, --since and --until pick what is shown; --path, --status and --min-ms "
            "cannot apply to summaries (no path, status or duration of a request of their own): "
            "given, they are said to be ignored."
        ),
    )
    filters(p)
    p.add_argument("--bucket", type=bucket_seconds, default=60, help="30s, 1m (default), 5m, 1h")
    p.add_argument("--routes", type=int, default=5, help="the busiest N routes (default 5)")
    p.add_argument(
        "--slow-ms", type=float, default=500.0, help="slower than this is slow (default 500)"
    )
    p.set_defaults(run=run_timeline)


def run_timeline(args: argparse.Namespace, keep: Filter) -> int:
    timeline = Timeline(args.bucket)
    marks: list[dict[str, Any]] = []
    for record in summaries(args.log, keep, args.skipped, markers=True):
        if record["type"] == MARKER:
            marks.append(record)
        else:
            timeline.add(record)
    out = Output()
    busiest = timeline.busiest(args.routes)
    note = summaries_note(keep)
    if args.json:
        for route, _ in busiest:
            for row in timeline.rows(route, args.slow_ms):
                out.json({"route": route, "time": _iso(row.start), **row.as_dict()})
        for mark in marks:
            out.json(mark)
        if note is not None:
            print(f"ioprofiler: {note}", file=sys.stderr)
        return 0
    if note is not None:
        out.line(note)
    if not busiest:
        out.line("no summary records in this log's time (recorders write one every 10 s)")
        return 0
    width = out.width or shutil.get_terminal_size((80, 24)).columns
    clock = 5 if args.bucket % 60 == 0 else 8  # 14:32 or 14:32:30
    table = {route: list(timeline.rows(route, args.slow_ms)) for route, _ in busiest}
    highest = max((row.p95_ms or 0 for rows in table.values() for row in rows), default=0)
    out.line(_cut(f"slow: over {args.slow_ms:g} ms; a full bar: p95 {highest:.1f} ms", width))
    for route, requests in busiest:
        out.line()
        out.line(Text(_cut(f"{route}  ({requests} requests)", width), style="bold"))
        out.line(Text(f"{'time':<{clock}} {'req/s':>7} {'slow/s':>7} {'p95 ms':>8}", style="dim"))
        _print_rows(out, table[route], marks, timeline, width, highest or 1)
    return 0


def _print_rows(
    out: Output,
    rows: list[Row],
    marks: list[dict[str, Any]],
    timeline: Timeline,
    width: int,
    highest: float,
) -> None:
    """The rows, a bar for p95 (``highest`` the full bar) in what is left of ``width``,
    each marker before its bucket's row."""
    marks = sorted(marks, key=lambda m: m["ts"])
    for row in rows:
        while marks and timeline.bucket_of(marks[0]["ts"]) * timeline.bucket_s <= row.start:
            out.line(Text(_cut(f"── {marker_notice(marks.pop(0))}", width), style="bold cyan"))
        p95 = "-" if row.p95_ms is None else f"{row.p95_ms:.1f}"
        clock = _clock(row.start, seconds=timeline.bucket_s % 60 != 0)
        figures = f"{clock} {row.per_s:7.2f} {row.slow_per_s:7.2f} {p95:>8} "
        bar = max(0, width - len(figures))
        length = 0 if row.p95_ms is None else round(bar * row.p95_ms / highest)
        line = Text(figures)
        line.append("█" * length, style="red" if row.slow_per_s else "green")
        out.line(line)
    for mark in marks:  # after the last bucket
        out.line(Text(_cut(f"── {marker_notice(mark)}", width), style="bold cyan"))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _clock(ts: float, seconds: bool) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M:%S" if seconds else "%H:%M")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()
