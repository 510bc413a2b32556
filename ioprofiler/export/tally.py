"""One request's I/O added up per target, in one cheap pass over its events.

Exporters run this on the request's thread, so it only counts: names are made later,
elsewhere. The application's calls (statements, cache commands) count as calls; the round
trips around them (connects, commits, rollbacks) add to their target's I/O time only; pool
waits and connects are also counted for the request as a whole, and pool waits are not
I/O time.

>>> tally = RequestTally.of(trace)
>>> tally.targets[("db", engine_name)].calls
3
"""

from __future__ import annotations

from typing import Any

from ioprofiler.event import CONNECT, CONNECTION_OPS, POOL_WAIT
from ioprofiler.trace import Trace


class TargetTally:
    """One target's part of a request: statements or calls, time, hits, misses, errors."""

    __slots__ = ("calls", "ns", "hits", "misses", "errors")

    def __init__(self) -> None:
        self.calls = self.ns = self.hits = self.misses = self.errors = 0

    @property
    def ms(self) -> float:
        return self.ns / 1e6


class RequestTally:
    """Per (kind, raw target): a :class:`TargetTally`; and the request's pool waits and
    connects. ``io_ns`` is every round trip's time, pool waits excluded."""

    __slots__ = ("targets", "io_ns", "pool_waits", "pool_wait_ns", "connects")

    def __init__(self) -> None:
        self.targets: dict[tuple[str, Any], TargetTally] = {}
        self.io_ns = 0
        self.pool_waits = 0
        self.pool_wait_ns = 0
        self.connects = 0

    @property
    def io_ms(self) -> float:
        return self.io_ns / 1e6

    @classmethod
    def of(cls, trace: Trace) -> RequestTally:
        tally = cls()
        targets = tally.targets
        io_ns = 0
        for event in trace._events:
            end = event.end_ns
            ns = 0 if end is None else end - event.start_ns
            op = event.op
            if op in CONNECTION_OPS:
                if op == POOL_WAIT:
                    tally.pool_waits += 1
                    tally.pool_wait_ns += ns
                    continue
                if op == CONNECT:
                    tally.connects += 1
                counted = 0
            else:
                counted = 1
            key = (event.kind, event._target)
            target = targets.get(key)
            if target is None:
                target = targets[key] = TargetTally()
            target.calls += counted
            target.ns += ns
            io_ns += ns
            if event.hit is not None:
                target.misses += event.miss_count or 0
                target.hits += event.hit_count or 0
            if event.error is not None:
                target.errors += 1
        tally.io_ns = io_ns
        if trace._overflow:
            tally._add_overflow(trace)
        return tally

    @classmethod
    def past_bound(cls, trace: Trace) -> RequestTally:
        """The calls past the trace's ``max_events`` alone (the trace counted, not kept them)."""
        tally = cls()
        tally._add_overflow(trace)
        return tally

    def _add_overflow(self, trace: Trace) -> None:
        """Calls past ``max_events``: counted per target and op."""
        for (kind, raw, op), counted in trace._overflow_items():
            if op == POOL_WAIT:
                self.pool_waits += counted.calls
                self.pool_wait_ns += counted.ns
                continue
            if op == CONNECT:
                self.connects += counted.calls
            target = self.targets.get((kind, raw))
            if target is None:
                target = self.targets[(kind, raw)] = TargetTally()
            if op not in CONNECTION_OPS:
                target.calls += counted.calls
            target.ns += counted.ns
            target.hits += counted.hits
            target.misses += counted.misses
            target.errors += counted.errors
            self.io_ns += counted.ns
