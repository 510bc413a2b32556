"""A kept request read back from the recorder's log, as a Trace the renderers take.

>>> trace, request = load(record)          # one line of the log, parsed
>>> print(trace.text())                    # the listing, as it was written
>>> render_panel(trace, request)           # the same panel as ?ioprofiler=1

The events hold what the line holds: the SQL as written (``?`` for values unless the
recorder kept them), the keys, the callsite's text, the line's own description.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from ioprofiler.event import DB, Event
from ioprofiler.render.request import RequestInfo
from ioprofiler.sql_text import visible
from ioprofiler.trace import Trace, _Tally

_TIMING = re.compile(r"(?:running|\d+\.\d{3} ms) ")


class StoredEvent(Event):
    """An event from a log line: its text comes from the line, not from live objects."""

    __slots__ = ("_sql", "_callsite", "_description")

    @property
    def sql(self) -> str | None:
        return self._sql

    @property
    def callsite(self) -> str | None:
        return self._callsite

    def description(self, sql: str | None = None) -> str:
        return self._description


def _ns(ms: float | None) -> int:
    return round((ms or 0.0) * 1e6)


def _event(data: dict[str, Any]) -> StoredEvent:
    event = StoredEvent(data["kind"], data["op"], data["target"], 0)
    event.start_ns = _ns(data.get("start_ms"))
    duration = data.get("duration_ms")
    event.end_ns = None if duration is None else event.start_ns + _ns(duration)
    event.statement = data.get("statement")
    if data["kind"] == DB and data.get("sql") is not None:
        # The log holds the statement as the driver took it (%(s)s, :id) but not the
        # driver's paramstyle; the SQL as listed (? or values in place) shapes the same way
        # the live trace's statement does, so findings and repeats read as they did live.
        event.statement, event.paramstyle = data["sql"], "qmark"
    # The rendered SQL tells calls apart when it holds values; without them, no two calls
    # are claimed to be identical.
    event.params = data.get("sql") if data.get("params") is not None else object()
    event.keys = tuple(data.get("keys") or ())
    event.hit = data.get("hit")
    missed = data.get("missed_keys")
    event.missed_keys = None if missed is None else tuple(missed)
    if data.get("miss_count") is not None and data.get("hit_count") is not None:
        event.counts = (data["hit_count"], data["miss_count"])
    event.rows = data.get("rows")
    event.note = data.get("note")
    event.error = data.get("error")
    event.error_message = data.get("error_message")
    event._sql = data.get("sql")
    event._callsite = data.get("callsite")
    event._site = _site(event._callsite)
    event._description = _description(data)
    return event


class _Code(NamedTuple):
    """What findings read of a callsite's code object, from the callsite's text."""

    co_filename: str
    co_name: str


_CALLSITE = re.compile(r"(?P<file>.+):(?P<line>\d+) in (?P<name>\S+)")


def _site(callsite: str | None) -> tuple[_Code, int] | None:
    """``("app/views.py:42 in listing")`` as the ``(code, line)`` a live event holds, so that
    findings and repeats name the callsite as they did live."""
    match = _CALLSITE.fullmatch(callsite or "")
    if match is None:
        return None
    return _Code(match["file"], match["name"]), int(match["line"])


def _description(data: dict[str, Any]) -> str:
    """What the line says after ``[target] 0.902 ms``."""
    line = data.get("line") or ""
    prefix = f"[{visible(str(data.get('target', '')))}] "
    if line.startswith(prefix):
        rest = line[len(prefix) :]
        timing = _TIMING.match(rest)
        if timing:
            return rest[timing.end() :]
    return data.get("sql") or line


def _unlisted(total: dict[str, Any], listed: list[StoredEvent]) -> dict[str, _Tally]:
    """A target's calls that its totals count but the line does not list (past
    ``max_events``), per op: the round-trip ops its totals name, the rest as the op of its
    listed statements (or ``execute``)."""
    ops = {op: (t["count"], t["ms"], t["errors"]) for op, t in (total.get("ops") or {}).items()}
    rest = (  # a target's calls leave its round trips out, its time and errors take them in
        total["calls"],
        total["ms"] - sum(ms for _, ms, _ in ops.values()),
        total.get("errors", 0) - sum(e for _, _, e in ops.values()),
    )
    other_op = next((e.op for e in listed if e.op not in ops), "execute")
    ops[other_op] = rest
    unlisted = {}
    for op, (calls, ms, errors) in ops.items():
        mine = [e for e in listed if (e.op if e.op in ops else other_op) == op]
        if calls - len(mine) <= 0:
            continue
        tally = unlisted[op] = _Tally()
        tally.calls = calls - len(mine)
        tally.ns = max(0, _ns(ms) - sum((e.end_ns or e.start_ns) - e.start_ns for e in mine))
        tally.errors = max(0, errors - sum(1 for e in mine if e.error))
    return unlisted


def load(record: dict[str, Any]) -> tuple[Trace, RequestInfo]:
    """The trace and the request of one kept line."""
    trace = Trace(name="request")
    trace._used = True
    trace.start_ns = 0
    trace.end_ns = _ns(record.get("elapsed_ms", record.get("duration_ms")))
    events = [_event(data) for data in record.get("events", [])]
    trace._events = events
    summary = record.get("summary") or {}
    trace.profiler_errors = summary.get("profiler_errors", 0)
    for total in record.get("targets") or ():  # calls past max_events: in the totals only
        listed = [e for e in events if e.kind == total["kind"] and e.target == total["target"]]
        for op, part in _unlisted(total, listed).items():
            trace._overflow[(total["kind"], total["target"], op)] = part
    request = record.get("request") or {}
    info = RequestInfo(
        request.get("method", record.get("method", "GET")),
        request.get("path", record.get("path", "")),
        str(record.get("status", request.get("status", ""))),
    )
    return trace, info
