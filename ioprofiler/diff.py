"""Two windows of the recorder's log compared per route: what changed, and which changes are
regressions, each named with its cause in one line.

>>> before, after = Window("before", release="1a2b3c"), Window("after", release="4f2a1c")
>>> result = compare(["/var/log/shop/ioprofiler.jsonl"], before, after)
>>> for regression in result.regressions:
...     print(regression.line())
/listing  p95 18.0 → 42.0 ms  +12 queries/request on dbshard03: SELECT … FROM
FavoriteListingUser WHERE listing_id = ? (new in 4f2a1c) <- listing.py:88 in show

>>> for regression in release_regressions(["/var/log/shop/ioprofiler.jsonl"]):
...     print(regression.line())          # the two most recent releases, for the report

Every figure comes from the recorders' summary records (every request, per route; see
:mod:`ioprofiler.summary`); a summary record belongs to a window when the middle of the time
it counted does (and its release is the window's, when the window names one). Callsites come
from the summaries, else from a kept request that sent the same statement shape.

The rule (docs/incident.md says it for ops). A route regressed when what it does changed:

- **calls**: a statement shape (or, for caches and HTTP, a target) is sent at least
  :data:`MIN_CALLS_CHANGE` more times per request, and every summary record of the after
  window shows more calls per request than every record of the before window (the change is
  beyond the spread both windows show; counts do not move with load);
- **a statement's own time**: its time per call rose beyond the machine's load and the
  spread: with ``load`` the median ratio (after / before, at least 1) of the time per call
  of every other statement shape in the log of a like size (within :data:`LIKE_SIZE` of its
  time per call: load stretches tiny statements far more), the after window's fastest
  record, divided by ``load``, is still slower than the before window's slowest, and the
  time it adds per request beyond ``load`` is at least :data:`MIN_SHARE` of the route's
  median before and at least :data:`MIN_ADDED_MS`;
- **latency alone** (nothing it does changed): its p95 ratio, divided by the median ratio
  of the other routes whose work did not change, exceeds both :data:`MIN_LATENCY_RATIO` and
  the spread of its per-record p95 within either window. With no such other route there is
  nothing to tell load from code: the move is shown, never named a regression.

Findings that appeared are shown with their route, never a regression by themselves: some
findings are thresholds on time, which load moves.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ioprofiler.export.names import OTHER, UNKNOWN
from ioprofiler.logread import (
    MARKER,
    REQUEST,
    SUMMARY,
    Skipped,
    classify,
    numbered_lines,
    parse_time,
    unread_damaged,
)
from ioprofiler.sql_text import shape, visible
from ioprofiler.summary import ACCURACY, RouteTotals

MIN_CALLS_CHANGE = 0.5  # calls per request
MIN_SHARE = 0.1  # of the route's median duration before
MIN_ADDED_MS = 0.5  # per request: less than this, nobody waits for it
MIN_LATENCY_RATIO = 1.25
MIN_CALLS = 10  # calls of a shape in a window for its time per call to count
LIKE_SIZE = 10  # a statement's load is read from statements within 10x of its time per call
MIN_SLICE = 10  # requests of a route in one summary record for its p95 to be a spread point
MIN_REQUESTS = 20  # requests of a route in each window for it to be a load reference
FINDING_SHARE = 0.5  # of examined requests, for a finding to have appeared
_MAX_KEPT_SITES = 10_000


class DiffError(ValueError):
    """A window that cannot be compared: unknown release or marker, nothing in it, bad
    syntax. Its message is for the user, as it is."""


@dataclass(frozen=True)
class Window:
    """Which summary records are compared: those whose counted time's middle lies within
    ``since`` .. ``until`` (Unix times; None: open), of ``release`` when given."""

    label: str
    since: float | None = None
    until: float | None = None
    release: str | None = None
    other_than: str | None = None  # records of any release but this one
    said: str | None = None  # how a regression's line says "after": "after deploy 4f2a1c"
    about: str | None = None  # what the window is, in words: "before marker 'deploy 4f2a1c'"

    @property
    def phrase(self) -> str:
        if self.said is not None:
            return self.said
        return f"in {self.release}" if self.release is not None else f"in the {self.label} window"

    def holds(self, record: Mapping[str, Any]) -> bool:
        if self.release is not None and record.get("release") != self.release:
            return False
        if self.other_than is not None and record.get("release") == self.other_than:
            return False
        middle = (record["from_ts"] + record["ts"]) / 2
        if self.since is not None and middle < self.since:
            return False
        return self.until is None or middle < self.until

    def describe(self) -> str:
        parts = [] if self.about is None else [self.about]
        if self.release is not None:
            parts.append(f"release {self.release}")
        if self.other_than is not None:
            parts.append(f"releases other than {self.other_than}")
        if self.about is None and (self.since is not None or self.until is not None):
            parts.append(f"{_clock(self.since)} .. {_clock(self.until)}")
        return ", ".join(parts) or "the whole log"


_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def parse_moment(text: str, now: float | None = None) -> float:
    """``14:30`` or ``14:30:15`` (today, UTC, or yesterday when today's is still to come),
    ``2026-12-07T14:30``, ``-1h``: a Unix time. DiffError when it is none of these."""
    text = text.strip()
    clock = _CLOCK.fullmatch(text)
    if clock:
        hour, minute, second = (int(part or 0) for part in clock.groups())
        if hour > 23 or minute > 59 or second > 59:
            raise DiffError(f"not a time of day: {text!r}")
        now = datetime.now(timezone.utc).timestamp() if now is None else now
        today = datetime.fromtimestamp(now, timezone.utc)
        moment = today.replace(hour=hour, minute=minute, second=second, microsecond=0)
        if moment.timestamp() > now:
            moment -= timedelta(days=1)
        return moment.timestamp()
    try:
        return parse_time(text)
    except ValueError:
        raise DiffError(f"not a time: {text!r} (use 14:30, 2026-12-07T14:30 or -1h)") from None


def parse_window(label: str, text: str, now: float | None = None) -> Window:
    """``14:00..14:30``, ``2026-12-07T14:00..2026-12-07T14:30``, ``-2h..-1h``, ``14:40..``
    (to the end of the log): a :class:`Window`."""
    start, dots, end = text.partition("..")
    if not dots or (not start.strip() and not end.strip()):
        raise DiffError(
            f"a window is START..END (14:00..14:30; either end may be left out), not {text!r}"
        )
    since = parse_moment(start, now) if start.strip() else None
    until = parse_moment(end, now) if end.strip() else None
    if since is not None and until is not None and until <= since:
        raise DiffError(f"the window {text!r} ends before it starts")
    return Window(label, since, until)


# -- reading --------------------------------------------------------------------------------


@dataclass
class _Range:
    """The lowest and highest of a value over summary records."""

    low: float = math.inf
    high: float = -math.inf
    seen: int = 0

    def add(self, value: float) -> None:
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        self.seen += 1


class _RouteSide:
    """One route in one window: its totals merged, and per summary record the spread of its
    calls per request and time per call (per shape and target) and of its p95."""

    def __init__(self) -> None:
        self.totals = RouteTotals()
        self.records = 0  # records that added up this route's I/O
        self.calls: dict[tuple[str, str | None], _Range] = {}  # (target, shape or None)
        self.per_call: dict[tuple[str, str], _Range] = {}
        self.p95 = _Range()

    def add(self, totals: RouteTotals) -> None:
        self.totals.merge(totals)
        if totals.requests >= MIN_SLICE:
            self.p95.add(totals.duration.quantile(0.95) or 0.0)
        if not totals.detailed:
            return
        self.records += 1
        detailed = totals.detailed
        ranges, per_call = self.calls, self.per_call
        for key, (calls, ms) in totals.shapes.items():
            found = ranges.get(key)
            if found is None:
                found = ranges[key] = _Range()
            found.add(calls / detailed)
            if calls:
                timed = per_call.get(key)
                if timed is None:
                    timed = per_call[key] = _Range()
                timed.add(ms / calls)
        for target, (calls, _) in totals.targets.items():
            found = ranges.get((target, None))
            if found is None:
                found = ranges[(target, None)] = _Range()
            found.add(calls / detailed)

    def calls_range(self, key: tuple[str, str | None]) -> _Range:
        """The calls per request of ``key`` over the records; 0 where it was not sent."""
        found = self.calls.get(key, _Range())
        if found.seen < self.records:
            return _Range(min(found.low, 0.0), max(found.high, 0.0), self.records)
        return found


@dataclass
class Side:
    """What one window holds: per route, and the records it was made of."""

    window: Window
    routes: dict[str, _RouteSide] = field(default_factory=dict)
    records: int = 0
    first: float = math.inf
    last: float = -math.inf

    def add(self, record: Mapping[str, Any], route_glob: str | None) -> None:
        self.records += 1
        self.first = min(self.first, record["from_ts"])
        self.last = max(self.last, record["ts"])
        for route, totals in record["routes"].items():
            if route_glob is None or fnmatch.fnmatchcase(route, route_glob):
                self.routes.setdefault(route, _RouteSide()).add(totals)

    @property
    def requests(self) -> int:
        return sum(side.totals.requests for side in self.routes.values())


@dataclass
class Read:
    """What one pass over the log gathered."""

    sides: dict[str, Side]
    markers: list[dict[str, Any]]
    releases: dict[str, tuple[float, float]]  # release: (first, last) summary time
    kept_sites: dict[tuple[str, str], str]  # (route, shape): callsite, from kept requests
    paths: list[str | os.PathLike[str]]  # the logs read (not the records given)


Source = str | os.PathLike[str] | Mapping[str, Any]


# What diff reads, validated field by field (logread.classify): summary and marker lines;
# the others it checks are whole lines a recorder wrote, one record each, unparsed
# (logread.unread_damaged: a line torn by a crash and run on into the next is damage).
_READ = re.compile(rb'"type"\s*:\s*"(?:summary|marker)"')


def _records(
    sources: Iterable[Source], skipped: Skipped, wanted: re.Pattern[bytes] = _READ
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(kind, record)`` of each line of each log that ``wanted`` finds and that reads as a
    record (records given as they are pass whole). Lines that are not whole records are
    counted in ``skipped``; the lines ``wanted`` passes over are not parsed (reading 1 GiB
    of kept requests costs more than the summaries and markers diff needs)."""
    for index, source in enumerate(sources, start=1):
        if isinstance(source, Mapping):
            kind, record = _given(source)
            if kind is None:
                skipped.add(Path("records given"), index)
            elif record is not None:
                yield kind, record
            continue
        for file, number, line in numbered_lines(source, skipped):
            if not wanted.search(line):
                if line.strip() and unread_damaged(line):
                    skipped.add(file, number)
                continue
            kind, record = classify(line)
            if kind is None:
                skipped.add(file, number)
            elif record is not None:
                yield kind, record


def read(
    sources: Iterable[Source],
    sides_of: Callable[[Mapping[str, Any]], Iterable[Window]],
    route_glob: str | None = None,
    skipped: Skipped | None = None,
) -> Read:
    """One pass: each summary record added to the window(s) ``sides_of`` gives it, markers
    and releases listed; callsites of statement shapes taken from kept requests given as
    records (in a log, :func:`kept_sites` reads them when they are needed)."""
    sources = list(sources)
    skipped = skipped if skipped is not None else Skipped()
    sides: dict[str, Side] = {}
    markers: list[dict[str, Any]] = []
    releases: dict[str, tuple[float, float]] = {}
    kept_sites: dict[tuple[str, str], str] = {}
    shapes: dict[str, str] = {}
    for kind, record in _records(sources, skipped):
        if kind == SUMMARY:
            release = record.get("release")
            if isinstance(release, str):
                first, last = releases.get(release, (math.inf, -math.inf))
                releases[release] = (min(first, record["from_ts"]), max(last, record["ts"]))
            for window in sides_of(record):
                side = sides.get(window.label)
                if side is None:
                    side = sides[window.label] = Side(window)
                side.add(record, route_glob)
        elif kind == MARKER:
            markers.append(record)
        elif kind == REQUEST and len(kept_sites) < _MAX_KEPT_SITES:
            _take_sites(record, kept_sites, shapes)
    markers.sort(key=lambda marker: marker["ts"])
    paths = [source for source in sources if not isinstance(source, Mapping)]
    return Read(sides, markers, releases, kept_sites, paths)


def _take_sites(
    record: dict[str, Any], into: dict[tuple[str, str], str], shapes: dict[str, str]
) -> None:
    route = record.get("route") or UNKNOWN  # as the summaries name a request without one
    for event in record.get("events") or ():
        site = event.get("callsite")
        text = event.get("sql") or event.get("statement")
        if site is None or text is None or event.get("kind") != "db":
            continue
        shaped = shapes.get(text)
        if shaped is None:
            if len(shapes) > _MAX_KEPT_SITES:
                shapes.clear()
            shaped = shapes[text] = shape(text, "qmark")
        into.setdefault((route, shaped), site)


def _given(source: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """A record given as it is: as :func:`ioprofiler.logread.summaries` yields it (its
    routes read already), or as written, checked as a line of the log would be."""
    routes = source.get("routes")
    if isinstance(routes, Mapping) and all(isinstance(t, RouteTotals) for t in routes.values()):
        return source.get("type", REQUEST), dict(source)
    try:
        line = json.dumps(source, ensure_ascii=False).encode()
    except (TypeError, ValueError):
        return None, None
    return classify(line)


# -- comparing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Regression:
    """One regression of one route, with its cause. ``kind``: ``"calls"`` (more calls per
    request of a statement shape or target), ``"slower"`` (a statement's own time), or
    ``"latency"`` (the route slower with nothing it does changed, beyond load and spread).
    ``added_ms``: what it costs per request, by which regressions are ranked."""

    route: str
    kind: str
    p95_before: float | None
    p95_after: float | None
    added_ms: float
    after: str  # how a line says when: "in 4f2a1c", "after deploy 4f2a1c"
    target: str | None = None
    shape: str | None = None
    new: bool = False
    calls_before: float = 0.0  # per request
    calls_after: float = 0.0
    ms_before: float | None = None  # per call, or (latency) p95 ratio
    ms_after: float | None = None
    callsite: str | None = None
    findings: tuple[str, ...] = ()
    load: float | None = None  # the load ratio the change was judged against

    def line(self) -> str:
        """``/listing  p95 180 → 420 ms  +12 queries/request on dbshard03: SELECT … (new in
        4f2a1c) <- listing.py:88 in show``: control characters escaped."""
        head = f"{self.route}  p95 {_ms(self.p95_before)} → {_ms(self.p95_after)} ms  "
        site = f" <- {self.callsite}" if self.callsite else ""
        if self.kind == "calls":
            what = "queries" if self.shape is not None else "calls"
            delta = _number(self.calls_after - self.calls_before)
            cause = f"+{delta} {what}/request on {self.target}"
            if self.shape is not None:
                cause += f": {short_statement(self.shape)}"
            when = (
                f"new {self.after}"
                if self.new
                else f"{_number(self.calls_before)} → {_number(self.calls_after)} per request "
                f"{self.after}"
            )
            return visible(f"{head}{cause} ({when}){site}")
        if self.kind == "slower":
            return visible(
                f"{head}{short_statement(self.shape or '')} on {self.target}: "
                f"{_ms(self.ms_before)} → {_ms(self.ms_after)} ms per call, "
                f"+{_ms(self.added_ms)} ms/request ({self.after}){site}"
            )
        return visible(
            f"{head}{_number(self.ms_after or 0)}× slower at p95 while other unchanged routes "
            f"moved {_number(self.load or 1)}×, with no change in its calls or statements"
        )

    def as_dict(self) -> dict[str, Any]:
        data = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__  # type: ignore[attr-defined]
        }
        data = _four_places(data)
        data["findings"] = list(self.findings)
        data["line"] = self.line()
        return data


@dataclass(frozen=True)
class ShapeChange:
    """A statement shape (or, with ``shape`` None, a target) of a route, before and after:
    calls per request, and time per call."""

    target: str
    shape: str | None
    calls_before: float
    calls_after: float
    ms_before: float | None
    ms_after: float | None
    callsite: str | None

    @property
    def change(self) -> str:
        if not self.calls_before:
            return "new"
        if not self.calls_after:
            return "vanished"
        if abs(self.calls_after - self.calls_before) >= MIN_CALLS_CHANGE:
            return "count"
        return "same"


@dataclass
class RouteChange:
    """One route compared: figures each side, what changed, and its regressions (if none
    and ``moved`` is set: its latency moved, and why that is not named a regression)."""

    route: str
    before: dict[str, Any]
    after: dict[str, Any]
    shapes: list[ShapeChange]
    findings_appeared: list[str]
    regressions: list[Regression]
    moved: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "before": self.before,
            "after": self.after,
            "changes": [
                {**_four_places(vars(change)), "change": change.change}
                for change in self.shapes
                if change.change != "same"
            ],
            "findings_appeared": self.findings_appeared,
            "regressions": [regression.as_dict() for regression in self.regressions],
            "moved": self.moved,
        }


