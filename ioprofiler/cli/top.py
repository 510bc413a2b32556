"""``ioprofiler top``: what made the kept requests slow, added up, the most time first."""

from __future__ import annotations

import argparse

from ioprofiler.aggregate import BY, Top
from ioprofiler.cli.output import Output
from ioprofiler.logread import Filter, records

__all__ = ["BY", "run_top"]


def run_top(args: argparse.Namespace, keep: Filter) -> int:
    top = Top(args.by)
    for record in records(args.log, keep):
        top.add(record)
    rows = top.rows(args.limit)
    out = Output()
    if args.json:
        for row in rows:
            out.json({"by": args.by, **row.as_dict()})
        return 0
    out.line(
        f"{top.requests} kept requests, {top.request_ms / 1000:.1f} s in all; by {args.by}, "
        "the most time first"
    )
    out.table(
        [args.by, "count", "total ms", "median ms", "p95 ms", "share"],
        [
            [
                row.key,
                str(row.count),
                f"{row.total_ms:.1f}",
                f"{row.median_ms:.3f}",
                f"{row.p95_ms:.3f}",
                f"{row.share:.1%}",
            ]
            for row in rows
        ],
        numeric={1, 2, 3, 4, 5},
    )
    return 0
