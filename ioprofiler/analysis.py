"""What a trace adds up to: totals per target, cache hit ratio, repeated statements.

>>> summary = summarize(trace)
>>> [(t.target, t.calls) for t in summary.targets]
[('dbshard01', 3), ('memcache', 2)]
>>> summary.repeats[0].count, summary.repeats[0].shape
(3, 'SELECT * FROM listings WHERE shop_id = ?')
"""

from __future__ import annotations

import functools
import re
import weakref
from dataclasses import dataclass, field, replace
from time import perf_counter_ns
from types import CodeType
from typing import TYPE_CHECKING

from ioprofiler import config
from ioprofiler.cache_text import key_text
from ioprofiler.event import CACHE, CONNECTION_OPS, DB, HTTP, POOL_WAIT, Event
from ioprofiler.event import callsite_text as _callsite_text
from ioprofiler.sql_text import safe_repr, shape
from ioprofiler.urls import url_shape

if TYPE_CHECKING:
    from ioprofiler.trace import Trace

# Statements that begin, end or set up a transaction or a connection rather than read or
# write data, sent as SQL text (SQLite's BEGIN under Django, a savepoint, a driver's
# SET AUTOCOMMIT): like the connection ops, never a repeat, a duplicate or an N+1.
_LEADING_COMMENTS = r"(?:\s|/\*.*?\*/|--[^\n]*(?:\n|$))*"
_TRANSACTION_CONTROL = re.compile(
    _LEADING_COMMENTS + r"(?:BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|"
    r"SET\s+(?:AUTOCOMMIT|NAMES|CHARACTER\s+SET|(?:SESSION\s+)?TRANSACTION))\b",
    re.I | re.S,
)
_WRITE = re.compile(_LEADING_COMMENTS + r"(?:INSERT|UPDATE|DELETE|REPLACE|MERGE)\b", re.I | re.S)


@functools.lru_cache(maxsize=4096)  # findings ask once per statement, of a few texts
def is_transaction_control(statement: str) -> bool:
    """``BEGIN``, ``COMMIT``, ``SAVEPOINT s1``, ``SET AUTOCOMMIT = 1``: no data read or written.

    >>> is_transaction_control("RELEASE SAVEPOINT s1"), is_transaction_control("SELECT 1")
    (True, False)
    """
    return _TRANSACTION_CONTROL.match(statement) is not None


@functools.lru_cache(maxsize=4096)
def is_write(statement: str) -> bool:
    """An INSERT, UPDATE, DELETE (or REPLACE, MERGE) statement.

    >>> is_write("/* orm */ INSERT INTO t VALUES (?)"), is_write("SELECT 1")
    (True, False)
    """
    return _WRITE.match(statement) is not None


def is_query(event: Event) -> bool:
    """A statement that reads or writes data: not a connection op (a connect, a commit, a
    pool's ping or set-up), nor transaction control sent as SQL text. What repeats and
    findings look at."""
    return (
        event.kind == DB
        and event.op not in CONNECTION_OPS
        and event.statement is not None
        and not is_transaction_control(event.statement)
    )


@dataclass
class OpTotals:
    """The connects, pool waits or transaction ends of one target (or of a kind)."""

    count: int = 0
    ms: float = 0.0
    errors: int = 0


@dataclass
class TargetTotals:
    """One target's I/O. ``calls`` counts the application's calls (statements, cache
    commands); ``ms`` is all the time spent on the target, connects, pool waits and
    transaction ends included, which ``ops`` breaks down by op."""

    kind: str
    target: str
    calls: int = 0
    ms: float = 0.0
    hits: int = 0
    misses: int = 0
    errors: int = 0
    ops: dict[str, OpTotals] = field(default_factory=dict)
    # Time of ops made inside a call (a cache client connecting for the call that needs
    # it): shown in ``ops``, already part of the call's time, so not added to ``ms`` again.
    nested_ms: float = 0.0

    def add(
        self, op: str, is_call: bool, count: int, ms: float, errors: int, nested: bool = False
    ) -> None:
        if nested:
            self.nested_ms += ms
        else:
            self.ms += ms
        self.errors += errors
        if is_call:
            self.calls += count
            return
        totals = self.ops.get(op)
        if totals is None:
            totals = self.ops[op] = OpTotals()
        totals.count += count
        totals.ms += ms
        totals.errors += errors

    @property
    def calls_ms(self) -> float:
        """Time in the application's calls alone."""
        return self.ms - sum(t.ms for t in self.ops.values()) + self.nested_ms


