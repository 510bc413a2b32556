"""Every request counted: per route, what all requests did, in records that merge exactly.

The recorder keeps the requests worth looking at; this module counts *every* request, so
that "is this route slow?" is answered from all traffic, never from the kept ones alone:

>>> totals = Summary(max_routes=100)
>>> totals.count(request)            # on the request's thread: queued, nothing more
>>> routes = totals.take()           # on the writer's: per route, counted, the counters reset

Durations go into a :class:`Histogram` of log-scaled buckets whose relative error is fixed
(:data:`ACCURACY`, 1%): any percentile read back from it is within 1% of the exact one, and
two histograms, from two processes, files or hosts, merge exactly by adding bucket counts.

>>> merged = Histogram.from_json(a) + Histogram.from_json(b)
>>> merged.quantile(0.95)
182.4
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from ioprofiler.analysis import is_query
from ioprofiler.export.names import OTHER, UNKNOWN, NameBudget, target_name
from ioprofiler.export.tally import RequestTally
from ioprofiler.findings import find
from ioprofiler.sinks import FinishedRequest
from ioprofiler.sql_text import shape

ACCURACY = 0.01  # a bucket's value is within 1% of every duration counted in it
_GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
MIN_MS = 0.001  # durations below 1 µs are counted as 1 µs
MAX_SHAPES = 50  # statement shapes per route; the rest are added up as shape "other"
MAX_SHAPE_CHARS = 1000
MAX_ROUTE_CHARS = 200
MAX_CALLSITE_CHARS = 300


def bucket(ms: float) -> int:
    """The histogram bucket of a duration: ``GAMMA ** (i - 1) < ms <= GAMMA ** i``."""
    return math.ceil(math.log(ms if ms > MIN_MS else MIN_MS) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The value a bucket stands for: within :data:`ACCURACY` of everything in it."""
    return 2 * _GAMMA**index / (_GAMMA + 1)


