"""``?ioprofiler=1`` for any WSGI application.

>>> from ioprofiler.wsgi import IOProfilerMiddleware
>>> app = IOProfilerMiddleware(app)                     # loopback clients only
>>> app = IOProfilerMiddleware(app, allow=ioprofiler.access.networks("10.0.0.0/8"))

Modes, chosen by the parameter's value:

- ``?ioprofiler=1``: HTML pages get the panel before their last ``</body>``, text/plain
  responses get the listing appended, anything else is left as it is;
- ``?ioprofiler=text``: the body is replaced by the plain-text listing;
- ``?ioprofiler=json``: the body is replaced by the trace as JSON.

With ``follow_requests=True`` the panel also lists the page's own same-origin fetch and
XHR requests, each opening its listing (:mod:`ioprofiler.store` keeps their traces):

>>> app = IOProfilerMiddleware(app, follow_requests=True, store="redis://127.0.0.1:6379/0")

Every profiled response but a stream carries ``Server-Timing``. A client the ``allow`` rule
refuses gets exactly the response it would get without the parameter, and nothing is recorded.

With sinks attached, every request is traced and handed to them once its response has
finished; responses are unchanged unless an allowed client asked with the parameter:

>>> app = IOProfilerMiddleware(app, record=Recorder("/var/log/shop/ioprofiler.jsonl"))
>>> app = IOProfilerMiddleware(app, export=[StatsdExporter(...)], route=my_route_of)
"""

from __future__ import annotations

import contextvars
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from werkzeug.wsgi import ClosingIterator

from ioprofiler import access, recorders, sinks
from ioprofiler.profiling import (
    DEFAULT_MAX_INJECT_BYTES,
    FOLLOW,
    MODES,
    OFF,
    PASS,
    REPLACE,
    RequestProfiler,
    not_shown,
    path_text,
    request_line,
    with_trace_id,
)
from ioprofiler.render.request import RequestInfo
from ioprofiler.response import ResponseParts, is_stream
from ioprofiler.store import new_id
from ioprofiler.trace import Trace, active, leave

_END = object()  # what next() returns past a body's last chunk
_ITERATORS_OF_THEMSELVES = (types.GeneratorType, ClosingIterator)  # iter() runs no code
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
__all__ = ["DEFAULT_MAX_INJECT_BYTES", "MODES", "OFF", "IOProfilerMiddleware"]