@dataclass
class Repeat:
    """One statement shape (or one cache read pattern) run more than once on a target."""

    kind: str
    target: str
    shape: str
    count: int
    ms: float
    callsites: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list, repr=False)
    # calls that repeat an earlier one exactly (same statement and values, or same keys)
    duplicates: list[Event] = field(default_factory=list, repr=False)

    @property
    def identical(self) -> int:
        return len(self.duplicates)

    @property
    def likely_n_plus_one(self) -> bool:
        """Run as often as an N+1 finding needs (``Thresholds.n_plus_one_count``)."""
        return self.count >= config.settings.findings.n_plus_one_count


@dataclass
class Summary:
    elapsed_ms: float
    targets: list[TargetTotals]
    repeats: list[Repeat]
    dropped: int
    running: int
    errors: int
    profiler_errors: int
    # Time of the request covered by no I/O call or wait (overlapping calls counted once).
    unexplained_ms: float = 0.0

    def _sum(self, kind: str | None, attr: str) -> float:
        return sum(getattr(t, attr) for t in self.targets if kind is None or t.kind == kind)

    @property
    def calls(self) -> int:
        return int(self._sum(None, "calls"))

    def calls_of(self, kind: str) -> int:
        return int(self._sum(kind, "calls"))

    def ms_of(self, kind: str | None = None) -> float:
        return self._sum(kind, "ms")

    def calls_ms_of(self, kind: str | None = None) -> float:
        """Time in the application's calls alone, without connects, waits and the like."""
        return self._sum(kind, "calls_ms")

    def ops_of(self, kind: str | None = None) -> dict[str, OpTotals]:
        """Connects, pool waits and transaction ends of every target (of ``kind``), by op."""
        merged: dict[str, OpTotals] = {}
        for total in self.targets:
            if kind is not None and total.kind != kind:
                continue
            for op, part in total.ops.items():
                into = merged.setdefault(op, OpTotals())
                into.count += part.count
                into.ms += part.ms
                into.errors += part.errors
        return merged

    @property
    def pool_wait_ms(self) -> float:
        """Time spent waiting for a pooled connection, on every target."""
        wait = self.ops_of().get(POOL_WAIT)
        return 0.0 if wait is None else wait.ms

    @property
    def hits(self) -> int:
        return int(self._sum(CACHE, "hits"))

    @property
    def misses(self) -> int:
        return int(self._sum(CACHE, "misses"))


def summarize(trace: Trace) -> Summary:
    """Totals per target, repeats, and what the trace adds up to.

    A closed trace whose calls have all finished is added up once: the panel, the
    Server-Timing header and the listing of one response each ask. Each caller gets a
    Summary of its own (its lists copied), as if it had been made anew.
    """
    if trace.recording or trace.end_ns is None:  # open, or never opened and closed
        return _summarize(trace)
    known = _summaries.get(trace)
    if known is None:
        known = _summarize(trace)
        if known.running:  # a call still running may yet finish: not remembered
            return known
        _summaries[trace] = known
    return replace(known, targets=list(known.targets), repeats=list(known.repeats))


_summaries: weakref.WeakKeyDictionary[Trace, Summary] = weakref.WeakKeyDictionary()


