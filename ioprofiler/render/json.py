"""The trace as JSON: schema ``ioprofiler.trace``, version 2 (documented in docs/reference.md).

>>> document = json.loads(render_json(trace, RequestInfo("GET", "/", "200 OK")))
>>> document["schema"], document["version"], document["events"][0]["target"]
('ioprofiler.trace', 2, 'dbshard01')

Version 2: an event's ``hits``/``misses`` became ``hit_count``/``missed_keys``; ``findings``
added; ``repeats[].likely_n_plus_one`` follows the N+1 finding's count threshold (5 by
default, was 3).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ioprofiler import config
from ioprofiler.analysis import summarize
from ioprofiler.cache_text import key_text
from ioprofiler.event import DB, Event
from ioprofiler.findings import Finding, find
from ioprofiler.render.request import RequestInfo
from ioprofiler.render.text import event_line
from ioprofiler.roundtrip_text import detail_fields, ops_fields
from ioprofiler.sql_text import render_statement
from ioprofiler.values import Clipped

if TYPE_CHECKING:
    from ioprofiler.trace import Trace

SCHEMA = "ioprofiler.trace"
VERSION = 2  # what changed: see the module's docstring


def _jsonable(value: Any) -> Any:
    """Parameter values as JSON: numbers, strings, booleans and null as they are; bytes as
    text; anything else as its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Clipped) and isinstance(value.head, tuple):
        return [_jsonable(v) for v in value.head] + [f"…(+{value.more} more)"]
    return str(value)


KeyShown = Callable[[str], str]  # a cache key's text -> what a log may keep of it


class _KeysHidden:
    """An event seen with its cache keys replaced by ``?`` (or by what ``shown`` keeps of
    each), for logs that must not keep them."""

    def __init__(self, event: Event, shown: KeyShown | None = None) -> None:
        self._event = event
        self.keys = self._shown(event.keys, shown)
        missed = event.missed_keys
        self.missed_keys = None if missed is None else self._shown(missed, shown)

    @staticmethod
    def _shown(keys: tuple[Any, ...], shown: KeyShown | None) -> tuple[str, ...]:
        if shown is None:
            return ("?",) * len(keys)
        return tuple(shown(key_text(key)) for key in keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._event, name)


def event_dict(
    trace: Trace,
    event: Event,
    index: int,
    redact: bool | None = None,
    keys: bool | KeyShown = True,
) -> dict[str, Any]:
    """One event as JSON. ``redact`` (default: the configured setting) writes values, bound
    or written into the statement, as ``?`` and leaves out the parameters and the error's
    message (which may quote them); ``keys=False`` writes each cache key as ``?``, and a
    callable writes what it returns for each key's text."""
    if redact is None:
        redact = config.settings.redact
    sql = None
    if event.statement is not None:
        sql = render_statement(
            event.statement, event.params, event.paramstyle, event.rows, redact, event.dialect
        )
    seen: Any = event if keys is True else _KeysHidden(event, keys or None)
    description = Event.description(seen, sql)
    return {
        "index": index,
        "kind": event.kind,
        "target": event.target,
        "op": event.op,
        "start_ms": round(trace.offset_ms(event), 6),
        "duration_ms": None if event.duration_ms is None else round(event.duration_ms, 6),
        "statement": redacted(event) if redact and event.kind == DB else event.statement,
        "sql": sql,
        "params": None if redact or event.params is None else _jsonable(event.params),
        "rows": event.rows,
        "status": event.status,
        "size": event.size,
        "keys": [key_text(k) for k in seen.keys],
        "hit": event.hit,
        "hit_count": event.hit_count,
        "miss_count": event.miss_count,
        "missed_keys": None
        if seen.missed_keys is None
        else [key_text(k) for k in seen.missed_keys],
        "note": event.note,
        "detail": detail_fields(event.op, event.detail),
        "error": event.error,
        "error_message": None if redact else event.error_message,
        "callsite": event.callsite,
        "line": event_line(event, description=description),
    }


def redacted(event: Event) -> str | None:
    """A database event's statement as it was written, with the values written into it as
    ``?`` (an HTTP call's statement, its URL, holds no values already)."""
    if event.statement is None:
        return None
    return render_statement(event.statement, None, event.paramstyle, None, True, event.dialect)


def finding_dict(
    finding: Finding, numbers: dict[int, int], keys: bool | KeyShown = True
) -> dict[str, Any]:
    """A finding; ``events`` holds the ``index`` of each event it is about. Unless ``keys``
    is True the message names no cache key."""
    return {
        "kind": finding.kind,
        "title": finding.title,
        "message": finding.message if keys is True else finding.without_keys,
        "ms": round(finding.ms, 6),
        "hint": finding.hint,
        "events": [numbers[id(e)] for e in finding.events if id(e) in numbers],
    }


def trace_dict(
    trace: Trace,
    request: RequestInfo | None = None,
    redact: bool | None = None,
    keys: bool | KeyShown = True,
    slow_ms: float | None = None,
) -> dict[str, Any]:
    """The trace as the schema's dict; ``redact`` and ``keys`` as in :func:`event_dict`;
    ``slow_ms``: the slow-call finding's threshold (default: the configured one)."""
    summary = summarize(trace)
    events = trace.events
    numbers = {id(e): i for i, e in enumerate(events, start=1)}
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "request": None
        if request is None
        else {"method": request.method, "path": request.path, "status": request.status},
        "elapsed_ms": round(trace.elapsed_ms, 6),
        "summary": {
            "calls": summary.calls,
            "db_calls": summary.calls_of("db"),
            "db_ms": round(summary.ms_of("db"), 6),
            "cache_calls": summary.calls_of("cache"),
            "cache_ms": round(summary.ms_of("cache"), 6),
            "cache_hits": summary.hits,
            "cache_misses": summary.misses,
            "http_calls": summary.calls_of("http"),
            "http_ms": round(summary.ms_of("http"), 6),
            "errors": summary.errors,
            "dropped": summary.dropped,
            "running": summary.running,
            "profiler_errors": summary.profiler_errors,
            "unexplained_ms": round(summary.unexplained_ms, 6),
            "ops": ops_fields(summary.ops_of()),
        },
        "targets": [
            {
                "kind": t.kind,
                "target": t.target,
                "calls": t.calls,
                "ms": round(t.ms, 6),
                "hits": t.hits,
                "misses": t.misses,
                "errors": t.errors,
                "ops": ops_fields(t.ops),
            }
            for t in summary.targets
        ],
        "repeats": [
            {
                "kind": r.kind,
                "target": r.target,
                "shape": r.shape,
                "count": r.count,
                "ms": round(r.ms, 6),
                "identical": r.identical,
                "likely_n_plus_one": r.likely_n_plus_one,
                "callsites": r.callsites,
            }
            for r in summary.repeats
        ],
        "findings": [finding_dict(f, numbers, keys) for f in find(trace, slow_ms=slow_ms)],
        "events": [event_dict(trace, e, i, redact, keys) for i, e in enumerate(events, start=1)],
    }


def render_json(
    trace: Trace, request: RequestInfo | None = None, slow_ms: float | None = None
) -> str:
    document = trace_dict(trace, request, slow_ms=slow_ms)
    return json.dumps(document, ensure_ascii=False, indent=None)
