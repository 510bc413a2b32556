"""``ioprofiler report LOG -o report.html``: the incident in one HTML file.

The overview comes from the recorders' summary records (every request: rate, p95, I/O per
request by target, per time bucket) and the log's markers; the top causes from every kept
request that passes the filters; the list from the ``--slowest`` N of them. With two
releases in the log, the regressions ``ioprofiler diff`` names (when it is installed: the
module is looked for when the report is made).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import math
import os
import stat
import statistics
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from ioprofiler.cause import Causes
from ioprofiler.cli.output import Output
from ioprofiler.diff import release_regressions
from ioprofiler.logread import MARKER, SUMMARY, Filter, log_files, records, summaries
from ioprofiler.render.report import (
    Axis,
    Chart,
    Marker,
    Overview,
    Shape,
    TopCause,
    render_report,
)
from ioprofiler.render.report_chart import Series, local_time, zone
from ioprofiler.sql_text import visible
from ioprofiler.summary import Histogram, RouteTotals
from ioprofiler.words import counted

BUCKETS = 90  # about this many points per chart, at most
ROUTES_CHARTED = 4  # the busiest routes get their own p95 line
TARGETS_CHARTED = 5  # the targets with the most I/O get their own line, the rest "other"
TOP_CAUSES = 10
TOP_SHAPES = 10
_NICE_BUCKETS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def run_report(args: argparse.Namespace, keep: Filter) -> int:
    causes = Causes("cause")
    releases: dict[str, list[float]] = {}  # release: [first ts, last ts]

    def counted_in(found: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        for record in found:
            causes.add(record)
            _seen(releases, record)
            yield record

    chosen = heapq.nlargest(
        args.slowest,
        counted_in(records(args.log, keep, args.skipped)),
        key=lambda r: r.get("duration_ms", 0),
    )
    read = list(summaries(args.log, keep, markers=True))
    for record in read:
        _seen(releases, record)
    overview = overview_of(read, causes, len(chosen), releases)
    title = args.title or f"ioprofiler: {len(chosen)} kept requests from {args.log}"
    html = render_report(
        chosen, title, overview=overview, regressions=regressions(args.log, releases)
    )
    try:
        write_like_log(args.output, html, args.log)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"ioprofiler: cannot write {visible(args.output)}: {reason}", file=sys.stderr)
        return 1
    out = Output()
    if args.json:
        out.json({"output": str(args.output), "requests": len(chosen)})
    else:
        out.line(f"{args.output}: {counted(len(chosen), 'kept request')}")
    return 0


def _seen(releases: dict[str, list[float]], record: dict[str, Any]) -> None:
    release, ts = record.get("release"), record.get("ts")
    if isinstance(release, str) and isinstance(ts, (int, float)):
        span = releases.setdefault(release, [ts, ts])
        span[0], span[1] = min(span[0], ts), max(span[1], ts)


def regressions(log: str, releases: dict[str, list[float]]) -> list[str]:
    """The lines of ``ioprofiler diff``'s regressions between the log's two most recent
    releases; none when it holds fewer than two."""
    if len(releases) < 2:
        return []
    return [regression.line() for regression in release_regressions([log])]


def bucket_seconds(span: float, interval: float) -> float:
    """A bucket length that gives at most about :data:`BUCKETS` points over ``span`` and
    holds about two of the summaries' ``interval`` or more (with one, a bucket that two
    intervals end in doubles the rate drawn: a saw instead of a line)."""
    wanted = max(span / BUCKETS, 2 * interval)
    return next((b for b in _NICE_BUCKETS if b >= wanted * 0.999), 3600 * math.ceil(wanted / 3600))


def overview_of(
    read: Sequence[dict[str, Any]],
    causes: Causes,
    listed: int,
    releases: dict[str, list[float]],
) -> Overview:
    """Charts, markers, facts and causes from the summary and marker records ``read`` and
    the kept requests added to ``causes``."""
    sums = [r for r in read if r.get("type") == SUMMARY]
    markers = [
        Marker(float(r["ts"]), str(r.get("text", "")), r.get("release"))
        for r in read
        if r.get("type") == MARKER
    ]
    facts, notes = [], []
    top_causes = [
        TopCause(causes.parts(row.key), row.count, row.total_ms, row.share, causes.example(row.key))
        for row in causes.rows(TOP_CAUSES)
    ]
    kept = f"{counted(causes.requests, 'kept request')} (slow, failing or sampled)"
    if not sums:
        facts.append(f"{kept}; the {listed} slowest are listed below.")
        notes.append(
            "No summary records in this log and time: the charts need a recorder that writes "
            "them (Recorder(summary_every=10), the default)."
        )
        return Overview(
            markers=markers,
            facts=[*facts, *_release_facts(releases)],
            causes=top_causes,
            notes=notes,
        )
    start = min(float(r["from_ts"]) for r in sums)
    end = max(float(r["ts"]) for r in sums)
    for marker in markers:
        start, end = min(start, marker.ts), max(end, marker.ts)
    interval = statistics.median(float(r["ts"]) - float(r["from_ts"]) for r in sums)
    bucket_s = bucket_seconds(end - start, interval)
    first = math.floor(start / bucket_s)
    count = math.floor(end / bucket_s) - first + 1
    buckets: list[dict[str, RouteTotals]] = [{} for _ in range(count)]
    everything: dict[str, RouteTotals] = {}
    for record in sums:
        cell = buckets[min(count - 1, math.floor(float(record["ts"]) / bucket_s) - first)]
        for route, totals in record["routes"].items():
            cell.setdefault(route, RouteTotals()).merge(totals)
            everything.setdefault(route, RouteTotals()).merge(totals)
    axis = Axis(first * bucket_s, bucket_s, count)
    requests = sum(t.requests for t in everything.values())
    facts.append(
        f"{counted(requests, 'request')} counted by the recorders' summaries from "
        f"{local_time(start, seconds=True, date=True)} to "
        f"{local_time(end, seconds=True, date=True)} {zone()}, in buckets of "
        f"{_length(bucket_s)}; {kept}; the {listed} slowest are listed below."
    )
    return Overview(
        charts=_charts(buckets, everything, bucket_s),
        axis=axis,
        markers=markers,
        facts=[*facts, *_release_facts(releases)],
        causes=top_causes,
        shapes=_shapes(everything),
        notes=notes,
    )


def _length(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    return f"{seconds / 60:g} min" if seconds < 3600 else f"{seconds / 3600:g} h"


def _release_facts(releases: dict[str, list[float]]) -> list[str]:
    if not releases:
        return []
    ordered = sorted(releases.items(), key=lambda item: item[1][0])
    spans = ", ".join(
        f"{name} ({local_time(a, seconds=True)}–{local_time(b, seconds=True)})"
        for name, (a, b) in ordered
    )
    return [f"{'Release' if len(ordered) == 1 else 'Releases'}: {spans}."]


def _charts(
    buckets: list[dict[str, RouteTotals]], everything: dict[str, RouteTotals], bucket_s: float
) -> list[Chart]:
    busiest = sorted(everything, key=lambda route: -everything[route].requests)
    rate = [sum(t.requests for t in cell.values()) / bucket_s for cell in buckets]
    errors = [sum(t.status.get("5xx", 0) for t in cell.values()) / bucket_s for cell in buckets]

    def p95(cell: dict[str, RouteTotals], routes: Iterable[str]) -> float | None:
        merged = Histogram()
        for route in routes:
            if route in cell:
                merged.merge(cell[route].duration)
        return merged.quantile(0.95)

    p95_series = [Series("all routes", [p95(cell, cell) for cell in buckets])]
    p95_series += [
        Series(route, [p95(cell, (route,)) for cell in buckets])
        for route in busiest[:ROUTES_CHARTED]
    ]
    target_ms: dict[str, float] = {}
    for totals in everything.values():
        for name, (_, ms) in totals.targets.items():
            target_ms[name] = target_ms.get(name, 0.0) + ms
    charted = sorted(target_ms, key=lambda name: -target_ms[name])[:TARGETS_CHARTED]
    io_series = []
    for name in [*charted, *(["other"] if len(target_ms) > len(charted) else [])]:
        values: list[float | None] = []
        for cell in buckets:
            detailed = sum(t.detailed for t in cell.values())
            ms = sum(
                pair[1]
                for t in cell.values()
                for target, pair in t.targets.items()
                if target == name or (name == "other" and target not in charted)
            )
            values.append(ms / detailed if detailed else None)
        io_series.append(Series(name, values))
    return [
        Chart(
            "Requests per second",
            [Series("all", rate), Series("5xx", errors)],
            digits=2,
            ident="chart-rate",
        ),
        Chart("p95 duration (ms)", p95_series, ident="chart-p95"),
        Chart("I/O per request by target (ms)", io_series, digits=2, ident="chart-io"),
    ]


def _shapes(everything: dict[str, RouteTotals]) -> list[Shape]:
    detailed = sum(t.detailed for t in everything.values())
    shapes: dict[str, list[float]] = {}
    for totals in everything.values():
        for (_, text), (calls, ms) in totals.shapes.items():
            pair = shapes.setdefault(text, [0, 0.0])
            pair[0] += calls
            pair[1] += ms
    ranked = sorted(shapes.items(), key=lambda item: (-item[1][1], item[0]))[:TOP_SHAPES]
    return [
        Shape(text, int(calls), ms, calls / detailed if detailed else None)
        for text, (calls, ms) in ranked
    ]


def write_like_log(output: str, text: str, log: str) -> None:
    """Writes ``text`` to ``output`` with the permissions of the log it was read from: the
    report holds the same data (a log kept 0640 gives a report 0640, not 0644).

    A file is written beside ``output`` and renamed over it, so that a full disk or a write
    that fails leaves the report that was there, never half of a new one; a device or a pipe
    (``-o /dev/stdout``) is written as it is. OSError when it cannot be written."""
    mode = stat.S_IMODE(os.stat(log_files(log)[-1]).st_mode)
    try:
        in_place = not stat.S_ISREG(os.stat(output).st_mode)
    except FileNotFoundError:
        in_place = False
    if in_place:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    directory, name = os.path.split(os.path.abspath(output))
    partial = os.path.join(directory, f".{name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(fd, mode)  # whatever the umask
            handle.write(text)
        os.replace(partial, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
