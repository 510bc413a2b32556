"""One request's I/O added up per target, in one cheap pass over its events.

Exporters run this on the request's thread, so it only counts: names are made later,
elsewhere. Statements (``execute``, ``executemany``) count as queries; the other database
round trips (commits, connects) add to their target's I/O time, and pool waits and
connects are also counted for the request as a whole.

>>> tally = RequestTally.of(trace)
>>> tally.targets[("db", engine_name)].calls
3
"""

from __future__ import annotations

from typing import Any

from ioprofiler.event import DB
from ioprofiler.trace import Trace

STATEMENT_OPS = frozenset({"execute", "executemany"})
POOL_WAIT = "pool_wait"
CONNECT = "connect"


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
            kind = event.kind
            op = event.op
            if kind == DB and op not in STATEMENT_OPS:
                if op == POOL_WAIT:
                    tally.pool_waits += 1
                    tally.pool_wait_ns += ns
                    continue
                if op == CONNECT:
                    tally.connects += 1
                counted = 0
            else:
                counted = 1
            key = (kind, event._target)
            target = targets.get(key)
            if target is None:
                target = targets[key] = TargetTally()
            target.calls += counted
            target.ns += ns
            io_ns += ns
            if event.hit is not None:
                missed = len(event.missed_keys or ())
                target.misses += missed
                target.hits += len(event.keys) - missed
            if event.error is not None:
                target.errors += 1
        tally.io_ns = io_ns
        if trace._overflow:
            tally._add_overflow(trace)
        return tally

    def _add_overflow(self, trace: Trace) -> None:
        """Calls past ``max_events``: counted per target, without their ops."""
        for key, counted in trace._overflow_items():
            target = self.targets.get(key)
            if target is None:
                target = self.targets[key] = TargetTally()
            target.calls += counted.calls
            target.ns += counted.ns
            target.hits += counted.hits
            target.misses += counted.misses
            target.errors += counted.errors
            self.io_ns += counted.ns
