"""``ioprofiler top``: what made the kept requests slow, added up, the most time first."""

from __future__ import annotations

import argparse

from ioprofiler.aggregate import BY, Row, Top
from ioprofiler.cli.output import Output
from ioprofiler.logread import Filter, records
from ioprofiler.render.words import counted

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
    if args.json:
        for row in rows:
            out.json({"by": args.by, **row.as_dict()})
        return 0
    out.line(
        f"{counted(top.requests, 'kept request')}, {top.request_ms / 1000:.1f} s in all; "
        f"by {args.by}, the most time first"
    )
    keys = _KEY_COLUMNS.get(args.by, [args.by])
    out.table(
        [*keys, "count", "total ms", "median ms", "p95 ms", "share"],
        [[*_key_cells(row, len(keys)), *_figures(row)] for row in rows],
        numeric={len(keys) + n for n in range(5)},
    )
    return 0


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