@dataclass
class Diff:
    """The comparison: the two sides, every route both have, and the regressions ranked,
    the costliest per request first."""

    before: Side
    after: Side
    routes: list[RouteChange]
    regressions: list[Regression]


def compare_sides(before: Side, after: Side, kept_sites: Mapping[tuple[str, str], str]) -> Diff:
    """The two sides compared by the rule of this module's docstring."""
    after_name = after.window.phrase
    common = sorted(set(before.routes) & set(after.routes))
    load = _statement_load(before, after)
    structural: dict[str, list[Regression]] = {}
    changes: dict[str, RouteChange] = {}
    for route in common:
        b, a = before.routes[route], after.routes[route]
        shapes = _shape_changes(route, b, a, kept_sites)
        findings = _findings_appeared(b.totals, a.totals)
        found = _structural(route, b, a, shapes, load, after_name, findings)
        structural[route] = found
        changes[route] = RouteChange(
            route, _figures(b.totals), _figures(a.totals), shapes, findings, found
        )
    unchanged = {
        route: _p95_ratio(before.routes[route], after.routes[route])
        for route in common
        if not structural[route] and route != OTHER
    }
    for route, ratio in unchanged.items():
        change = changes[route]
        latency, change.moved = _latency(
            route, before.routes[route], after.routes[route], ratio, unchanged, after_name
        )
        if latency is not None:
            change.regressions.append(latency)
    regressions = sorted(
        (r for change in changes.values() for r in change.regressions),
        key=lambda r: (-r.added_ms, r.route),
    )
    ranked = sorted(
        changes.values(),
        key=lambda c: (-max((r.added_ms for r in c.regressions), default=-1.0), c.route),
    )
    return Diff(before, after, ranked, regressions)


