"""``?ioprofiler=1`` for any ASGI application: FastAPI, Starlette, and the rest.

>>> from ioprofiler.asgi import IOProfilerMiddleware
>>> app.add_middleware(IOProfilerMiddleware)              # FastAPI, Starlette
>>> app = IOProfilerMiddleware(app, allow=ioprofiler.access.networks("10.0.0.0/8"))

The same options, modes, access rules, Server-Timing and sinks as
:class:`ioprofiler.wsgi.IOProfilerMiddleware`, decided by the same code
(:mod:`ioprofiler.profiling`). A pure ASGI middleware: the application runs in the
middleware's own task and context, so the I/O of ``async def`` endpoints, of tasks they
start and of ``def`` endpoints run in the framework's thread pool (which copies the
context) lands in the request's trace. The trace closes when the last body message is
sent: I/O after that (a Starlette ``BackgroundTask``) is not the request's.
``lifespan`` and ``websocket`` scopes pass through untouched.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

from ioprofiler import access, sinks
from ioprofiler.profiling import (
    FOLLOW,
    PASS,
    REPLACE,
    RequestProfiler,
    not_shown,
    request_line,
    with_trace_id,
)
from ioprofiler.render.request import RequestInfo
from ioprofiler.response import ResponseParts, is_stream
from ioprofiler.store import new_id
from ioprofiler.trace import Trace, active

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class IOProfilerMiddleware(RequestProfiler):
    """Profile the HTTP requests that ask for it, and show their I/O in the response.

    Takes the options of :class:`ioprofiler.profiling.RequestProfiler`; a ``route``
    callable gets the scope. Without one, the route is ``scope["ioprofiler.route"]`` if the
    application set it, else the path of the route the framework matched
    (``scope["route"]``, FastAPI and recent Starlette).
    """

    def __init__(self, app: ASGIApp, allow: access.Rule | None = None, **options: Any) -> None:
        if not callable(app):
            raise TypeError(f"IOProfilerMiddleware wraps an ASGI application, not {app!r}")
        super().__init__(allow, **options)
        self.app = app
        self._param = self.param.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.store is not None and await self._answered_by_id(scope, send):
            return None
        query: bytes = scope.get("query_string", b"")
        mode = notice = None
        if self._param in query:
            mode, notice = self.mode(query.decode("latin-1"))
            if mode is not None and not self.allowed(environ_of(scope)):
                mode = None
        if mode is None and self.store is not None and self.follows(environ_of(scope)):
            scope = dict(scope, **{"ioprofiler.trace_id": new_id()})
            return await ProfiledExchange(self, scope, send, FOLLOW, None).run(receive)
        if mode is None:
            if self.sinks:
                return await TracedExchange(self, scope, send).run(receive)
            return await self.app(scope, receive, send)
        if self.strip_param:
            kept = self.without_param(query.decode("latin-1"))
            scope = dict(scope, query_string=kept.encode("latin-1"))
        if self.store is not None:  # kept for the recent requests page
            scope = dict(scope, **{"ioprofiler.trace_id": new_id()})
        await ProfiledExchange(self, scope, send, mode, notice).run(receive)

    async def _answered_by_id(self, scope: Scope, send: Send) -> bool:
        """Send the recent requests or the kept trace asked for; False: the application
        answers."""
        if not scope.get("path", "").startswith(self.follow_path):
            return False
        own = self.own_answer(environ_of(scope))
        if own is None:
            return False
        status = int(own.status.split(" ", 1)[0])
        headers = _raw_headers(own.headers)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": own.body})
        return True


def environ_of(scope: Scope) -> dict[str, Any]:
    """The WSGI environ that describes the same request, for the access rules: client
    address, method, path, query string and headers (so cookies too)."""
    client = scope.get("client")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.get("method", "GET"),
        "SCRIPT_NAME": "",
        "PATH_INFO": _path_info(scope),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.url_scheme": scope.get("scheme", "http"),
    }
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = "HTTP_" + name
        value = raw_value.decode("latin-1")
        if name in environ:
            value = environ[name] + ("; " if name == "HTTP_COOKIE" else ",") + value
        environ[name] = value
    return environ


def _path_info(scope: Scope) -> str:
    """The path as WSGI (PEP 3333) carries it: its bytes, percent-decoded, as Latin-1 text;
    ``/€uro`` is ``"/\xe2\x82\xacuro"``. The bytes are those of the decoded ``path`` (with
    ``root_path``, as before), or of ``raw_path`` where the client sent bytes that are not
    UTF-8, which ``path`` can only show as U+FFFD."""
    path: str = scope.get("path", "")
    raw = scope.get("raw_path")
    if "\ufffd" in path and isinstance(raw, (bytes, bytearray)):
        return unquote_to_bytes(bytes(raw).split(b"?", 1)[0]).decode("latin-1")
    return path.encode("utf-8", "surrogateescape").decode("latin-1")


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _text_headers(raw: Any) -> list[tuple[str, str]]:
    return [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in raw or ()]


def _raw_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


class TracedExchange:
    """One request traced for the sinks: the application runs with the trace recording,
    its messages pass through unchanged, and the trace closes with the last body message."""

    def __init__(self, middleware: IOProfilerMiddleware, scope: Scope, send: Send) -> None:
        self.middleware = middleware
        self.scope = scope
        self.downstream = send
        self.trace: Trace = middleware.new_trace()
        self.started_at = time.time()
        # the caller's context (an outer OpenTelemetry span, say), for the sinks
        self.context = contextvars.copy_context() if middleware.sinks else None
        self.status: int | None = None
        self.error: str | None = None  # the type of the exception the application raised
        self.request_id = ""
        scope["ioprofiler.trace"] = self.trace
        if middleware.sinks:
            self.request_id = middleware.request_id(_header(scope, b"x-request-id"))
            scope["ioprofiler.request_id"] = self.request_id

    async def run(self, receive: Receive) -> None:
        trace = self.trace
        active.set(active.get() + (trace,))
        try:
            await self.middleware.app(self.scope, receive, self.send)
        except BaseException as exc:
            self.error = sinks.error_name(exc)
            raise
        finally:
            active.set(tuple(t for t in active.get() if t is not trace))
            self.finish()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            message = self.with_request_id(message)
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.close_trace()
        await self.downstream(message)

    def with_request_id(self, start: Message) -> Message:
        """The ``http.response.start`` message with ``X-Request-Id``, when recording, and
        with ``X-IOProfiler-Id``, when followed."""
        trace_id = self.scope.get("ioprofiler.trace_id")
        if not self.request_id and trace_id is None:
            return start
        headers = _text_headers(start.get("headers"))
        if self.request_id:
            headers = sinks.with_request_id(headers, self.request_id)
        if trace_id is not None:
            headers = with_trace_id(headers, trace_id)
        return dict(start, headers=_raw_headers(headers))

    def close_trace(self) -> None:
        if self.trace.recording:
            self.trace.close()
            self.closed()

    def closed(self) -> None:
        """What a subclass does with the closed trace before the sinks get it."""

    def finish(self) -> None:
        """Close the trace (if the body did not) and hand the request to the sinks."""
        self.close_trace()
        middleware = self.middleware
        if not middleware.sinks:
            return
        scope = self.scope
        matched = getattr(scope.get("route"), "path", None)
        middleware.deliver(
            self.trace,
            method=scope.get("method", "GET"),
            path=scope.get("root_path", "") + scope.get("path", ""),
            query=scope.get("query_string", b"").decode("latin-1"),
            route=sinks.route_of(scope, middleware.route, matched),  # type: ignore[arg-type]
            status=self.status if self.status is not None else 500,
            started_at=self.started_at,
            request_id=self.request_id,
            context=self.context,
            error=self.error,
        )


class ProfiledExchange(TracedExchange):
    """One request profiled for its client: the body is buffered while it may still be
    changed, then sent with the panel, the listing or the trace instead."""

    def __init__(
        self,
        middleware: IOProfilerMiddleware,
        scope: Scope,
        send: Send,
        mode: str,
        notice: str | None,
    ) -> None:
        super().__init__(middleware, scope, send)
        self.mode = mode
        self.notice = notice
        self.line = request_line(environ_of(scope))
        self.start: Message | None = None
        self.headers: list[tuple[str, str]] = []
        self.decision: str | None = None
        self.chunks: list[bytes] = []
        self.size = 0

    @property
    def request(self) -> RequestInfo:
        query = self.scope.get("query_string", b"").decode("latin-1")
        path = self.scope.get("root_path", "") + self.scope.get("path", "")
        status = _status_line(self.status) if self.status is not None else ""
        return RequestInfo(
            self.scope.get("method", "GET"), path + (f"?{query}" if query else ""), status
        )

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._started(message)
        elif kind == "http.response.body" and self.decision != PASS and self.start is not None:
            await self._body(message)
        else:
            if kind == "http.response.body" and not message.get("more_body", False):
                self.close_trace()
            await self.downstream(message)

    async def _started(self, message: Message) -> None:
        self.status = message["status"]
        self.start = message
        self.headers = _text_headers(message.get("headers"))
        self.decision = self.middleware.decide(
            self.line,
            self.mode,
            self.scope.get("method", "GET"),
            _status_line(self.status),
            self.headers,
        )
        if self.decision == PASS:
            await self._send_start_passed_through()

    async def _send_start_passed_through(self) -> None:
        assert self.start is not None and self.status is not None
        status = _status_line(self.status)
        streamed = is_stream(status, self.headers)
        headers = self.middleware.passed_through_headers(self.trace, status, self.headers, streamed)
        await self.downstream(self.with_request_id(dict(self.start, headers=_raw_headers(headers))))

    async def _body(self, message: Message) -> None:
        body = bytes(message.get("body", b""))
        if self.decision != REPLACE:
            self.chunks.append(body)
            self.size += len(body)
        if not message.get("more_body", False):
            await self._send_final()
            return
        limit = self.middleware.max_inject_bytes
        if self.size > limit:
            not_shown(self.line, f"the body grew past max_inject_bytes ({limit:,} bytes)")
            self.decision = PASS
            await self._send_start_passed_through()
            buffered, self.chunks = b"".join(self.chunks), []
            await self.downstream(
                {"type": "http.response.body", "body": buffered, "more_body": True}
            )

    async def _send_final(self) -> None:
        assert self.start is not None and self.status is not None
        self.close_trace()
        original = ResponseParts(_status_line(self.status), self.headers, b"".join(self.chunks))
        self.chunks = []
        final = self.middleware.final(
            self.trace,
            self.line,
            self.request,
            self.mode,
            self.notice,
            original,
            self.decision == REPLACE,
            self.scope.get("root_path", ""),
        )
        status = int(final.status.split(" ", 1)[0])
        start = dict(self.start, status=status, headers=_raw_headers(final.headers))
        await self.downstream(self.with_request_id(start))
        await self.downstream({"type": "http.response.body", "body": final.body})

    def closed(self) -> None:
        self.middleware.print_to_console(self.trace, self.request)
        trace_id = self.scope.get("ioprofiler.trace_id")
        if trace_id is not None:
            self.middleware.keep(self.trace, self.request, trace_id)