class IOProfilerMiddleware(RequestProfiler):
    """Profile the requests that ask for it, and show their I/O in the response.

    Takes the options of :class:`ioprofiler.profiling.RequestProfiler` (``allow``,
    ``param``, ``trusted_proxies``, ``strip_param``, ``console``, ``max_inject_bytes``,
    ``max_events``, ``slow_ms``, ``record``, ``export``, ``route``), all with safe defaults.
    """

    def __init__(self, app: WSGIApp, allow: access.Rule | None = None, **options: Any) -> None:
        if not callable(app):
            raise TypeError(f"IOProfilerMiddleware wraps a WSGI application, not {app!r}")
        super().__init__(allow, **options)
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.store is not None:
            own = self.own_answer(environ)
            if own is not None:
                start_response(own.status, own.headers)
                return [own.body]
        query = environ.get("QUERY_STRING", "")
        mode = notice = None
        if self.param in query:
            mode, notice = self.mode(query)
            if mode is not None and not self.allowed(environ):
                mode = None
        if mode is None and self.store is not None and self.follows(environ):
            environ["ioprofiler.trace_id"] = new_id()
            return self._profile(environ, start_response, FOLLOW, None)
        if mode is None:
            if self.sinks:
                return self._record(environ, start_response)
            return self.app(environ, start_response)
        if self.strip_param:
            environ = dict(environ, QUERY_STRING=self.without_param(query))
        return self._profile(environ, start_response, mode, notice)

    # -- profiling -------------------------------------------------------------------

    def _profile(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        mode: str,
        notice: str | None,
    ) -> Iterable[bytes]:
        trace = Trace(max_events=self.max_events, name="request").start()
        environ["ioprofiler.trace"] = trace
        if self.store is not None:  # kept for the recent requests page, followed or not
            environ.setdefault("ioprofiler.trace_id", new_id())
        if self.sinks:
            environ["ioprofiler.request_id"] = self.request_id(environ.get("HTTP_X_REQUEST_ID"))
        response = ProfiledResponse(self, trace, environ, start_response, mode, notice)
        try:
            response.body = _step(
                active, response, self.app, environ, response.capture_start_response
            )
        except BaseException:
            response.finish()
            raise
        return response

    def _record(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Trace the request for the sinks, passing the response through unchanged."""
        trace = Trace(max_events=self.max_events, name="request").start()
        environ["ioprofiler.trace"] = trace
        environ["ioprofiler.request_id"] = self.request_id(environ.get("HTTP_X_REQUEST_ID"))
        response = RecordedResponse(self, trace, environ, start_response)
        try:
            response.body = _step(
                active, response, self.app, environ, response.capture_start_response
            )
        except BaseException:
            response.finish()
            raise
        return response

    def _deliver(self, body: TracedBody) -> None:
        """Hand the finished request to the sinks (the trace is closed by now)."""
        if not self.sinks:
            return
        environ = body.environ
        self.hand_on(
            body.trace,
            environ.get("REQUEST_METHOD", "GET"),
            path_text(environ),
            environ.get("QUERY_STRING", ""),
            sinks.route_of(environ, self.route, body.matched),
            sinks.status_code(body.status),
            body.started_at,
            environ["ioprofiler.request_id"],
            body.context,
            body.error,
        )


class TracedBody:
    """What the server iterates and closes: the trace closes once, after the body's
    ``close()``, and then the finished request goes to the middleware's sinks."""

    def __init__(
        self,
        middleware: IOProfilerMiddleware,
        trace: Trace,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> None:
        self.middleware = middleware
        self.trace = trace
        self.environ = environ
        self.start_response = start_response
        self.started_at = time.time()
        # the caller's context (an outer OpenTelemetry span, say), for the sinks
        self.context = contextvars.copy_context() if middleware.sinks else None

    # What the response learns later, the class's until then (stored per request, they
    # would cost every recorded request six attribute writes).
    matched: str | None = None  # the framework's route, read when the response starts
    status: str | None = None
    body: Iterable[bytes] | None = None
    error: str | None = None  # the type of the exception the application raised
    _body_closed = False
    _finished = False

    def step(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call into the application (the call, a step of the body, ``close()``) with the
        trace recording; an exception it raises is noted, for the sinks, and raised on."""
        return _step(active, self, function, *args)

    def _close_body(self) -> None:
        if self._body_closed:
            return
        self._body_closed = True
        close = getattr(self.body, "close", None)
        if close is not None:
            _step(active, self, close)

    def close(self) -> None:
        """Called by the server once the response is sent (or abandoned)."""
        try:
            self._close_body()
        finally:
            self.finish()

    def finish(self) -> None:
        """Close the trace and hand the request on, once."""
        if self._finished:
            return
        self._finished = True
        self.trace.close()
        self._closed()
        self.middleware._deliver(self)

    def _closed(self) -> None:
        """What a subclass does with the closed trace before the sinks get it."""


def python_step(
    traces: ContextVar[tuple[Trace, ...]],
    body: TracedBody,
    function: Callable[..., Any],
    *args: Any,
) -> Any:
    """:meth:`TracedBody.step`: ``body.trace.call(function, *args)``, the exception the call
    raises noted as ``body.error`` for the sinks. ``traces`` is :data:`ioprofiler.trace.active`.
    The reference of ``ioprofiler._recorders.step``, which runs it in C where it is built (it
    runs a few times per request: the call, the body's steps, ``close()``)."""
    trace = body.trace
    before = traces.get()
    mine = before + (trace,)
    traces.set(mine)
    try:
        return function(*args)
    except BaseException as exc:
        body.error = body.error or sinks.error_name(exc)
        raise
    finally:
        if traces.get() is mine and trace not in before:
            traces.set(before)
        else:
            leave(trace)


_step = python_step if recorders._recorders is None else recorders._recorders.step


class RecordedResponse(TracedBody):
    """The application's body, passed through unchanged while the trace records each step
    of it (and ``close()``)."""

    def capture_start_response(
        self, status: str, headers: list[tuple[str, str]], *exc_info: Any
    ) -> Any:
        self.status = status
        self.matched = sinks.matched_rule(self.environ)
        headers = sinks.with_request_id(headers, self.environ["ioprofiler.request_id"])
        return self.start_response(status, headers, *exc_info)

    def __iter__(self) -> Iterator[bytes]:
        if isinstance(self.body, (list, tuple)):  # iterating it runs no application code
            return iter(self.body)
        return self._traced_iteration()

    def _traced_iteration(self) -> Iterator[bytes]:
        body = self.body
        assert body is not None
        # iter() of a generator, or of werkzeug's ClosingIterator (what a werkzeug or Flask
        # response is), is the body itself: no application code runs, no step is needed
        iterator = (
            body if type(body) in _ITERATORS_OF_THEMSELVES else _step(active, self, iter, body)
        )
        while True:
            # next()'s default, not StopIteration: an exception raised through the trace's
            # call and this step would cost more than the rest of the request's recording
            chunk = _step(active, self, next, iterator, _END)
            if chunk is _END:
                return
            yield chunk


def _size(chunks: list[bytes]) -> int:
    return sum(len(chunk) for chunk in chunks)


class ProfiledResponse(TracedBody):
    """The body the server iterates: the application's, buffered and changed where allowed.

    The trace records during each call into the application (the call itself, every step
    of the body, ``close()``) and only then, in whatever context the server makes them, so
    I/O done while streaming or in ``close()`` is recorded, the application's own context
    variables reach the server as they would without ioprofiler, and the trace closes
    after ``close()``.
    """

    def __init__(
        self,
        middleware: IOProfilerMiddleware,
        trace: Trace,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        mode: str,
        notice: str | None,
    ) -> None:
        super().__init__(middleware, trace, environ, start_response)
        self.mode = mode
        self.notice = notice
        self.headers: list[tuple[str, str]] = []
        self.exc_info: Any = None
        self.written: list[bytes] = []
        self._headers_sent = False
        self._kept = False

    def capture_start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self._headers_sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers, self.exc_info = status, list(headers), exc_info
        if self.middleware.sinks:
            self.matched = sinks.matched_rule(self.environ)
        return self.written.append

    @property
    def request(self) -> RequestInfo:
        path = path_text(self.environ)
        query = self.environ.get("QUERY_STRING", "")
        return RequestInfo(
            self.environ.get("REQUEST_METHOD", "GET"),
            path + (f"?{query}" if query else ""),
            self.status or "",
        )

    def __iter__(self) -> Iterator[bytes]:
        return self._generate()

    def _generate(self) -> Iterator[bytes]:
        assert self.body is not None
        iterator = self.step(iter, self.body)
        limit = self.middleware.max_inject_bytes
        chunks: list[bytes] = []
        size = 0
        decision: str | None = None  # "keep" the body, "replace" it, or "pass" it through
        exhausted = False
        while True:
            written = self._drain_written(decision)
            chunks += written
            size += _size(written)
            if decision is None and self.status is not None:
                decision = self._decide()
                if decision == REPLACE:
                    chunks, size = [], 0  # the page is replaced by the trace: keep nothing
            if decision == PASS:
                break
            if size > limit:
                self._not_shown(f"the body grew past max_inject_bytes ({limit:,} bytes)")
                break
            try:
                chunk = self.step(next, iterator)
            except StopIteration:
                exhausted = True
                break
            written = self._drain_written(decision)
            chunks += written
            size += _size(written)
            if decision != REPLACE:
                chunks.append(chunk)
                size += len(chunk)
        if self.status is None:
            self.finish()
            raise RuntimeError("the application did not call start_response")
        if exhausted:
            self._close_body()
            self.trace.close()
            yield from self._send_final(chunks, decision == REPLACE)
            return
        self._send_headers(self._passed_through_headers())
        yield from chunks
        while True:
            try:
                chunk = self.step(next, iterator)
            except StopIteration:
                break
            yield from self._drain_written(None)
            yield chunk
        yield from self._drain_written(None)

    def _drain_written(self, decision: str | None) -> list[bytes]:
        """What the application passed to ``write()`` since the last look, in order."""
        if not self.written:
            return []
        written, self.written[:] = list(self.written), []
        return [] if decision == REPLACE else written

    def _decide(self) -> str:
        """Once the status and headers are known: keep, replace or pass the body through."""
        return self.middleware.decide(
            request_line(self.environ),
            self.mode,
            self.environ.get("REQUEST_METHOD", "GET"),
            self.status or "",
            self.headers,
            self.exc_info,
        )

    def _not_shown(self, reason: str) -> None:
        not_shown(request_line(self.environ), reason)

    def _passed_through_headers(self) -> list[tuple[str, str]]:
        status = self.status or ""
        streamed = is_stream(status, self.headers, self.body)
        return self.middleware.passed_through_headers(self.trace, status, self.headers, streamed)

    def _send_headers(self, headers: list[tuple[str, str]], status: str | None = None) -> None:
        self._headers_sent = True
        if "ioprofiler.request_id" in self.environ:
            headers = sinks.with_request_id(headers, self.environ["ioprofiler.request_id"])
        if "ioprofiler.trace_id" in self.environ:
            headers = with_trace_id(headers, self.environ["ioprofiler.trace_id"])
        if self.exc_info is not None:
            self.start_response(status or self.status, headers, self.exc_info)
        else:
            self.start_response(status or self.status, headers)

    def _send_final(self, chunks: list[bytes], replace: bool) -> Iterator[bytes]:
        original = ResponseParts(self.status or "", self.headers, b"".join(chunks))
        line = request_line(self.environ)
        final = self.middleware.final(
            self.trace,
            line,
            self.request,
            self.mode,
            self.notice,
            original,
            replace,
            self.environ.get("SCRIPT_NAME", ""),
        )
        self._keep()  # before the client has the body, and so may ask for the trace
        self._send_headers(final.headers, final.status)
        yield final.body

    def _closed(self) -> None:
        """Print the trace to the console, when asked; keep it, if it was not yet."""
        self.middleware.print_to_console(self.trace, self.request)
        self._keep()

    def _keep(self) -> None:
        """Keep the closed trace for the panel and the recent requests, once."""
        trace_id = self.environ.get("ioprofiler.trace_id")
        if trace_id is not None and not self._kept:
            self._kept = True
            self.middleware.keep(self.trace, self.request, trace_id)