def _shape_changes(
    route: str, b: _RouteSide, a: _RouteSide, kept_sites: Mapping[tuple[str, str], str]
) -> list[ShapeChange]:
    shaped_targets = {target for target, _ in (*b.totals.shapes, *a.totals.shapes)}
    keys: list[tuple[str, str | None]] = sorted(
        {*b.totals.shapes, *a.totals.shapes}, key=lambda key: (key[0], key[1])
    )
    keys += sorted(
        (target, None)
        for target in {*b.totals.targets, *a.totals.targets}
        if target not in shaped_targets
    )
    found = []
    for target, text in keys:
        if text is None:
            cb, mb = _per_request(b.totals.targets.get(target), b.totals.detailed)
            ca, ma = _per_request(a.totals.targets.get(target), a.totals.detailed)
            site = None
        else:
            cb, mb = _per_request(b.totals.shapes.get((target, text)), b.totals.detailed)
            ca, ma = _per_request(a.totals.shapes.get((target, text)), a.totals.detailed)
            site = (
                a.totals.callsites.get((target, text))
                or b.totals.callsites.get((target, text))
                or kept_sites.get((route, text))
            )
        found.append(ShapeChange(target, text, cb, ca, mb, ma, site))
    return found


def _per_request(pair: list[float] | None, detailed: int) -> tuple[float, float | None]:
    """(calls per request, ms per call) of a [calls, ms] pair."""
    if pair is None or not detailed:
        return 0.0, None
    calls, ms = pair
    return calls / detailed, (ms / calls if calls else None)


