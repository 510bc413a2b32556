"""``ioprofiler report LOG -o report.html``: the kept requests in one HTML file."""

from __future__ import annotations

import argparse
import heapq
import json
from pathlib import Path

from ioprofiler.logread import Filter, records
from ioprofiler.render.report import render_report


def run_report(args: argparse.Namespace, keep: Filter) -> int:
    chosen = heapq.nlargest(
        args.slowest, records(args.log, keep), key=lambda r: r.get("duration_ms", 0)
    )
    chosen.sort(key=lambda r: r.get("ts", 0))
    title = args.title or f"ioprofiler: {len(chosen)} kept requests from {args.log}"
    Path(args.output).write_text(render_report(chosen, title), encoding="utf-8")
    if args.json:
        print(json.dumps({"output": str(args.output), "requests": len(chosen)}))
    else:
        print(f"{args.output}: {len(chosen)} kept requests")
    return 0