def _summarize(trace: Trace) -> Summary:
    events = trace.events
    totals: dict[tuple[str, str], TargetTotals] = {}
    running = errors = 0
    last_call: dict[tuple[str, str], Event] = {}
    # (kind, raw target) -> its key (kind, event.target) and its totals: each target named once
    known: dict[tuple[str | None, object], tuple[tuple[str, str], TargetTotals]] = {}
    connection_ops = CONNECTION_OPS
    for event in events:
        kind = event.kind
        raw = (kind, event._target)
        try:
            entry = known.get(raw)
        except TypeError:  # a target that cannot be a dict key: named each time
            raw = entry = None
        if entry is None:
            key = (kind, event.target)
            total = totals.get(key)
            if total is None:
                total = totals[key] = TargetTotals(kind, key[1])  # type: ignore[arg-type]
            if raw is not None:
                known[raw] = (key, total)  # type: ignore[assignment]
        else:
            key, total = entry
        end = event.end_ns
        if end is None:
            running += 1
            ms = 0.0
        else:
            ms = (end - event.start_ns) / 1e6
        op = event.op
        if event.error:
            errors += 1
            failed = 1
        else:
            failed = 0
        if op not in connection_ops:  # a call (event.is_call): never inside another
            last_call[key] = event
            total.ms += ms
            total.errors += failed
            total.calls += 1
        else:
            total.add(op, False, 1, ms, failed, _inside(event, last_call.get(key)))
        if event.hit is not None:
            total.hits += event.hit_count or 0
            total.misses += event.miss_count or 0
    overflow_ms = 0.0
    for (kind, target, op), (calls, ms, hits, misses, errs) in trace.overflow().items():
        total = totals.get((kind, target))
        if total is None:
            total = totals[(kind, target)] = TargetTotals(kind, target)
        total.add(op, op not in CONNECTION_OPS, calls, ms, errs)
        total.hits += hits
        total.misses += misses
        errors += errs
        overflow_ms += ms
    ordered = sorted(totals.values(), key=lambda t: (t.kind != DB, t.target))
    elapsed_ms = trace.elapsed_ms
    covered_ms = _covered_ns(events, trace.end_ns) / 1e6 + overflow_ms
    return Summary(
        elapsed_ms=elapsed_ms,
        targets=ordered,
        repeats=find_repeats(events),
        dropped=trace.dropped,
        running=running,
        errors=errors,
        profiler_errors=trace.profiler_errors,
        unexplained_ms=max(0.0, elapsed_ms - covered_ms),
    )


def _inside(event: Event, call: Event | None) -> bool:
    """``event`` (a connect, say) ran within ``call``, an earlier call on its target."""
    if call is None or call is event or event.end_ns is None or call.end_ns is None:
        return False
    return call.start_ns <= event.start_ns and event.end_ns <= call.end_ns


def _covered_ns(events: list[Event], end_ns: int | None) -> int:
    """Nanoseconds inside at least one event: calls that overlap (threads) count once."""
    now = end_ns if end_ns is not None else perf_counter_ns()
    spans = [(e.start_ns, now if e.end_ns is None else e.end_ns) for e in events]
    spans.sort()
    covered = 0
    until = None
    for start, end in spans:
        if until is None or start > until:
            covered += end - start
            until = end
        elif end > until:
            covered += end - until
            until = end
    return covered


_NO_GROUP: list[Event] = []  # a statement that is no repeat (transaction control)