def _statement_load(before: Side, after: Side) -> dict[tuple[str, str, str], float]:
    """Per shape of each route, the load to judge its time by: the median time-per-call
    ratio (after / before) of every *other* shape of a like size (:data:`LIKE_SIZE`) sent at
    least :data:`MIN_CALLS` times in both windows; 1 when there is none.

    Only statements of a like size: a machine's load stretches a 0.02 ms statement by
    scheduling delays many times over while a 40 ms one hardly moves, so tiny statements'
    ratios would excuse any big statement's slowdown as "load"."""
    ratios: dict[tuple[str, str, str], tuple[float, float]] = {}
    for route, b in before.routes.items():
        a = after.routes.get(route)
        if a is None:
            continue
        for key, (calls, ms) in b.totals.shapes.items():
            later = a.totals.shapes.get(key)
            if key[1] == OTHER or later is None or min(calls, later[0]) < MIN_CALLS or not ms:
                continue
            ratios[(route, *key)] = (ms / calls, (later[1] / later[0]) / (ms / calls))
    if len(ratios) > 50:  # one shape more or less does not move the median of so many
        by_size: dict[int, list[float]] = {}
        for per_call, ratio in ratios.values():
            by_size.setdefault(_size_class(per_call), []).append(ratio)
        return {
            key: statistics.median(
                [r for near in (-1, 0, 1) for r in by_size.get(_size_class(per_call) + near, ())]
            )
            for key, (per_call, _) in ratios.items()
        }
    return {
        key: statistics.median(
            [
                ratio
                for other, (size, ratio) in ratios.items()
                if other != key and per_call / LIKE_SIZE <= size <= per_call * LIKE_SIZE
            ]
            or [1.0]
        )
        for key, (per_call, _) in ratios.items()
    }


