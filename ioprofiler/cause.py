"""Why a kept request was slow, in one line: its costliest finding, else the target and
statement shape that took the most of its time, with where that was called from (or, when
the time outside every call was more, that, naming those calls still).

>>> cause = cause_of(record)            # one kept request, as the log holds it
>>> cause.line()
'N+1: SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ? ran 12× on dbshard01 …'
>>> cause_of(other).line()
'most time: SELECT … FROM Listing WHERE id = ? on dbshard03, 1 call, 420.1 ms (52%) <- …'

Read from the log's record alone (its findings as the recorder's process found them, with its
thresholds and its privacy settings; its events for the rest): no trace is rebuilt, so the
commands can stream a large log. Shapes, never values: a statement is named by its shape.

:class:`Causes` adds kept requests up by finding, callsite, statement shape or cause, for
``ioprofiler top --by finding|callsite|shape`` and the report's top causes:

>>> causes = Causes("finding")
>>> for record in records(log):
...     causes.add(record)
>>> causes.rows(10)[0].key
'N+1  dbshard01  SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?  <- views.py:88 …'
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ioprofiler.aggregate import Row, ranked_rows
from ioprofiler.event import CONNECTION_OPS, DB, HTTP
from ioprofiler.findings import KINDS, TITLES
from ioprofiler.sql_text import shape, visible
from ioprofiler.urls import url_shape

BY = ("finding", "callsite", "shape")
SEPARATOR = "  "  # between the parts of a key, as aggregate's keys
DOMINANT = "most time"  # a cause that is no finding: the dominant target and shape
NOT_IO = "not in I/O"  # … or the time outside every call, when it is more
NO_IO = "no I/O"


@dataclass(frozen=True)
class Cause:
    """What a request's time went to. ``kind`` is a finding's kind (one of
    :data:`ioprofiler.findings.KINDS`), :data:`DOMINANT`, :data:`NOT_IO` or :data:`NO_IO`;
    ``what`` is a statement's shape, an HTTP call's method and URL shape, or a call's op
    (for :data:`NOT_IO`: those of the calls that took the most time, ``ms`` their time)."""

    kind: str
    title: str  # "N+1", "slow call", "most time", "no I/O"
    target: str | None
    what: str | None
    callsite: str | None
    calls: int
    ms: float
    request_ms: float
    message: str | None = None  # a finding's own sentence, as the log holds it
    outside_ms: float = 0.0  # NOT_IO: the request's time outside every call

    @property
    def share(self) -> float | None:
        """The cause's time as a fraction of the request's."""
        return self.ms / self.request_ms if self.request_ms > 0 else None

    def line(self) -> str:
        """The cause in one line, control characters escaped."""
        if self.kind == NO_IO:
            return visible(f"{NO_IO}: no call recorded in {self.request_ms:.1f} ms")
        share = f" ({self.share:.0%})" if self.share is not None else ""
        where = f" <- {self.callsite}" if self.callsite else ""
        calls = "1 call" if self.calls == 1 else f"{self.calls} calls"
        most = f"{self.what} on {self.target}, {calls}, {_ms_text(self.ms)} ms"
        if self.kind == NOT_IO:
            outside = self.outside_ms / self.request_ms if self.request_ms > 0 else 1.0
            then = f"finding: {self.message}" if self.message else f"the most I/O: {most}{where}"
            return visible(
                f"{NOT_IO}: {self.outside_ms:.1f} ms ({outside:.0%}) outside every call "
                f"(the application's own work, or waiting to run); {then}"
            )
        if self.message is not None:
            return visible(self.message)
        return visible(f"{self.title}: {most}{share}{where}")

    def short(self) -> str:
        """The cause without its figures, for a narrow column: ``N+1 · SELECT … · dbshard01``."""
        if self.kind in (NO_IO, NOT_IO):
            return self.title
        title, target, what, _ = self.parts()
        return " · ".join(part for part in (title, what, target) if part)

    def parts(self) -> tuple[str, str, str, str]:
        """``(title, target, what, callsite)``, "" for what it has not, escaped."""
        if self.kind in (NO_IO, NOT_IO):
            return (self.title, "", "", "")
        return (
            self.title,
            visible(self.target or ""),
            visible(self.what or ""),
            visible(self.callsite or ""),
        )

    def key(self) -> str:
        """What causes of one kind have in common, without counts or times: requests with
        the same key had the same cause (:data:`NOT_IO` is one cause, whatever its calls)."""
        title, target, what, callsite = self.parts()
        return SEPARATOR.join(
            part for part in (title, target, what, callsite and f"<- {callsite}") if part
        )


def _ms_text(ms: float) -> str:
    return f"{ms:.1f}" if ms >= 1 else f"{ms:.3f}"


def what_of(event: dict[str, Any]) -> str:
    """An event of the log as its shape: ``SELECT … WHERE id = ?``, ``GET /v1/items/#``,
    ``get_many``, ``POOL WAIT``."""
    kind, text = event.get("kind"), event.get("sql") or event.get("statement")
    return _what(
        kind if isinstance(kind, str) else None,
        str(event.get("op", "")),
        text if isinstance(text, str) else None,
    )


@functools.lru_cache(maxsize=16384)  # a log repeats its statements: each shaped once
def _what(kind: str | None, op: str, text: str | None) -> str:
    if kind == DB and text is not None and op not in CONNECTION_OPS:
        return shape(text, "qmark")
    if kind == HTTP and text is not None:
        return f"{op} {url_shape(text)}"
    return op.replace("_", " ").upper() if op in CONNECTION_OPS else op


def _ms(event: dict[str, Any]) -> float:
    ms = event.get("duration_ms")
    return float(ms) if isinstance(ms, (int, float)) and not isinstance(ms, bool) else 0.0


def _events(record: dict[str, Any]) -> list[dict[str, Any]]:
    events = record.get("events")
    if not isinstance(events, list):
        return []
    return [e for e in events if isinstance(e, dict) and isinstance(e.get("target"), str)]


def _findings(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The record's findings whose fields have the types the recorder writes."""
    findings = record.get("findings")
    for finding in findings if isinstance(findings, list) else ():
        if (
            isinstance(finding, dict)
            and finding.get("kind") in KINDS
            and isinstance(finding.get("message"), str)
            and isinstance(finding.get("ms"), (int, float))
            and not isinstance(finding.get("ms"), bool)
        ):
            yield finding