def find_repeats(events: list[Event]) -> list[Repeat]:
    """Statement shapes run more than once per target, single-key cache reads of one
    target that could have been one batched read (``get_many``, ``MGET``), and HTTP calls
    to one URL shape (ids in the path folded); the most repeated first."""
    groups: dict[tuple[str, str, str], list[Event]] = {}
    # (raw target, statement, paramstyle, dialect) -> its group, or _NO_GROUP for
    # transaction control: is_query's, shape's and the target's answers, asked once per
    # statement text and target rather than once per event
    statements: dict[tuple[object, str, str | None, str | None], list[Event]] = {}
    names: dict[object, str] = {}  # raw target -> event.target
    connection_ops = CONNECTION_OPS
    last_raw: object = _NO_GROUP
    last_statement = last_paramstyle = last_dialect = None
    last_group: list[Event] = []
    for event in events:
        kind = event.kind
        if kind == DB:
            statement = event.statement
            if statement is None or event.op in connection_ops:
                continue
            raw, paramstyle, dialect = event._target, event.paramstyle, event.dialect
            if (
                statement is last_statement
                and raw is last_raw
                and paramstyle is last_paramstyle
                and dialect is last_dialect
            ):  # a run of one statement on one target
                last_group.append(event)
                continue
            known = (raw, statement, paramstyle, dialect)
            try:
                group = statements.get(known)
            except TypeError:  # a target that cannot be a dict key
                known = None
                group = None
            if group is None:
                if is_transaction_control(statement):
                    group = _NO_GROUP
                else:
                    text = shape(statement, event.paramstyle, event.dialect)
                    key = (DB, _target_name(event, names), text)
                    group = groups.get(key)
                    if group is None:
                        group = groups[key] = []
                if known is not None:
                    statements[known] = group
            if group is not _NO_GROUP:
                group.append(event)
                if known is not None:
                    last_raw, last_statement, last_paramstyle, last_dialect = known
                    last_group = group
            continue
        if kind == CACHE and event.op in ("get", "gets"):
            key = (CACHE, _target_name(event, names), f"{event.op} (one key per call)")
        elif kind == HTTP and event.statement is not None:
            key = (HTTP, event.target, f"{event.op} {url_shape(event.statement)}")
        else:
            continue
        group = groups.get(key)
        if group is None:
            groups[key] = [event]
        else:
            group.append(event)
    repeats = []
    for (kind, target, text), members in groups.items():
        if len(members) < 2:
            continue
        seen: set[object] = set()
        duplicates: list[Event] = []
        sites: dict[tuple[int, int], tuple[CodeType, int]] = {}  # by the code's id: see below
        last_code = last_line = None
        for event in members:
            if kind == DB:  # _fingerprint's, inline
                fingerprint: object = (event.statement, event.params)
                try:
                    repeated = fingerprint in seen
                except TypeError:  # a dict of parameters, a list among them
                    fingerprint = f"{event.statement}\x00{safe_repr(event.params)}"
                    repeated = fingerprint in seen
            else:
                fingerprint = _fingerprint(event)
                repeated = fingerprint in seen
            if repeated:
                duplicates.append(event)
            else:
                seen.add(fingerprint)
            site = event._site
            if site is not None and len(sites) < 3:
                code, line = site
                if code is not last_code or line != last_line:  # a run of one site: once
                    last_code, last_line = code, line
                    # hashing a code object hashes its constants: key by its id (the event
                    # keeps the code alive)
                    sites.setdefault((id(code), line), site)
        callsites = [_callsite_text(code, line) for code, line in sites.values()]
        ms = sum([0.0 if e.end_ns is None else (e.end_ns - e.start_ns) / 1e6 for e in members])
        repeats.append(
            Repeat(
                kind=kind,
                target=target,
                shape=text,
                count=len(members),
                ms=ms,
                callsites=callsites,
                events=members,
                duplicates=duplicates,
            )
        )
    repeats.sort(key=lambda r: (-r.count, r.target, r.shape))
    return repeats


def _target_name(event: Event, names: dict[object, str]) -> str:
    """``event.target``, made once per raw target (``names`` remembers it)."""
    raw = event._target
    try:
        name = names.get(raw)
    except TypeError:  # a target that cannot be a dict key
        return event.target
    if name is None:
        name = names[raw] = event.target
    return name


def _fingerprint(event: Event) -> object:
    """Equal for calls that repeat each other exactly (same statement and values, same keys,
    same URL: one with a query string may differ in the values it no longer holds)."""
    if event.kind == HTTP:
        return (event.op, event.statement) if "?" not in (event.statement or "?") else object()
    fingerprint = (event.statement, event.params) if event.kind == DB else event.keys
    try:
        hash(fingerprint)
    except TypeError:  # a dict of parameters, a list among them
        if event.kind == DB:
            return f"{event.statement}\x00{safe_repr(event.params)}"
        return "\x00".join(key_text(k) for k in event.keys)
    return fingerprint