def _size_class(per_call_ms: float) -> int:
    """Statements whose time per call is within :data:`LIKE_SIZE` of each other share a class
    or are in neighbouring ones."""
    return math.floor(math.log(max(per_call_ms, 1e-6), LIKE_SIZE))


def _structural(
    route: str,
    b: _RouteSide,
    a: _RouteSide,
    shapes: list[ShapeChange],
    load: Mapping[tuple[str, str, str], float],
    after_name: str,
    findings: list[str],
) -> list[Regression]:
    """The route's regressions in what it does: more calls, slower statements."""
    p95_b, p95_a = b.totals.duration.quantile(0.95), a.totals.duration.quantile(0.95)
    p50_b = b.totals.duration.quantile(0.5) or 0.0
    found = []
    for change in shapes:
        if change.shape == OTHER or not b.records or not a.records:
            continue
        key = (change.target, change.shape)
        more = change.calls_after - change.calls_before
        if more >= MIN_CALLS_CHANGE and a.calls_range(key).low > b.calls_range(key).high:
            found.append(
                Regression(
                    route, "calls", p95_b, p95_a,
                    added_ms=more * (change.ms_after or 0.0),
                    after=after_name, target=change.target, shape=change.shape,
                    new=not change.calls_before, calls_before=change.calls_before,
                    calls_after=change.calls_after, ms_before=change.ms_before,
                    ms_after=change.ms_after, callsite=change.callsite,
                    findings=tuple(findings),
                )
            )  # fmt: skip
            continue
        if change.shape is None or change.ms_before is None or change.ms_after is None:
            continue
        factor = load.get((route, change.target, change.shape))
        if factor is None:
            continue  # too few calls on one side to judge its time
        factor = max(1.0, factor)  # a quieter machine after does not make a statement slower
        added = change.calls_after * (change.ms_after - factor * change.ms_before)
        quickest, slowest = a.per_call[key].low, b.per_call[key].high
        if quickest / factor > slowest and added >= max(MIN_SHARE * p50_b, MIN_ADDED_MS):
            found.append(
                Regression(
                    route, "slower", p95_b, p95_a, added_ms=added, after=after_name,
                    target=change.target, shape=change.shape,
                    calls_before=change.calls_before, calls_after=change.calls_after,
                    ms_before=change.ms_before, ms_after=change.ms_after,
                    callsite=change.callsite, findings=tuple(findings), load=factor,
                )
            )  # fmt: skip
    return found


