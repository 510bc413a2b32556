"""Where finished requests go when every request is traced: the recorder, the exporters.

A surface (the WSGI middleware today, ASGI and framework adapters later) builds one
:class:`FinishedRequest` per request once its response has finished, after the body's
``close()``, and hands it to each attached :class:`Sink` on the request's thread:

>>> class Counter:
...     def __init__(self):
...         self.slow = 0
...     def handle(self, request: FinishedRequest) -> None:
...         self.slow += request.duration_ms > 500      # cheap: aggregate or enqueue
...     def close(self) -> None:
...         pass
>>> app = IOProfilerMiddleware(app, export=[Counter()])

``handle`` must be cheap and never block: enqueue or aggregate, and do the real work
elsewhere. The surface catches and logs whatever a sink raises.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ioprofiler.trace import Trace

log = logging.getLogger("ioprofiler")

HOST = socket.gethostname()
MAX_REQUEST_ID = 128  # a longer incoming id is replaced: ids go to logs and back to clients
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/@-]+\Z")
REQUEST_ID_HEADER = "X-Request-Id"

RouteOf = Callable[[dict[str, Any]], "str | None"]


@dataclass(frozen=True)
class FinishedRequest:
    """One request whose response has finished, with the trace of all its I/O.

    ``query`` is the raw query string: a sink that stores or sends it drops its values
    unless the deployment opted in. ``route`` is the route template (``/listing/<int:id>``)
    when known. ``started_at`` is ``time.time()`` when the request arrived. ``context`` is
    a copy of the context the application was called in, for sinks that read context-local
    state of that moment (OpenTelemetry's current span): ``request.context.run(fn)``.
    ``error`` is the type of the exception the application raised (``"RuntimeError"``),
    before its response started or while its body was being sent; ``status`` is then 500,
    whatever status line had gone out.
    """

    trace: Trace
    method: str
    path: str
    query: str
    route: str | None
    status: int
    started_at: float
    duration_ms: float
    request_id: str
    host: str
    pid: int
    context: contextvars.Context | None = None
    error: str | None = None


@runtime_checkable
class Sink(Protocol):
    """What the middleware's ``record=`` and ``export=`` accept."""

    def handle(self, request: FinishedRequest) -> None: ...

    def close(self) -> None: ...


def check_sinks(record: object, export: object) -> tuple[Sink, ...]:
    """The sinks to feed, from a surface's ``record=`` and ``export=`` options; a clear
    error for anything that is not a sink."""
    if export is None:
        exported: list[object] = []
    elif isinstance(export, Sink):
        exported = [export]
    elif isinstance(export, Iterable) and not isinstance(export, (str, bytes)):
        exported = list(export)
    else:
        raise TypeError(
            f"export must be a list of sinks (objects with handle and close), not {export!r}"
        )
    sinks = ([] if record is None else [record]) + exported
    for sink in sinks:
        if not isinstance(sink, Sink) or not callable(sink.handle) or not callable(sink.close):
            raise TypeError(
                "record= and export= take sinks: objects with handle(request) and close(), "
                f"such as ioprofiler.recorder.Recorder(path); not {sink!r}"
            )
    return tuple(sinks)  # type: ignore[arg-type]


def deliver(sinks: Iterable[Sink], request: FinishedRequest) -> None:
    """Hand ``request`` to each sink; a sink's failure is logged, never raised."""
    for sink in sinks:
        try:
            sink.handle(request)
        except Exception:
            log.exception("ioprofiler: the sink %r failed on a request", sink)


def request_id(incoming: str | None, trusted: bool = True) -> str:
    """The request's id: the incoming ``X-Request-Id`` (set by a proxy, or a client) when
    the deployment trusts it and it is safe to write to logs and send back (1 to 128 of
    ``A-Z a-z 0-9 . _ : + = / @ -``, as UUIDs and nginx's ``$request_id`` are), else a new
    random one.

    >>> request_id("7f3e9c2a-5d41-4f0e-9b8a-2c6d1e0f4a3b")
    '7f3e9c2a-5d41-4f0e-9b8a-2c6d1e0f4a3b'
    >>> len(request_id("evil\\r\\nSet-Cookie: x=1"))  # refused: a new one instead
    32
    """
    if trusted and incoming:
        text = incoming.strip()
        if len(text) <= MAX_REQUEST_ID and _SAFE_REQUEST_ID.match(text):
            return text
    return next(_fresh_ids, None) or _more_ids()


def _more_ids() -> str:
    """A new random id, and the next ones drawn with it: ``os.urandom(16).hex()`` each, one
    system call for 64 of them (a system call per request cost as much as the rest of
    choosing its id)."""
    global _fresh_ids
    drawn = os.urandom(16 * _IDS_DRAWN).hex()
    if _one_at_a_time:
        return drawn[:32]
    _fresh_ids = iter([drawn[i : i + 32] for i in range(32, len(drawn), 32)])
    return drawn[:32]


def _forget_ids() -> None:
    """In a forked child: never hand out an id the parent may hand out too."""
    global _fresh_ids
    _fresh_ids = iter(())


_IDS_DRAWN = 64
_fresh_ids: Iterator[str] = iter(())
# Without the GIL two threads could take the same id from the list: draw each alone there.
_one_at_a_time = not getattr(sys, "_is_gil_enabled", lambda: True)()
if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
    os.register_at_fork(after_in_child=_forget_ids)


def with_request_id(headers: list[tuple[str, str]], request_id: str) -> list[tuple[str, str]]:
    """The response's headers with ``X-Request-Id``, unless the application sent its own,
    so that a record can be matched to the access log's line and the client's report."""
    for name, _ in headers:  # a loop, not any(): this runs on every recorded response
        if len(name) == 12 and name.lower() == "x-request-id":  # no lower() of every name
            return headers
    return [*headers, (REQUEST_ID_HEADER, request_id)]


def error_name(exc: BaseException) -> str | None:
    """The type of an exception the application raised, for :attr:`FinishedRequest.error`;
    None for the ends of a body (``StopIteration``) and for what is not the application's
    failure (``GeneratorExit``, ``KeyboardInterrupt``)."""
    if isinstance(exc, Exception) and not isinstance(exc, (StopIteration, StopAsyncIteration)):
        return type(exc).__name__
    return None


def status_code(status: str | None) -> int:
    """``"404 Not Found"`` -> 404; no status (the application raised) counts as 500."""
    code = _status_codes.get(status)  # type: ignore[arg-type]
    if code is None:
        head = (status or "").split(" ", 1)[0]
        code = int(head) if head.isdigit() else 500
        if len(_status_codes) < 256 and (status is None or type(status) is str):
            _status_codes[status] = code
    return code


_status_codes: dict[str | None, int] = {}  # the status lines seen, a few: read per request


def matched_rule(environ: dict[str, Any]) -> str | None:
    """The rule werkzeug matched, where the framework keeps it on the environ's request
    (Flask). Read while the response starts: Flask forgets it before the body's close()."""
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    return getattr(rule, "rule", None)


def route_of(environ: dict[str, Any], route: RouteOf | None, matched: str | None) -> str | None:
    """The route template: ``environ["ioprofiler.route"]`` if the application set it, else
    the surface's ``route`` callable, else ``matched`` (the surface's :func:`matched_rule`)."""
    explicit = environ.get("ioprofiler.route")
    if explicit is not None:
        return str(explicit)
    if route is not None:
        try:
            found = route(environ)
        except Exception:
            log.exception("ioprofiler: the route callable failed")
            found = None
        if found is not None:
            return str(found)
    return matched
