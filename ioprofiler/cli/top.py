"""``ioprofiler top``: what made the kept requests slow, added up, the most time first; and,
``--by route``, every request of each route from the recorder's summary records: its rate
and its percentiles, which the kept requests (the slow ones) cannot give."""

from __future__ import annotations

import argparse

from ioprofiler.aggregate import BY, Row, Top
from ioprofiler.cli.output import Output
from ioprofiler.logread import Filter, records, summaries
from ioprofiler.render.words import counted
from ioprofiler.summary import ACCURACY, RouteTotals, merge_routes

__all__ = ["BY", "run_top"]

# Keys made of two parts ("POOL WAIT  dbshard01", "dbshard03  SELECT …") are shown as two
# columns, so that the second part lines up whatever the length of the first.
_KEY_COLUMNS = {"wait": ["wait", "target"], "statement": ["target", "statement"]}
_KEY_SEPARATOR = "  "


def run_top(args: argparse.Namespace, keep: Filter) -> int:
    top = Top(args.by)
    for record in records(args.log, keep, args.skipped):
        top.add(record)
    rows = top.rows(args.limit)
    out = Output()
    every = _every_request(args, keep) if args.by == "route" else None
    if args.json:
        for row in rows:
            out.json({"by": args.by, "from": "kept", **row.as_dict()})
        for route_row in every or ():
            out.json({"by": "route", "from": "summaries", **route_row})
        return 0
    out.line(
        f"{counted(top.requests, 'kept request')} (slow, failing or sampled: not every "
        f"request), {top.request_ms / 1000:.1f} s in all; by {args.by}, the most time first"
    )
    keys = _KEY_COLUMNS.get(args.by, [args.by])
    out.table(
        [*keys, "count", "total ms", "median ms", "p95 ms", "share"],
        [[*_key_cells(row, len(keys)), *_figures(row)] for row in rows],
        numeric={len(keys) + n for n in range(5)},
    )
    if every is not None:
        _print_every_request(out, every)
    return 0


def _every_request(args: argparse.Namespace, keep: Filter) -> list[dict[str, object]]:
    """Per route, from the summary records in the filter's time: requests, rate,
    percentiles of duration and I/O time, server errors; the busiest first."""
    read = list(summaries(args.log, keep))  # the kept requests' pass counted damaged lines
    if not read:
        return []
    seconds = max(r["ts"] for r in read) - min(r["from_ts"] for r in read)
    routes = merge_routes(read)
    ranked = sorted(routes.items(), key=lambda item: -item[1].requests)[: args.limit]
    return [_route_row(route, totals, seconds) for route, totals in ranked]


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


def _key_cells(row: Row, columns: int) -> list[str]:
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