def _p95_ratio(b: _RouteSide, a: _RouteSide) -> float | None:
    if min(b.totals.requests, a.totals.requests) < MIN_REQUESTS:
        return None
    p95_b, p95_a = b.totals.duration.quantile(0.95), a.totals.duration.quantile(0.95)
    return None if not p95_b or p95_a is None else p95_a / p95_b


def _latency(
    route: str,
    b: _RouteSide,
    a: _RouteSide,
    ratio: float | None,
    unchanged: Mapping[str, float | None],
    after_name: str,
) -> tuple[Regression | None, str | None]:
    """A latency regression of a route whose work did not change, or why its move (if it
    moved) is not one."""
    if ratio is None or ratio < MIN_LATENCY_RATIO:
        return None, None
    others = [r for other, r in unchanged.items() if other != route and r is not None]
    moved = f"p95 {_number(ratio)}× with no change in its calls or statements"
    if not others:
        return None, f"{moved}; not named: no other unchanged route to tell load from code"
    load = statistics.median(others)
    spreads = [
        side.p95.high / side.p95.low for side in (b, a) if side.p95.seen >= 2 and side.p95.low
    ]
    if len(spreads) < 2:
        return None, f"{moved}; not named: too few requests per summary record to know its spread"
    spread = max(spreads)
    if ratio / load <= max(spread, MIN_LATENCY_RATIO):
        return None, (
            f"{moved}; not named: load (other unchanged routes moved {_number(load)}×, and its "
            f"p95 spreads {_number(spread)}× within a window)"
        )
    p95_b, p95_a = b.totals.duration.quantile(0.95), a.totals.duration.quantile(0.95)
    added = (p95_a or 0.0) - load * (p95_b or 0.0)
    return (
        Regression(
            route, "latency", p95_b, p95_a, added_ms=added, after=after_name,
            ms_before=1.0, ms_after=ratio, load=load,
        ),
        None,
    )  # fmt: skip


def _four_places(data: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in data.items()}


def _findings_appeared(b: RouteTotals, a: RouteTotals) -> list[str]:
    return sorted(
        kind
        for kind, count in a.findings.items()
        if not b.findings.get(kind) and a.examined and count / a.examined >= FINDING_SHARE
    )


def _figures(totals: RouteTotals) -> dict[str, Any]:
    detailed = totals.detailed or 1
    return {
        "requests": totals.requests,
        "p50_ms": _rounded(totals.duration.quantile(0.5)),
        "p95_ms": _rounded(totals.duration.quantile(0.95)),
        "io_p50_ms": _rounded(totals.io.quantile(0.5)),
        "io_p95_ms": _rounded(totals.io.quantile(0.95)),
        "calls_per_request": {
            target: round(calls / detailed, 3)
            for target, (calls, _) in sorted(totals.targets.items())
        },
        "status": dict(sorted(totals.status.items())),
        "accuracy": ACCURACY,
    }


# -- windows from the log -------------------------------------------------------------------


