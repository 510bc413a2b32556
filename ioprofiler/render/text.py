"""The listing: one line per call, in start order, then a summary.

[dbshard01] 0.902 ms SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773453
[memcache] 0.361 ms Cache HIT, keys: Etsy_Cache_Results:c812331f123321:1121231

2 calls, 1.263 ms of 4.080 ms: db 1 query 0.902 ms; cache 1 call 0.361 ms, 1 hit (100%)
  dbshard01  1 query  0.902 ms
  memcache   1 call   0.361 ms  1 hit
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ioprofiler.analysis import Summary, summarize
from ioprofiler.event import CACHE, DB, HTTP, Event
from ioprofiler.findings import Finding, find
from ioprofiler.roundtrip_text import op_count, ordered_ops
from ioprofiler.sql_text import visible
from ioprofiler.targets import batch_read_of
from ioprofiler.words import counted

if TYPE_CHECKING:
    from ioprofiler.trace import Trace


def event_line(event: Event, callsite: bool = False, description: str | None = None) -> str:
    duration = event.duration_ms
    timing = "running" if duration is None else f"{duration:.3f} ms"
    what = event.description() if description is None else description
    line = f"[{visible(event.target)}] {timing} {what}"
    if callsite and event.callsite:
        line += f"  <- {visible(event.callsite)}"
    return line


def _hits(hits: int, misses: int) -> str:
    reads = hits + misses
    if not reads:
        return ""
    return f"{counted(hits, 'hit')}, {counted(misses, 'miss')} ({hits / reads:.0%} hit ratio)"


def ops_text(ops: dict) -> str:
    """``1 pool wait 300.118 ms, 1 commit 0.412 ms``: connection ops with their time."""
    return ", ".join(f"{op_count(op, t.count)} {t.ms:.3f} ms" for op, t in ordered_ops(ops))


def summary_lines(summary: Summary) -> list[str]:
    io_ms = summary.ms_of()
    parts = []
    for kind, unit in ((DB, "query"), (CACHE, "call"), (HTTP, "call")):
        calls, ops = summary.calls_of(kind), summary.ops_of(kind)
        if not calls and not ops:
            continue
        calls_ms = summary.calls_ms_of(kind)
        part = f"{kind} {counted(calls, unit)} {calls_ms:.3f} ms"
        if ops:
            part += f", {ops_text(ops)}"
        if kind == CACHE:
            hits = _hits(summary.hits, summary.misses)
            part += f", {hits}" if hits else ""
        parts.append(part)
    head = (
        f"{counted(summary.calls, 'call')}, {io_ms:.3f} ms of I/O in {summary.elapsed_ms:.3f} ms"
        f" ({summary.unexplained_ms:.3f} ms not in I/O)"
    )
    lines = [head + (": " + "; ".join(parts) if parts else "")]
    width = max((len(t.target) for t in summary.targets), default=0)
    for total in summary.targets:
        unit = "query" if total.kind == DB else "call"
        calls = counted(total.calls, unit)
        line = f"  {visible(total.target).ljust(width)}  {calls:>11}  {total.ms:9.3f} ms"
        if total.ops:
            line += f"  incl. {ops_text(total.ops)}"
        if total.kind == CACHE and total.hits + total.misses:
            line += f"  {_hits(total.hits, total.misses)}"
        if total.errors:
            line += f"  {counted(total.errors, 'error')}"
        lines.append(line)
    for repeat in summary.repeats:
        if repeat.kind != CACHE:
            flag = ", likely N+1" if repeat.likely_n_plus_one else ""
            same = f", {repeat.identical} identical" if repeat.identical else ""
            line = (
                f"repeated {repeat.count}x on {visible(repeat.target)}{flag}{same}: {repeat.shape}"
            )
        else:
            same = f", {repeat.identical} for a key already read" if repeat.identical else ""
            line = (
                f"{repeat.count} single-key reads on {visible(repeat.target)}{same}: "
                f"could be one {batch_read_of(repeat.target)}"
            )
        if repeat.callsites:
            line += f"  <- {visible(repeat.callsites[0])}"
        lines.append(line)
    if summary.dropped:
        lines.append(
            f"{counted(summary.dropped, 'call')} not kept (max_events reached); "
            "the totals above include them"
        )
    if summary.running:
        lines.append(f"{counted(summary.running, 'call')} still running")
    if summary.profiler_errors:
        lines.append(f"ioprofiler failed to record {counted(summary.profiler_errors, 'call')}")
    return lines


MAX_NUMBERS_SHOWN = 8


def call_numbers(finding: Finding, numbers: dict[int, int]) -> str:
    """``#5, #7, #9 … (+9 more)``: the finding's calls as the listing numbers them."""
    shown = [f"#{numbers[id(e)]}" for e in finding.events if id(e) in numbers]
    if len(shown) > MAX_NUMBERS_SHOWN:
        more = len(shown) - MAX_NUMBERS_SHOWN
        return ", ".join(shown[:MAX_NUMBERS_SHOWN]) + f" … (+{more} more)"
    return ", ".join(shown)


def finding_lines(findings: Sequence[Finding], numbers: dict[int, int] | None = None) -> list[str]:
    """``findings (2):`` then each finding's message and its hint; with ``numbers``
    (``id(event)`` -> its number in the listing), the calls it is about."""
    if not findings:
        return []
    lines = [f"findings ({len(findings)}):"]
    for finding in findings:
        lines.append(f"  {visible(finding.message)}")
        hint = f"    fix: {finding.hint}"
        calls = call_numbers(finding, numbers) if numbers else ""
        lines.append(hint + (f"; calls {calls}" if calls else ""))
    return lines


def event_lines(events: Sequence[Event], callsites: bool = False) -> list[str]:
    """``[event_line(e, callsite=callsites) for e in events]``, the same text, made faster
    for long listings: each target's bracketed name is made once, the duration read
    directly. A target that cannot be a dict key is named per line, as event_line does."""
    lines = []
    append = lines.append
    prefixes: dict[Any, str] = {}  # raw target -> "[name] "
    for event in events:
        raw = event._target
        try:
            prefix = prefixes.get(raw)
        except TypeError:  # unhashable: named per line
            prefix = f"[{visible(event.target)}] "
        else:
            if prefix is None:
                prefix = prefixes[raw] = f"[{visible(event.target)}] "
        end = event.end_ns
        if end is None:
            line = f"{prefix}running {event.description()}"
        else:
            line = f"{prefix}{(end - event.start_ns) / 1e6:.3f} ms {event.description()}"
        if callsites:
            site = event.callsite
            if site:
                line += f"  <- {visible(site)}"
        append(line)
    return lines


def listing(trace: Trace, callsites: bool = False, slow_ms: float | None = None) -> str:
    """The whole listing of ``trace`` as text: the calls, the totals, then the findings
    (``slow_ms``: the slow-call threshold, default the configured one)."""
    lines = event_lines(trace.events, callsites)
    if lines:
        lines.append("")
    lines.extend(summary_lines(summarize(trace)))
    lines.extend(finding_lines(find(trace, slow_ms=slow_ms)))
    return "\n".join(lines)
