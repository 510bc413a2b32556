"""``ioprofiler top``: what made the kept requests slow, added up, the most time first; and,
from the recorder's summary records, what every request did, which the kept requests (the
slow ones) cannot say: ``--by route``, each route's rate and percentiles; ``--by shape``,
each statement shape's calls and time; ``--by finding``, how many requests had each kind.

    ioprofiler top LOG --by finding     each finding (kind, target, shape, callsite), its time
    ioprofiler top LOG --by callsite    every call by where it was made
    ioprofiler top LOG --by shape       every statement by its shape, whatever the shard
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ioprofiler import cause
from ioprofiler.aggregate import BY as KEPT_BY
from ioprofiler.aggregate import Row, Top
from ioprofiler.cause import Causes
from ioprofiler.cli.output import Output
from ioprofiler.findings import TITLES
from ioprofiler.logread import (
    REQUEST,
    SITED,
    STATEMENTS,
    TARGETS,
    WAITS,
    Filter,
    kept_and_summaries,
    summaries_note,
)
from ioprofiler.summary import ACCURACY, RouteTotals, merge_routes
from ioprofiler.words import counted

__all__ = ["BY", "EVENTS_READ", "run_top"]

BY = KEPT_BY + cause.BY  # --by's choices

# Keys made of two parts ("POOL WAIT  dbshard01", "dbshard03  SELECT …") are shown as two
# columns, so that the second part lines up whatever the length of the first.
_KEY_COLUMNS = {
    "wait": ["wait", "target"],
    "statement": ["target", "statement"],
    "finding": ["finding", "target", "shape", "callsite"],
}
_KEY_SEPARATOR = "  "


# Which events of each kept request (and which of their fields) a grouping adds up: the
# rest of the line is not parsed (logread.kept_and_summaries).
EVENTS_READ = {
    "route": None,
    "target": TARGETS,
    "statement": STATEMENTS,
    "wait": WAITS,
    "shape": STATEMENTS,
    "callsite": SITED,
    "finding": None,  # with the findings: the events they are about
}


def run_top(args: argparse.Namespace, keep: Filter) -> int:
    top: Top | Causes = Causes(args.by) if args.by in cause.BY else Top(args.by)
    read: list[dict[str, object]] = []  # the summary records, when a table reads them
    wanted = args.by in _EVERY_REQUEST
    for kind, record in kept_and_summaries(
        args.log,
        keep,
        args.skipped,
        events=EVENTS_READ[args.by],
        findings=args.by == "finding",
        summaries=wanted,
    ):
        if kind == REQUEST:
            top.add(record)
        else:
            read.append(record)
    rows = top.rows(args.limit)
    out = Output()
    every = _EVERY_REQUEST[args.by](args, read) if wanted else None
    note = summaries_note(keep) if every is not None else None
    if args.json:
        for row in rows:
            out.json({"by": args.by, "from": "kept", **row.as_dict()})
        for every_row in every or ():
            out.json({"by": args.by, "from": "summaries", **every_row})
        if note is not None:
            print(f"ioprofiler: {note}", file=sys.stderr)
        return 0
    out.line(
        f"{counted(top.requests, 'kept request')} (slow, failing or sampled: not every "
        f"request), {top.request_ms / 1000:.1f} s in all; by {args.by}, the most time first"
    )
    keys = _KEY_COLUMNS.get(args.by, [args.by])
    count = cause.COUNTS.get(args.by, "count")
    out.table(
        [*keys, count, "total ms", "median ms", "p95 ms", "share"],
        [[*_cells(top, row, len(keys)), *_figures(row)] for row in rows],
        numeric={len(keys) + n for n in range(5)},
    )
    if args.by == "callsite":
        out.line()
        out.line("callsites are in the kept requests only: the summaries count shapes, not lines")
    elif every is not None:
        _EVERY_PRINTED[args.by](out, every)
        if note is not None:
            out.line(note)
    return 0


def _every_request(args: argparse.Namespace, read: list[Any]) -> list[dict[str, object]]:
    """Per route, from the summary records in the filter's time: requests, rate,
    percentiles of duration and I/O time, server errors; the busiest first."""
    if not read:
        return []
    seconds = max(r["ts"] for r in read) - min(r["from_ts"] for r in read)
    routes = merge_routes(read)
    ranked = sorted(routes.items(), key=lambda item: -item[1].requests)[: args.limit]
    return [_route_row(route, totals, seconds) for route, totals in ranked]


def _every_shape(args: argparse.Namespace, read: list[Any]) -> list[dict[str, object]]:
    """Per statement shape, whatever its target, from the summary records: calls, time,
    calls per request, on how many targets; the most time first."""
    routes = merge_routes(read)
    detailed = sum(totals.detailed for totals in routes.values())
    shapes: dict[str, list[float]] = {}  # shape: [calls, ms]
    targets: dict[str, set[str]] = {}
    for totals in routes.values():
        for (target, text), (calls, ms) in totals.shapes.items():
            pair = shapes.setdefault(text, [0, 0.0])
            pair[0] += calls
            pair[1] += ms
            targets.setdefault(text, set()).add(target)
    ranked = sorted(shapes.items(), key=lambda item: (-item[1][1], item[0]))[: args.limit]
    return [
        {
            "shape": text,
            "calls": int(calls),
            "total_ms": round(ms, 3),
            "ms_per_call": round(ms / calls, 3) if calls else None,
            "per_request": round(calls / detailed, 3) if detailed else None,
            "targets": len(targets[text]),
        }
        for text, (calls, ms) in ranked
    ]


def _print_every_shape(out: Output, rows: list[dict[str, object]]) -> None:
    out.line()
    if not rows:
        out.line("no statement shapes in this log's summary records: none for every request")
        return
    out.line("every request, from the recorders' summaries: statement shapes by total time")
    out.table(
        ["shape", "calls", "total ms", "ms/call", "per request", "targets"],
        [
            [
                str(row["shape"]),
                str(row["calls"]),
                _cell(row["total_ms"], ".1f"),
                _cell(row["ms_per_call"], ".3f"),
                _cell(row["per_request"], ".2f"),
                str(row["targets"]),
            ]
            for row in rows
        ],
        numeric=set(range(1, 6)),
    )


def _every_finding(args: argparse.Namespace, read: list[Any]) -> list[dict[str, object]]:
    """Per finding kind, from the summary records: how many of the requests looked at had
    it (the summaries look at the first requests of each route per interval)."""
    routes = merge_routes(read)
    examined = sum(totals.examined for totals in routes.values())
    kinds: dict[str, int] = {}
    for totals in routes.values():
        for kind, requests in totals.findings.items():
            kinds[kind] = kinds.get(kind, 0) + requests
    ranked = sorted(kinds.items(), key=lambda item: (-item[1], item[0]))[: args.limit]
    return [
        {
            "finding": TITLES.get(kind, kind),
            "requests": requests,
            "examined": examined,
            "share": round(requests / examined, 4) if examined else None,
        }
        for kind, requests in ranked
    ]


def _print_every_finding(out: Output, rows: list[dict[str, object]]) -> None:
    out.line()
    if not rows:
        out.line("no findings in this log's summary records: none for every request")
        return
    examined = rows[0]["examined"]
    out.line(
        f"every request, from the recorders' summaries: findings among the "
        f"{counted(int(examined), 'request')} they examined"  # type: ignore[call-overload]
    )
    out.table(
        ["finding", "requests", "share"],
        [[str(r["finding"]), str(r["requests"]), _cell(r["share"], ".1%")] for r in rows],
        numeric={1, 2},
    )


def _route_row(route: str, totals: RouteTotals, seconds: float) -> dict[str, object]:
    duration, io = totals.duration, totals.io
    return {
        "route": route,
        "requests": totals.requests,
        "per_s": round(totals.requests / seconds, 3) if seconds > 0 else None,
        "p50_ms": _rounded(duration.quantile(0.5)),
        "p95_ms": _rounded(duration.quantile(0.95)),
        "p99_ms": _rounded(duration.quantile(0.99)),
        "io_p95_ms": _rounded(io.quantile(0.95)),
        "5xx": totals.status.get("5xx", 0),
    }


def _rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 3)


def _print_every_request(out: Output, rows: list[dict[str, object]]) -> None:
    out.line()
    if not rows:
        out.line("no summary records in this log's time: no figures for every request")
        return
    total = sum(int(row["requests"]) for row in rows)  # type: ignore[call-overload]
    out.line(
        f"every request, {counted(total, 'request')} counted by the recorders' summaries; "
        f"percentiles within {ACCURACY:.0%}"
    )
    out.table(
        ["route", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "I/O p95 ms", "5xx"],
        [
            [
                str(row["route"]),
                str(row["requests"]),
                _cell(row["per_s"], ".2f"),
                _cell(row["p50_ms"], ".1f"),
                _cell(row["p95_ms"], ".1f"),
                _cell(row["p99_ms"], ".1f"),
                _cell(row["io_p95_ms"], ".1f"),
                str(row["5xx"]),
            ]
            for row in rows
        ],
        numeric=set(range(1, 8)),
    )


def _cell(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


_EVERY_REQUEST = {"route": _every_request, "shape": _every_shape, "finding": _every_finding}
_EVERY_PRINTED = {
    "route": _print_every_request,
    "shape": _print_every_shape,
    "finding": _print_every_finding,
}


def _cells(top: Top | Causes, row: Row, columns: int) -> list[str]:
    if isinstance(top, Causes):
        cells = list(top.parts(row.key))
    else:
        cells = row.key.split(_KEY_SEPARATOR, columns - 1)
    return cells + [""] * (columns - len(cells))


def _figures(row: Row) -> list[str]:
    return [
        str(row.count),
        f"{row.total_ms:.1f}",
        f"{row.median_ms:.3f}",
        f"{row.p95_ms:.3f}",
        f"{row.share:.1%}",
    ]
