"""What the HTTP client integrations share: the ``http`` service and the event of one exchange.

One event is one request sent and its response received, on one connection: a redirect or a
retry is another event. The URL is kept redacted (no credentials, no query-string values),
and no header is kept, so nothing secret is ever held, shown or written.

The event's time runs until the response's body has been read to the end (or closed), as
the application reads it, so a streamed body (``requests`` with ``stream=True``, urllib3's
``preload_content=False``, ``httpx``'s ``client.stream()``) is timed when it is read, not
when its headers arrive. Until then the event's time is the time to the headers, its size
is unknown, and its note says so (:data:`BODY_PENDING`); a body closed before its end says
how much was read (:data:`BODY_CLOSED_EARLY`). Only the trace's own lifetime counts: a body
read after the trace closed leaves the event as it was.
"""

from __future__ import annotations

from typing import Any

from ioprofiler.event import HTTP
from ioprofiler.recording import begin, done, failed, perf_counter_ns, profiler_failed
from ioprofiler.targets import Service
from ioprofiler.urls import redact_url

# [http api.example.com:443], whichever scheme: the port tells http from https
SERVERS = Service("http")
DEFAULT_PORTS = {"http": 80, "https": 443}

# An event's note while its body is unread: the time shown is the time to the headers.
BODY_PENDING = "time to headers, body not read to the end"
# An event's note when the application closed the response before the end of its body.
BODY_CLOSED_EARLY = "closed before the end of the body"


def begin_exchange(traces: Any, scheme: str, host: str, port: int | None, method: Any, url: Any):
    """An event for one request, or None when the profiler failed (counted on the traces)."""
    try:
        if port is None:
            port = DEFAULT_PORTS.get(scheme)
        if isinstance(method, bytes):
            method = method.decode("ascii", "replace")
        if isinstance(url, bytes):
            url = url.decode("utf-8", "replace")
        event = begin(traces, HTTP, str(method).upper(), SERVERS.target((host, port)))
        event.statement = redact_url(str(url))
        event.start_ns = perf_counter_ns()
        return event
    except Exception as exc:
        profiler_failed(traces, exc)
        return None


def finish_exchange(
    event: Any, traces: Any, status: Any, size: int | None, body_pending: bool = False
) -> None:
    """The response's headers arrived (and its body, unless ``body_pending``): record its
    status and the body's size in bytes as received. With ``body_pending`` the event says
    that its time is to the headers, until :func:`body_ended`."""
    event.end_ns = perf_counter_ns()
    try:
        event.status = int(status)
        event.size = size
        if body_pending:
            event.note = BODY_PENDING
    except Exception as exc:
        profiler_failed(traces, exc)
    done(event)


def body_ended(
    event: Any, traces: Any, size: int, complete: bool, error: BaseException | None = None
) -> None:
    """The body of a pending event was read to its end (``complete``) or closed before it,
    ``size`` bytes received; ``error``: the exception its reading raised. Ends the event's
    time now, while every trace it is in is still recording; otherwise leaves it."""
    end = perf_counter_ns()
    try:
        if event.note != BODY_PENDING or not all(trace.recording for trace in traces):
            return
        event.size = size
        event.note = None if complete else BODY_CLOSED_EARLY
        if error is not None:
            failed(event, error)  # the time ends now, the error as for any call
            return
        event.end_ns = end
    except Exception as exc:
        profiler_failed(traces, exc)


def has_no_body(method: str, status: int, length: Any) -> bool:
    """A response that carries no body whatever its headers say (RFC 9110 §6.4.1)."""
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200 or length == "0"
