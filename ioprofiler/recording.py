"""What an integration's wrapper calls while a trace is open.

The shape every wrapper follows::

    def wrapper(wrapped, instance, args, kwargs):
        traces = active.get()
        if not traces:                       # the inactive fast path
            return wrapped(*args, **kwargs)
        event = begin(traces, DB, "execute", target)   # never raises; None on failure
        ... fill the event's raw facts ...
        event.start_ns = perf_counter_ns()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        event.end_ns = perf_counter_ns()
        ... read the outcome ...
        done(event)
        return result
"""

from __future__ import annotations

import logging
from time import perf_counter_ns
from typing import Any

from ioprofiler import callsite
from ioprofiler.event import Event
from ioprofiler.trace import Trace, active

__all__ = ["active", "begin", "done", "failed", "profiler_failed", "perf_counter_ns"]

log = logging.getLogger("ioprofiler")
_MAX_ERROR_MESSAGE = 300


def begin(traces: tuple[Trace, ...], kind: str, op: str, target: Any) -> Event:
    """Start an event in every open trace; the caller sets ``start_ns`` just before the call."""
    event = Event(kind, op, target, traces[-1].start_ns)
    event._traces = traces
    # begin() is called by an integration's helper, called by its wrapper: start above it.
    event._code, event._lineno = callsite.find(3)
    overflow = None
    for trace in traces:
        if not trace._open:
            continue
        if len(trace._events) < trace.max_events:
            trace._events.append(event)
        else:
            overflow = (trace,) if overflow is None else overflow + (trace,)
    event._overflow = overflow
    event.start_ns = perf_counter_ns()
    return event


def done(event: Event) -> None:
    """Finish an event whose ``end_ns`` and outcome are set."""
    if event._overflow is not None:
        for trace in event._overflow:
            trace._tally(event)
        event._overflow = None
    event._traces = None


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
    try:
        done(event)
    except Exception as inner:  # pragma: no cover - done() only touches our own objects
        profiler_failed(event._traces or (), inner)


def profiler_failed(traces: tuple[Trace, ...], exc: BaseException) -> None:
    """Count a failure of the profiler itself on the traces; never raise it."""
    for trace in traces:
        trace.profiler_errors += 1
    log.debug("ioprofiler failed while recording a call", exc_info=exc)