def compare(
    sources: Iterable[Source],
    before: Window,
    after: Window,
    route_glob: str | None = None,
    skipped: Skipped | None = None,
) -> Diff:
    """Compare two windows of the logs (paths) or records. DiffError when one holds no
    summary record."""
    sources = list(sources)
    found = read(
        sources, lambda record: [w for w in (before, after) if w.holds(record)], route_glob, skipped
    )
    for window in (before, after):
        if window.release is not None and window.release not in found.releases:
            raise DiffError(f"no release {window.release!r} in the log; {_releases_known(found)}")
    return _sides_compared(found, before, after)


def _sides_compared(found: Read, before: Window, after: Window) -> Diff:
    for window in (before, after):
        if window.label not in found.sides:
            raise DiffError(
                f"no summary records in the {window.label} window ({window.describe()}); "
                f"{_span(found)}"
            )
    before_side, after_side = found.sides[before.label], found.sides[after.label]
    diff = compare_sides(before_side, after_side, found.kept_sites)
    missing = {(r.route, r.shape) for r in diff.regressions if r.shape and not r.callsite}
    if missing and found.paths:
        sites = kept_sites(found.paths, missing)
        if sites:
            diff = compare_sides(before_side, after_side, {**found.kept_sites, **sites})
    return diff


def kept_sites(
    paths: Iterable[str | os.PathLike[str]], wanted: set[tuple[str, str | None]]
) -> dict[tuple[str, str], str]:
    """Callsites of ``(route, shape)`` from the kept requests of those routes: for logs
    whose summaries do not carry them (written before they did)."""
    routes = {route for route, _ in wanted}
    needles = re.compile(
        b"|".join(
            re.escape(b'"route":' + json.dumps(route, ensure_ascii=False).encode())
            for route in sorted(routes)
        )
    )
    found: dict[tuple[str, str], str] = {}
    shapes: dict[str, str] = {}
    for kind, record in _records(paths, Skipped(), needles):
        if kind == REQUEST:
            _take_sites(record, found, shapes)
            if all(key in found for key in wanted):
                break
    return found


def compare_releases(
    sources: Iterable[Source],
    before: str | None = None,
    after: str | None = None,
    route_glob: str | None = None,
    skipped: Skipped | None = None,
) -> Diff:
    """Compare two releases; without them, the two most recent (by when each was last
    counted: after a rollback, the release rolled back to is the after one). DiffError with
    fewer than two, or an unknown one."""
    windows: dict[str, Window] = {}

    def by_release(record: Mapping[str, Any]) -> list[Window]:
        release = record.get("release")
        if not isinstance(release, str):
            return []
        window = windows.get(release)
        if window is None:
            window = windows[release] = Window(release, release=release)
        return [window]

    found = read(sources, by_release, route_glob, skipped)
    if before is None and after is None:
        ordered = sorted(found.releases, key=lambda r: found.releases[r][::-1])
        if len(ordered) < 2:
            raise DiffError(
                f"{_releases_known(found)}: compare windows with --before/--after or "
                "--at-marker instead"
            )
        before, after = ordered[-2], ordered[-1]
    if before is None or after is None:
        raise DiffError("give both releases (--before-release and --after-release)")
    for release in (before, after):
        if release not in found.releases:
            raise DiffError(f"no release {release!r} in the log; {_releases_known(found)}")
    return _sides_compared(found, Window(before, release=before), Window(after, release=after))


def marker_windows(
    sources: Iterable[Source],
    text: str,
    length: float | None = None,
    skipped: Skipped | None = None,
) -> tuple[Window, Window]:
    """The windows before and after the marker ``text`` (exact, else the one marker whose
    text holds it; the latest when several match): each runs to the neighbouring marker or
    the log's end, at most ``length`` seconds. When the marker names a release that summary
    records carry, the after window holds that release's records and the before window the
    others': workers of the old release that still served after the marker (a rolling
    deploy) count as before."""
    markers, releases = _markers_and_releases(sources, skipped)
    markers.sort(key=lambda marker: marker["ts"])
    exact = [m for m in markers if m["text"] == text]
    matching = exact or [m for m in markers if text in m["text"]]
    if not matching:
        known = ", ".join(repr(m["text"]) for m in markers[-5:]) or "none"
        raise DiffError(f"no marker {text!r} in the log (the latest markers: {known})")
    if not exact and len({m["text"] for m in matching}) > 1:
        names = ", ".join(sorted({repr(m["text"]) for m in matching})[:5])
        raise DiffError(f"{text!r} is in several markers' text ({names}): give one whole")
    chosen = matching[-1]
    at = chosen["ts"]
    index = markers.index(chosen)
    previous = markers[index - 1]["ts"] if index > 0 else None
    following = markers[index + 1]["ts"] if index + 1 < len(markers) else None
    if length is not None:
        previous = at - length if previous is None else max(previous, at - length)
        following = at + length if following is None else min(following, at + length)
    said = f"after {chosen['text']}"
    about = f"marker {chosen['text']!r} at {_clock(at)}"
    release = chosen.get("release")
    if release not in releases:
        release = None
    if release is not None:  # by release, between the neighbouring markers
        return (
            Window("before", previous, following, other_than=release, about=f"before {about}"),
            Window("after", previous, following, release=release, said=said,
                   about=f"after {about}"),
        )  # fmt: skip
    return (
        Window("before", previous, at, about=f"before {about}"),
        Window("after", at, following, said=said, about=f"after {about}"),
    )


