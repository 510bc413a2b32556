"""What the HTTP client integrations share: the ``http`` service and the event of one exchange.

One event is one request sent and its response's status and headers received, on one
connection: a redirect or a retry is another event. The URL is kept redacted (no
credentials, no query-string values), so nothing secret is ever held, shown or written.
"""

from __future__ import annotations

from typing import Any

from ioprofiler.event import HTTP
from ioprofiler.recording import begin, done, perf_counter_ns, profiler_failed
from ioprofiler.targets import Service
from ioprofiler.urls import redact_url

# [http api.example.com:443], whichever scheme: the port tells http from https
SERVERS = Service("http")
DEFAULT_PORTS = {"http": 80, "https": 443}


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


def finish_exchange(event: Any, status: int, headers: Any, size: int | None = None) -> None:
    """Record the response's status and, when told, its body's size."""
    event.end_ns = perf_counter_ns()
    try:
        event.status = int(status)
        if size is None:
            length = headers.get("content-length") if headers is not None else None
            size = int(length) if length is not None else None
        event.size = size
    except Exception as exc:
        profiler_failed(event._traces or (), exc)
    done(event)
