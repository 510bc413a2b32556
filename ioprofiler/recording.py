"""What an integration's wrapper calls while a trace is open.

The shape every wrapper follows::

    def wrapper(wrapped, instance, args, kwargs):
        traces = active.get()
        if not traces:                       # the inactive fast path
            return wrapped(*args, **kwargs)
        try:
            event = begin(traces, DB, "execute", target, depth=2)
            ... fill the event's raw facts (a few attribute writes) ...
        except Exception as exc:
            profiler_failed(traces, exc)
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        event.end_ns = perf_counter_ns()
        ... read the outcome ...
        done(event)
        return result

Every step here runs for every recorded call: keep work out of it (``make bench`` shows
the recording path step by step; ``benchmarks/instructions.py`` counts its instructions). A
wrapper that starts its events in a helper of its own passes ``depth=3`` (the default).
``done(event)`` only settles an event that a full trace could not keep; the busiest wrappers
(SQLAlchemy's statements, memcache's get) write ``if event._overflow is not None:
done(event)`` and save the call.

``begin`` returns an event of the class for ``kind`` (:mod:`ioprofiler.event`): any field
can be written on it, a field of another kind too (kept in the event's ``__dict__``).

Layers: a statement an ORM integration records (SQLAlchemy, Django) goes on to its DB-API
driver, whose integration (PyMySQL, psycopg) would record it a second time. An integration
whose recorded call goes on to a library below it sets :data:`inside` while the call runs,
and every database wrapper lets a call through unrecorded while it is set::

    mark = below and cursor_reaches_below[cursor.__class__]  # a driver integration's cursor?
    token = inside.set(True) if mark else None
    try:
        result = wrapped(*args, **kwargs)
    finally:
        if token is not None:
            inside.reset(token)

Setting and resetting it costs the recorded call about 0.1 µs, so an integration above pays
it only when an installed integration below records the statement's driver: a driver's
integration says which package it records with :func:`add_below` on install (and
:func:`remove_below` on uninstall), and :data:`cursor_reaches_below` answers per cursor class.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any

from ioprofiler import callsite
from ioprofiler.event import (
    CACHE,
    CACHE_CALL_DEFAULTS,
    CONNECTION_OP_DEFAULTS,
    CONNECTION_OPS,
    DB,
    SETUP,
    STATEMENT_DEFAULTS,
    CacheCall,
    ConnectionOp,
    Event,
    Statement,
    new_event,
)
from ioprofiler.trace import Trace, active

_new = object.__new__

__all__ = [
    "active",
    "add_below",
    "below",
    "cursor_reaches_below",
    "begin",
    "done",
    "failed",
    "inside",
    "run_as_setup",
    "profiler_failed",
    "perf_counter_ns",
    "remove_below",
]

log = logging.getLogger("ioprofiler")
_MAX_ERROR_MESSAGE = 300

# True while a recorded call runs whose own round trips go through a patched library below
# it (an ORM's statement through its driver, a connect running set-up statements): those
# are part of its event, and every database wrapper lets them through unrecorded.
inside: ContextVar[bool] = ContextVar("ioprofiler_inside", default=False)
# The installed integrations that sit below another (DB-API drivers), each with the package
# it records ("pymysql", "psycopg"). Mutated in place, never rebound: integrations import it
# and test it per recorded call.
below: dict[str, str] = {}


def _reaches_below(cursor_class: type) -> bool:
    """Whether a statement on a cursor of this class may be recorded again below, by an
    installed driver integration. False when the class is, or derives from, a class of a
    DB-API driver (a package with ``apilevel``: ``sqlite3``, Django's SQLite cursor) that no
    installed integration records; True for anything else, wrappers and adapters included
    (SQLAlchemy's asyncio cursors, a tracer's proxy that does not pass ``__class__`` on)."""
    recorded = set(below.values())
    reaches = True
    for klass in getattr(cursor_class, "__mro__", ()):
        package = (getattr(klass, "__module__", None) or "").partition(".")[0]
        if package in recorded:
            return True
        if getattr(sys.modules.get(package), "apilevel", None) is not None:
            reaches = False
    return reaches


class _ByCursorClass(dict):
    """``cursor_reaches_below[cursor.__class__]``: :func:`_reaches_below`, once per class.
    Never raises (the wrappers read it outside their own error handling): a class it cannot
    tell about gets the mark, the answer that cannot record a statement twice."""

    def __missing__(self, cursor_class: type) -> bool:
        try:
            reaches = _reaches_below(cursor_class)
        except Exception:
            reaches = True
        self[cursor_class] = reaches
        return reaches


# Whether an ORM's statement on a cursor of a class needs the :data:`inside` mark.
cursor_reaches_below: dict[type, bool] = _ByCursorClass()


def add_below(integration: str, package: str) -> None:
    """Say that ``integration`` (installed) records the DB-API driver ``package`` itself."""
    below[integration] = package
    cursor_reaches_below.clear()


def remove_below(integration: str) -> None:
    """Undo :func:`add_below` (on uninstall)."""
    below.pop(integration, None)
    cursor_reaches_below.clear()


def begin(traces: tuple[Trace, ...], kind: str, op: str, target: Any, depth: int = 3) -> Event:
    """Start an event in every open trace, its clock started last.

    ``depth``: frames from here to the library frame that called the wrapper: 2 when the
    wrapper calls ``begin`` itself (the shape above), 3 (the default) when it calls a helper
    that calls ``begin``. The callsite lookup starts there.

    With the accelerator built (``ioprofiler._speedups``), ``begin`` is its compiled twin
    for statements, cache calls and a database connection's round trips (COMMIT, ROLLBACK,
    PING…: the same event, fields and callsite, in one C call), and this function, kept as
    ``begin_pure``, makes every other kind.
    """
    # new_event(), without the call for the kinds most calls are (the same fields, the
    # same defaults: tests/test_event.py holds them together)
    if kind == DB and op not in CONNECTION_OPS:
        event = _new(Statement)
        event.statement = event.params = event.paramstyle = event.dialect = event.rows = None
    elif kind == CACHE:
        event = _new(CacheCall)
        event.keys = ()
        event.hit = event.missed_keys = event.note = None
    else:
        event = new_event(kind, op, target, 0)
    event.op = op
    event._target = target
    event._origin_ns = traces[-1].start_ns
    event.start_ns = 0  # until the clock starts below: readers in other threads may see it
    event.end_ns = event._overflow = None
    event._site = callsite.find(depth)
    for trace in traces:
        if trace._open:
            events = trace._events
            if len(events) < trace.max_events:
                events.append(event)
            else:
                overflow = event._overflow
                event._overflow = (trace,) if overflow is None else overflow + (trace,)
    event.start_ns = perf_counter_ns()
    return event


begin_pure = begin
compiled_begin = False


def _install_compiled_begin() -> None:
    """Swap in the compiled begin when the callsite accelerator is in use (same switch)."""
    global begin, compiled_begin
    if not callsite.accelerated:
        return
    from ioprofiler import _speedups

    try:
        _speedups.install_events(
            Event,
            Statement,
            tuple(STATEMENT_DEFAULTS.items()),
            CacheCall,
            tuple(CACHE_CALL_DEFAULTS.items()),
            DB,
            CACHE,
            CONNECTION_OPS,
            begin_pure,
            vars(callsite),
            Trace,
            ConnectionOp,
            tuple(CONNECTION_OP_DEFAULTS.items()),
        )
    except (AttributeError, TypeError) as exc:  # an older build, or a class it cannot fill
        log.debug("ioprofiler: recording with the pure-Python begin: %s", exc)
        return
    begin = _speedups.begin
    compiled_begin = True


_install_compiled_begin()


def done(event: Event) -> None:
    """Finish an event whose ``end_ns`` and outcome are set."""
    overflow = event._overflow
    if overflow is not None:
        event._overflow = None
        for trace in overflow:
            trace._tally(event)


def failed(event: Event, exc: BaseException) -> None:
    """Finish an event whose call raised ``exc``. Never raises itself."""
    event.end_ns = perf_counter_ns()
    try:
        event.error = type(exc).__qualname__
        message = str(exc)
        if len(message) > _MAX_ERROR_MESSAGE:
            message = message[:_MAX_ERROR_MESSAGE] + "…"
        event.error_message = message
    except Exception:
        event.error = event.error or "error"
    overflow = event._overflow or ()
    try:
        done(event)
    except Exception as inner:  # pragma: no cover - done() only touches our own objects
        profiler_failed(overflow, inner)


def run_as_setup(
    traces: tuple[Trace, ...], fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """``fn(*args, **kwargs)``, a library setting a new connection up: the statements it
    sends are listed as connection set-up (op ``setup``), its connects and rollbacks as
    they are.

    What this context records meanwhile goes to a trace of its own, then to ``traces``, so
    the statements other threads record in the same traces stay theirs. For the rare
    moments a connection is opened, never per statement.
    """
    collector = Trace(max_events=sys.maxsize)  # a handful of events; the traces bound them
    collector.start_ns = traces[-1].start_ns  # the events' times, from the innermost trace's
    collector._open = True
    token = active.set((collector,))
    try:
        return fn(*args, **kwargs)
    finally:
        active.reset(token)
        _keep_as_setup(traces, collector)


def _keep_as_setup(traces: tuple[Trace, ...], collector: Trace) -> None:
    for trace in traces:
        trace.profiler_errors += collector.profiler_errors
    for event in collector._events:
        if event.kind == DB and event.op in _STATEMENT_OPS:
            event.op = SETUP
        for trace in traces:
            if not trace._open:
                continue
            if len(trace._events) < trace.max_events:
                trace._events.append(event)
            else:
                trace._tally(event)


_STATEMENT_OPS = ("execute", "executemany")


def profiler_failed(traces: tuple[Trace, ...], exc: BaseException) -> None:
    """Count a failure of the profiler itself on the traces; never raise it."""
    for trace in traces:
        trace.profiler_errors += 1
    log.debug("ioprofiler failed while recording a call", exc_info=exc)