def _most_common(values: list[str | None]) -> str | None:
    """The value given most often (the first of those tied), None for none."""
    counts: dict[str, int] = {}
    for value in values:
        if value:
            counts[value] = counts.get(value, 0) + 1
    if len(counts) < 2:
        return next(iter(counts), None)
    return max(counts, key=counts.__getitem__)


def _request_ms(record: dict[str, Any]) -> float:
    ms = record.get("duration_ms", record.get("elapsed_ms"))
    return float(ms) if isinstance(ms, (int, float)) and not isinstance(ms, bool) else 0.0


def finding_causes(record: dict[str, Any]) -> list[Cause]:
    """Each finding of the record as a :class:`Cause`, the costliest first: the target,
    shape and callsite of most of the calls it is about."""
    causes = []
    for finding, about in _findings_about(record):
        target, what, callsite = _name(finding["kind"], about)[0]
        causes.append(
            Cause(
                kind=finding["kind"],
                title=TITLES[finding["kind"]],
                target=target,
                what=what,
                callsite=callsite,
                calls=len(about),
                ms=float(finding["ms"]),
                request_ms=_request_ms(record),
                message=finding["message"],
            )
        )
    causes.sort(key=lambda cause: (-cause.ms, KINDS.index(cause.kind)))
    return causes


def _findings_about(record: dict[str, Any]) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """Each finding of the record whose fields have the recorder's types, with the events
    it is about (those of its indexes the record holds)."""
    events = record.get("events")
    by_index = {  # of the events _events takes, in one pass
        e.get("index"): e
        for e in (events if isinstance(events, list) else ())
        if isinstance(e, dict) and isinstance(e.get("target"), str)
    }
    for finding in _findings(record):
        indexes = finding.get("events")
        yield finding, [by_index[i] for i in indexes or () if i in by_index]


_Named = tuple[tuple[str | None, str | None, str | None], tuple[str, ...], str]