_RELEASE = re.compile(rb'"release"\s*:\s*("(?:[^"\\]|\\.)*")')


def _markers_and_releases(
    sources: Iterable[Source], skipped: Skipped | None
) -> tuple[list[dict[str, Any]], set[str]]:
    """The markers, and the releases summary records carry (read from their lines without
    parsing the records)."""
    skipped = skipped if skipped is not None else Skipped()
    markers: list[dict[str, Any]] = []
    releases: set[str] = set()
    for index, source in enumerate(sources, start=1):
        if isinstance(source, Mapping):
            kind, record = _given(source)
            if kind == MARKER and record is not None:
                markers.append(record)
            elif kind == SUMMARY and record is not None and "release" in record:
                releases.add(record["release"])
            elif kind is None:
                skipped.add(Path("records given"), index)
            continue
        for _file, _number, line in numbered_lines(source, skipped):
            if not _READ.search(line):
                continue
            if _SUMMARY_LINE.search(line):
                found = _RELEASE.search(line)
                if found:
                    try:
                        releases.add(json.loads(found.group(1)))
                    except ValueError:
                        pass  # a damaged line: the comparison's pass counts it
                continue
            kind, record = classify(line)
            if kind == MARKER and record is not None:
                markers.append(record)
    return markers, releases


_SUMMARY_LINE = re.compile(rb'"type"\s*:\s*"summary"')


def release_regressions(records_or_paths: Iterable[Source]) -> list[Regression]:
    """The regressions of the most recent release against the one before it, costliest
    first; empty when the logs hold fewer than two releases.

    >>> for regression in release_regressions(["/var/log/shop/ioprofiler.jsonl"]):
    ...     print(regression.line())

    ``records_or_paths``: log paths (rotated files beside each are read too), or records as
    :func:`ioprofiler.logread.summaries` yields them (or as written, JSON-decoded).
    """
    try:
        return compare_releases(records_or_paths).regressions
    except DiffError:
        return []


def _releases_known(found: Read) -> str:
    ordered = sorted(found.releases, key=lambda r: found.releases[r][::-1])
    if not ordered:
        return (
            "the log's summary records name no release "
            "(Recorder(release=...) or $IOPROFILER_RELEASE)"
        )
    shown = ", ".join(repr(r) for r in ordered[-5:])
    plural = "s" if len(ordered) != 1 else ""
    return f"the log holds {len(ordered)} release{plural} (the latest: {shown})"


def _span(found: Read) -> str:
    firsts = [side.first for side in found.sides.values()]
    if not firsts and not found.releases:
        return "the log holds no summary records in either window"
    times = [t for pair in found.releases.values() for t in pair] + firsts
    times += [side.last for side in found.sides.values()]
    if not times:
        return "the log holds no summary records in the other window either"
    return f"summaries seen from {_clock(min(times))} to {_clock(max(times))}"


# -- words ----------------------------------------------------------------------------------

_SELECT_LIST = re.compile(r"^(\s*SELECT\s+(?:DISTINCT\s+)?)(.+?)(\s+FROM\s)", re.I | re.S)
MAX_STATEMENT_CHARS = 200


def short_statement(text: str) -> str:
    """A shape for one line: a long select list as ``…``, at most 200 characters."""
    match = _SELECT_LIST.match(text)
    if match and len(match.group(2)) > 20:
        text = f"{match.group(1)}…{match.group(3)}{text[match.end() :]}"
    text = " ".join(text.split())
    return text if len(text) <= MAX_STATEMENT_CHARS else text[: MAX_STATEMENT_CHARS - 1] + "…"


def _number(value: float) -> str:
    if abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}".rstrip("0").rstrip(".") or "0"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _clock(ts: float | None) -> str:
    if ts is None or not math.isfinite(ts):
        return "…"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