class Histogram:
    """Counts per log-scaled bucket; mergeable exactly, percentiles within ACCURACY.

    >>> h = Histogram()
    >>> for ms in (1.0, 2.0, 3.0, 40.0):
    ...     h.add(ms)
    >>> round(h.quantile(0.5), 2)
    2.0
    """

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

    def add(self, ms: float, times: int = 1) -> None:
        index = bucket(ms)
        self.counts[index] = self.counts.get(index, 0) + times

    def merge(self, other: Histogram) -> None:
        counts = self.counts
        for index, count in other.counts.items():
            counts[index] = counts.get(index, 0) + count

    def __add__(self, other: Histogram) -> Histogram:
        merged = Histogram(self.counts)
        merged.merge(other)
        return merged

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Histogram) and self.counts == other.counts

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        """The value of rank ``ceil(q * n)`` (the exact one's bucket value); None if empty."""
        total = self.total
        if not total:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return bucket_value(index)
        return bucket_value(max(self.counts))  # pragma: no cover - rank <= total

    def to_json(self) -> dict[str, int]:
        return {str(index): count for index, count in sorted(self.counts.items())}

    @classmethod
    def from_json(cls, data: object) -> Histogram:
        """A histogram from its record form; ValueError for anything else."""
        if not isinstance(data, dict):
            raise ValueError("a histogram is an object of bucket: count")
        counts = {}
        for key, count in data.items():
            if type(count) is not int or count < 0:  # _whole, inline: read per bucket
                raise ValueError(f"a bucket's count must be a whole number, not {count!r}")
            counts[int(key)] = count  # int("x") raises ValueError: a damaged record
        return cls(counts)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class RouteTotals:
    """One route's requests in one interval: counts, histograms, I/O per target, statement
    shapes and findings. ``detailed`` is how many requests' I/O was added up: all of them,
    unless the writer fell behind; calls and shapes per request divide by it. ``findings``
    counts the requests that had each kind, among the ``examined`` ones. ``callsites``
    holds one place in the application's code that sent each shape (the first seen)."""

    __slots__ = (
        "requests",
        "status",
        "duration",
        "detailed",
        "io",
        "targets",
        "shapes",
        "callsites",
        "examined",
        "findings",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.status: dict[str, int] = {}
        self.duration = Histogram()
        self.detailed = 0
        self.io = Histogram()
        self.targets: dict[str, list[float]] = {}  # name: [calls, ms]
        self.shapes: dict[tuple[str, str], list[float]] = {}  # (target, shape): [calls, ms]
        self.callsites: dict[tuple[str, str], str] = {}  # (target, shape): file.py:88 in f
        self.examined = 0  # requests whose findings were looked for
        self.findings: dict[str, int] = {}  # kind: examined requests that had it

    def merge(self, other: RouteTotals) -> None:
        self.requests += other.requests
        _add_counts(self.status, other.status)
        self.duration.merge(other.duration)
        self.detailed += other.detailed
        self.io.merge(other.io)
        for name, (calls, ms) in other.targets.items():
            _add_pair(self.targets, name, calls, ms)
        for key, (calls, ms) in other.shapes.items():
            _add_pair(self.shapes, key, calls, ms)
        for key, site in other.callsites.items():
            self.callsites.setdefault(key, site)
        self.examined += other.examined
        _add_counts(self.findings, other.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "status": dict(sorted(self.status.items())),
            "duration_ms": self.duration.to_json(),
            "detailed": self.detailed,
            "io_ms": self.io.to_json(),
            "targets": {
                name: {"calls": int(calls), "ms": round(ms, 3)}
                for name, (calls, ms) in sorted(self.targets.items())
            },
            "shapes": [
                _shape_json(target, text, calls, ms, self.callsites.get((target, text)))
                for (target, text), (calls, ms) in sorted(
                    self.shapes.items(), key=lambda item: -item[1][1]
                )
            ],
            "examined": self.examined,
            "findings": dict(sorted(self.findings.items())),
        }

    @classmethod
    def from_json(cls, data: object) -> RouteTotals:
        """A route's totals from a summary record; ValueError when a field is damaged."""
        if not isinstance(data, dict):
            raise ValueError("a route's totals are an object")
        totals = cls()
        totals.requests = _count(data.get("requests"))
        totals.status = _counts(data.get("status", {}))
        totals.duration = Histogram.from_json(data.get("duration_ms", {}))
        totals.detailed = _count(data.get("detailed", 0))
        totals.io = Histogram.from_json(data.get("io_ms", {}))
        for name, target in _object(data.get("targets", {})).items():
            target = _object(target)
            totals.targets[name] = [_count(target.get("calls")), _ms(target.get("ms"))]
        shapes = data.get("shapes", [])
        if not isinstance(shapes, list):
            raise ValueError("shapes are a list")
        for item in shapes:
            item = _object(item)
            key = (str(item.get("target")), str(item.get("shape")))
            _add_pair(totals.shapes, key, _count(item.get("calls")), _ms(item.get("ms")))
            site = item.get("callsite")
            if site is not None:
                if not isinstance(site, str):
                    raise ValueError(f"a callsite is text, not {site!r}")
                totals.callsites.setdefault(key, site)
        totals.examined = _count(data.get("examined", 0))
        totals.findings = _counts(data.get("findings", {}))
        if totals.duration.total != totals.requests:
            raise ValueError("the duration histogram does not hold every request")
        return totals


def _shape_json(
    target: str, text: str, calls: float, ms: float, site: str | None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "target": target,
        "shape": text,
        "calls": int(calls),
        "ms": round(ms, 3),
    }
    if site is not None:
        item["callsite"] = site
    return item


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, not {value!r}")
    return value


def _count(value: object) -> int:
    if not _whole(value) or value < 0:  # type: ignore[operator]
        raise ValueError(f"expected a count, not {value!r}")
    return value  # type: ignore[return-value]


def _ms(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"expected milliseconds, not {value!r}")
    return float(value)


def _counts(value: object) -> dict[str, int]:
    return {str(key): _count(count) for key, count in _object(value).items()}


def _add_counts(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


def _add_pair(into: dict[Any, list[float]], key: Any, calls: float, ms: float) -> None:
    pair = into.get(key)
    if pair is None:
        into[key] = [calls, ms]
    else:
        pair[0] += calls
        pair[1] += ms


def merge_routes(records: Iterable[Mapping[str, Any]]) -> dict[str, RouteTotals]:
    """Summary records (from any processes, files, hosts) merged per route. A record's
    routes may be as written (JSON; a damaged one raises ValueError) or as
    :func:`ioprofiler.logread.summaries` reads them (:class:`RouteTotals`)."""
    merged: dict[str, RouteTotals] = {}
    for record in records:
        for route, data in _object(record.get("routes")).items():
            totals = data if isinstance(data, RouteTotals) else RouteTotals.from_json(data)
            merged.setdefault(route, RouteTotals()).merge(totals)
    return merged


class Summary:
    """Every request of one process, per route, since the last :meth:`take`.

    Routes past ``max_routes`` are counted as ``other`` (the StatsD exporter's rule,
    :class:`ioprofiler.export.names.NameBudget`); a request with no route as ``unknown``.
    The request's thread only queues a request (up to ``queue_size`` waiting); the writer's
    thread counts it and adds up its I/O in :meth:`fold`. A request that finds the queue
    full is counted at once, under a lock, without its I/O (``detailed`` says how many
    were added up). Findings are looked for in the first :data:`EXAMINED` requests of a
    route per record (``examined``): what they cost is bounded, whatever the traffic.
    """

    def __init__(self, max_routes: int = 100, queue_size: int = 10_000) -> None:
        self.routes = NameBudget("route", max_routes, spell=_route_text, option="max_routes")
        self.queue_size = queue_size
        self._totals: dict[str, RouteTotals] = {}  # the writer's
        self._waiting: deque[FinishedRequest] = deque()
        self._lock = threading.Lock()
        self._rushed: dict[str, RouteTotals] = {}  # counted when the queue was full

    # -- on the request's thread ---------------------------------------------------------

    def count(self, request: FinishedRequest) -> None:
        """Queue ``request`` to be counted; count it at once if the queue is full."""
        if len(self._waiting) < self.queue_size:
            self._waiting.append(request)
        else:
            with self._lock:
                _count_request(self._route(self._rushed, request), request)

    # -- on the writer's thread ----------------------------------------------------------

    def fold(self) -> None:
        """Count the queued requests and add up their I/O."""
        waiting = self._waiting
        while waiting:
            request = waiting.popleft()
            totals = self._route(self._totals, request)
            _count_request(totals, request)
            _add_io(totals, request)

    def take(self) -> dict[str, RouteTotals]:
        """The totals so far, per route; the counters start again from zero."""
        self.fold()
        taken, self._totals = self._totals, {}
        with self._lock:
            rushed, self._rushed = self._rushed, {}
        _merge_into(taken, rushed)
        for totals in taken.values():
            bounded_shapes(totals)
        return taken

    def give_back(self, totals: dict[str, RouteTotals]) -> None:
        """Totals that could not be written: they go into the next record."""
        _merge_into(self._totals, totals)

    def _route(self, into: dict[str, RouteTotals], request: FinishedRequest) -> RouteTotals:
        raw = request.route
        route = UNKNOWN if raw is None else self.routes.name(raw)
        totals = into.get(route)
        if totals is None:
            totals = into[route] = RouteTotals()
        return totals


EXAMINED = 20
_STATUS_CLASS = {n: f"{n}xx" for n in range(1, 6)}


def _route_text(raw: object) -> str:
    return str(raw)[:MAX_ROUTE_CHARS] or UNKNOWN


def _merge_into(into: dict[str, RouteTotals], other: dict[str, RouteTotals]) -> None:
    for route, totals in other.items():
        known = into.get(route)
        if known is None:
            into[route] = totals
        else:
            known.merge(totals)


def _count_request(totals: RouteTotals, request: FinishedRequest) -> None:
    """The request's count, status class and duration."""
    totals.requests += 1
    status = _STATUS_CLASS.get(request.status // 100, "other")
    totals.status[status] = totals.status.get(status, 0) + 1
    totals.duration.add(request.duration_ms)


def _add_io(totals: RouteTotals, request: FinishedRequest) -> None:
    """The request's I/O time, calls per target, statement shapes, and (for the first
    :data:`EXAMINED` of a route) its findings."""
    trace = request.trace
    tally = RequestTally.of(trace)
    totals.detailed += 1
    totals.io.add(tally.io_ms)
    for (_, raw), counted in tally.targets.items():
        _add_pair(totals.targets, target_name(raw), counted.calls, counted.ms)
    statements: dict[tuple[Any, ...], list[Any]] = {}  # raw facts first: named once
    for event in trace._events:
        if event.statement is not None and event.end_ns is not None:
            key = (event.kind, event.op, event._target, event.statement, event.paramstyle)
            ns = event.end_ns - event.start_ns
            counted = statements.get(key)
            if counted is None:
                statements[key] = [1, ns, event]
            else:
                counted[0] += 1
                counted[1] += ns
    for key, (calls, ns, event) in statements.items():
        shaped = _shape_of(key, event)
        if shaped is not None:
            _add_pair(totals.shapes, shaped, calls, ns / 1e6)
            if shaped not in totals.callsites:
                site = event.callsite
                if site is not None:
                    totals.callsites[shaped] = site[:MAX_CALLSITE_CHARS]
    if len(totals.shapes) > 2 * MAX_SHAPES:
        bounded_shapes(totals)
    if totals.examined < EXAMINED:
        totals.examined += 1
        for kind in {finding.kind for finding in find(trace)}:
            totals.findings[kind] = totals.findings.get(kind, 0) + 1


_shapes: dict[tuple[Any, ...], tuple[str, str] | None] = {}  # the writer's; bounded
_MAX_REMEMBERED = 16384


def _shape_of(key: tuple[Any, ...], event: Any) -> tuple[str, str] | None:
    """(target name, statement shape) of the statements like ``event`` (same kind, op,
    target, text and paramstyle); None for what is not a query (a COMMIT, a ping)."""
    known = _shapes.get(key, _shapes)
    if known is not _shapes:
        return known  # type: ignore[return-value]
    shaped = None
    if is_query(event):
        text = shape(event.statement, event.paramstyle, event.dialect)[:MAX_SHAPE_CHARS]
        shaped = (target_name(event._target), text)
    if len(_shapes) >= _MAX_REMEMBERED:
        _shapes.clear()
    _shapes[key] = shaped
    return shaped


def bounded_shapes(totals: RouteTotals) -> None:
    """Keep a route's :data:`MAX_SHAPES` costliest shapes; add the rest up as ``other``."""
    if len(totals.shapes) <= MAX_SHAPES:
        return
    ranked = sorted(totals.shapes.items(), key=lambda item: -item[1][1])
    kept = dict(ranked[: MAX_SHAPES - 1])
    for (target, _), (calls, ms) in ranked[MAX_SHAPES - 1 :]:
        _add_pair(kept, (target, OTHER), calls, ms)
    totals.shapes = kept
    totals.callsites = {key: site for key, site in totals.callsites.items() if key in kept}