def _name(kind: str, about: list[dict[str, Any]]) -> _Named:
    """What a finding of ``kind`` names of the events it is about: ``(target, shape,
    callsite)``, the parts of its key, and its key."""
    target = _most_common([e["target"] for e in about])
    what = _most_common([what_of(e) for e in about])
    callsite = _most_common([e.get("callsite") for e in about])
    parts = (TITLES[kind], visible(target or ""), visible(what or ""), visible(callsite or ""))
    return (target, what, callsite), parts, _key(parts)


# :func:`_name` per kind and those very events, for ``top --by finding``: the events a
# reader shares between the records that hold them (logread's, read for the findings,
# which are not to be changed) are named once. The key is the events' ids, and the entry
# holds the events themselves, so no other object takes the id of one while it is kept;
# events that are not shared only fill it up until it starts again.
_named_events: dict[tuple[Any, ...], tuple[list[Any], _Named]] = {}


def _named(kind: str, about: list[dict[str, Any]]) -> _Named:
    key = (kind, *map(id, about))
    known = _named_events.get(key)
    if known is not None:
        return known[1]
    named = _name(kind, about)
    if len(_named_events) >= 256:  # whole records read: at most 256 of their lists kept
        _named_events.clear()
    _named_events[key] = (about, named)
    return named


def _outside_ms(record: dict[str, Any]) -> float:
    """The request's time outside every call, as the recorder counted it."""
    summary = record.get("summary")
    unexplained = summary.get("unexplained_ms") if isinstance(summary, dict) else None
    if isinstance(unexplained, (int, float)) and not isinstance(unexplained, bool):
        return float(unexplained)
    io_ms = record.get("io_ms")
    io = float(io_ms) if isinstance(io_ms, (int, float)) and not isinstance(io_ms, bool) else 0.0
    return max(0.0, _request_ms(record) - io)


