"""``ioprofiler report LOG -o report.html``: the kept requests in one HTML file."""

from __future__ import annotations

import argparse
import heapq
import os
import stat

from ioprofiler.cli.output import Output
from ioprofiler.logread import Filter, log_files, records
from ioprofiler.render.report import render_report


def run_report(args: argparse.Namespace, keep: Filter) -> int:
    chosen = heapq.nlargest(
        args.slowest,
        records(args.log, keep, args.skipped),
        key=lambda r: r.get("duration_ms", 0),
    )
    chosen.sort(key=lambda r: r.get("ts", 0))
    title = args.title or f"ioprofiler: {len(chosen)} kept requests from {args.log}"
    write_like_log(args.output, render_report(chosen, title), args.log)
    out = Output()
    if args.json:
        out.json({"output": str(args.output), "requests": len(chosen)})
    else:
        out.line(f"{args.output}: {len(chosen)} kept requests")
    return 0


def write_like_log(output: str, text: str, log: str) -> None:
    """Writes ``text`` to ``output`` with the permissions of the log it was read from: the
    report holds the same data (a log kept 0640 gives a report 0640, not 0644)."""
    mode = stat.S_IMODE(os.stat(log_files(log)[-1]).st_mode)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(fd, mode)  # also when the file was there before, and whatever the umask
        handle.write(text)