def dominant(record: dict[str, Any]) -> Cause:
    """The target and shape whose calls took the most of the request's time (connection
    round trips included: a pool wait can be what a request waited for), with the callsite
    most of them were made from; :data:`NOT_IO` (naming those calls too) when the time
    outside every call was more; :data:`NO_IO` when the request made no call."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event in _events(record):
        groups.setdefault((event["target"], what_of(event)), []).append(event)
    if not groups:
        return Cause(NO_IO, NO_IO, None, None, None, 0, 0.0, _request_ms(record))
    (target, what), calls = max(
        groups.items(), key=lambda item: (sum(_ms(e) for e in item[1]), len(item[1]))
    )
    ms = sum(_ms(e) for e in calls)
    outside = _outside_ms(record)
    return Cause(
        kind=NOT_IO if outside > ms else DOMINANT,
        title=NOT_IO if outside > ms else DOMINANT,
        target=target,
        what=what,
        callsite=_most_common([e.get("callsite") for e in calls]),
        calls=len(calls),
        ms=ms,
        request_ms=_request_ms(record),
        outside_ms=outside,
    )


OUTSIDE_MS = 20.0  # time outside every call that outweighs a finding, when most of a request


def cause_of(record: dict[str, Any]) -> Cause:
    """The request's costliest finding, else its :func:`dominant` target and shape. When
    most of the request (and at least :data:`OUTSIDE_MS`) was outside every call, more than
    its costliest finding took, the cause is :data:`NOT_IO`, naming that finding: a request
    slow in its own code (or waiting for a CPU) is not made slow by a 0.1 ms N+1."""
    found = finding_causes(record)
    if not found:
        return dominant(record)
    costliest = found[0]
    outside, request_ms = _outside_ms(record), _request_ms(record)
    if outside >= OUTSIDE_MS and outside > request_ms / 2 and outside > costliest.ms:
        return replace(costliest, kind=NOT_IO, title=NOT_IO, outside_ms=outside)
    return costliest


_Grouped = list[tuple[str, tuple[str, ...], float]]  # (key, the key's parts, ms)


def _by_finding(record: dict[str, Any]) -> _Grouped:
    """As :func:`finding_causes`' parts and times, in its order, without making a
    :class:`Cause` of each."""
    found = []
    for finding, about in _findings_about(record):
        kind = finding["kind"]
        _, parts, key = _named(kind, about)
        found.append((-float(finding["ms"]), KINDS.index(kind), key, parts))
    found.sort(key=_by_time)
    return [(key, parts, -minus_ms) for minus_ms, _, key, parts in found]


def _by_time(found: tuple[float, int, str, tuple[str, ...]]) -> tuple[float, int]:
    return found[0], found[1]


def _by_callsite(record: dict[str, Any]) -> _Grouped:
    grouped = []
    keys = _callsite_keys
    events = record.get("events")
    for event in events if isinstance(events, list) else ():
        # the events _events takes, in the same pass
        if not isinstance(event, dict) or not isinstance(event.get("target"), str):
            continue
        callsite = event.get("callsite")
        if callsite:
            known = keys.get(callsite) if type(callsite) is str else None
            if known is None:
                key = _visible(str(callsite))
                known = (key, (key,))
                if type(callsite) is str:
                    if len(keys) >= 16384:
                        keys.clear()
                    keys[callsite] = known
            ms = event.get("duration_ms")
            kind = type(ms)
            if kind is not float:
                ms = float(ms) if kind is int else _ms(event)
            grouped.append((*known, ms))
    return grouped


_visible = functools.lru_cache(maxsize=16384)(visible)  # a log repeats its callsites
_callsite_keys: dict[str, tuple[str, tuple[str]]] = {}  # a callsite's key, made visible once


def _by_shape(record: dict[str, Any]) -> _Grouped:
    grouped = []
    for event in _events(record):
        if event.get("kind") == DB and event.get("op") not in CONNECTION_OPS:
            if isinstance(event.get("sql") or event.get("statement"), str):
                key = visible(what_of(event))
                grouped.append((key, (key,), _ms(event)))
    return grouped


def _by_cause(record: dict[str, Any]) -> _Grouped:
    cause = cause_of(record)
    parts = cause.parts()
    return [(_key(parts), parts, cause.ms)]


def _key(parts: tuple[str, ...]) -> str:
    if len(parts) == 1:
        return parts[0]
    *named, callsite = parts
    return SEPARATOR.join(part for part in (*named, callsite and f"<- {callsite}") if part)


_GROUPINGS: dict[str, Callable[[dict[str, Any]], _Grouped]] = {
    "finding": _by_finding,
    "callsite": _by_callsite,
    "shape": _by_shape,
    "cause": _by_cause,
}
# What a row's count counts, per grouping.
COUNTS = {"finding": "requests", "callsite": "calls", "shape": "calls", "cause": "requests"}


class Causes:
    """Kept requests added up by ``by``: ``"finding"`` (each finding, by its kind, target,
    shape and callsite; its time), ``"callsite"`` (every call, by where it was made),
    ``"shape"`` (every statement, by its shape, whatever its target) or ``"cause"`` (each
    request's :func:`cause_of`). Rows are ranked by total time, as ``Top``'s are; a row's
    ``share`` is of the time of all the requests added."""

    def __init__(self, by: str) -> None:
        if by not in _GROUPINGS:
            raise ValueError(f"--by takes one of {', '.join(_GROUPINGS)}, not {by!r}")
        self.by = by
        self._group = _GROUPINGS[by]
        self._durations: dict[str, list[float]] = {}
        self._example: dict[str, tuple[float, str]] = {}  # key: the slowest request's
        self._parts: dict[str, tuple[str, ...]] = {}
        self.requests = 0
        self.request_ms = 0.0

    def add(self, record: dict[str, Any]) -> None:
        request_ms = _request_ms(record)
        self.requests += 1
        self.request_ms += request_ms
        ident = record.get("id")
        all_durations, seen = self._durations, set()
        for key, parts, ms in self._group(record):
            durations = all_durations.get(key)
            if durations is None:
                durations = all_durations[key] = []
                self._parts[key] = parts
            durations.append(ms)
            seen.add(key)
        if isinstance(ident, str):
            examples = self._example
            for key in seen:
                known = examples.get(key)
                if known is None or request_ms > known[0]:
                    examples[key] = (request_ms, ident)

    def parts(self, key: str) -> tuple[str, ...]:
        """A row's key in its parts: ``(title, target, shape, callsite)`` by finding or
        cause ("" where a finding names none), ``(key,)`` by callsite or shape."""
        return self._parts.get(key, (key,))

    def example(self, key: str) -> str | None:
        """The id of the slowest request added under ``key``."""
        known = self._example.get(key)
        return None if known is None else known[1]

    def rows(self, limit: int | None = None) -> list[Row]:
        """The groups, the most total time first."""
        return ranked_rows(self._durations, self.request_ms, limit)
