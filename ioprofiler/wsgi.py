"""``?ioprofiler=1`` for any WSGI application.

>>> from ioprofiler.wsgi import IOProfilerMiddleware
>>> app = IOProfilerMiddleware(app)                     # loopback clients only
>>> app = IOProfilerMiddleware(app, allow=ioprofiler.access.networks("10.0.0.0/8"))

Modes, chosen by the parameter's value:

- ``?ioprofiler=1``: HTML pages get the panel before their last ``</body>``, text/plain
  responses get the listing appended, anything else is left as it is;
- ``?ioprofiler=text``: the body is replaced by the plain-text listing;
- ``?ioprofiler=json``: the body is replaced by the trace as JSON.

Every profiled response carries ``Server-Timing``. A client the ``allow`` rule refuses
gets exactly the response it would get without the parameter, and nothing is recorded.

With sinks attached, every request is traced and handed to them once its response has
finished; responses are unchanged unless an allowed client asked with the parameter:

>>> app = IOProfilerMiddleware(app, record=Recorder("/var/log/shop/ioprofiler.jsonl"))
>>> app = IOProfilerMiddleware(app, export=[StatsdExporter(...)], route=my_route_of)
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from rich.console import Console
from werkzeug.wrappers import Request

import ioprofiler
from ioprofiler import access, config, sinks
from ioprofiler.render.request import RequestInfo
from ioprofiler.response import (
    CHANGEABLE_TYPES,
    ResponseParts,
    build_document,
    decorate,
    render_failure,
)
from ioprofiler.sql_text import visible
from ioprofiler.trace import Trace

log = logging.getLogger("ioprofiler")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
MODES = {
    "1": "html",
    "": "html",
    "on": "html",
    "true": "html",
    "yes": "html",
    "html": "html",
    "text": "text",
    "txt": "text",
    "json": "json",
}
OFF = {"0", "off", "false", "no"}
DEFAULT_MAX_INJECT_BYTES = 5 * 1024 * 1024
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.~-]+$")


class IOProfilerMiddleware:
    """Profile the requests that ask for it, and show their I/O in the response.

    Options (all keyword, with safe defaults):

    - ``allow``: a rule from :mod:`ioprofiler.access` or any callable taking a
      ``werkzeug.Request``; default :func:`ioprofiler.access.loopback`.
    - ``param``: the query parameter's name; default ``ioprofiler``.
    - ``trusted_proxies``: networks of the proxies whose ``X-Forwarded-For`` is believed.
    - ``strip_param``: hide the parameter from the application; default False.
    - ``console``: also print each profiled request's listing to the terminal (rich).
    - ``max_inject_bytes``: a response longer than this streams through unchanged.
    - ``max_events``: events kept per request (default: ``ioprofiler.configure``'s).
    - ``record``: a sink such as :class:`ioprofiler.recorder.Recorder`; ``export``: a list
      of sinks (exporters). With any sink, every request is traced and handed to each.
    - ``route``: a callable ``(environ) -> str | None`` naming the route template, for
      sinks; the application may also set ``environ["ioprofiler.route"]`` itself.
    """

    def __init__(
        self,
        app: WSGIApp,
        allow: access.Rule | None = None,
        *,
        param: str = "ioprofiler",
        trusted_proxies: Iterable[str] = (),
        strip_param: bool = False,
        console: bool | Console = False,
        max_inject_bytes: int = DEFAULT_MAX_INJECT_BYTES,
        max_events: int | None = None,
        slow_ms: float = config.DEFAULT_SLOW_MS,
        install: bool = True,
        record: sinks.Sink | None = None,
        export: Iterable[sinks.Sink] | None = None,
        route: sinks.RouteOf | None = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"IOProfilerMiddleware wraps a WSGI application, not {app!r}")
        if allow is not None and not callable(allow):
            raise TypeError(
                "allow must be a rule such as ioprofiler.access.networks('10.0.0.0/8') "
                f"or a callable taking the request, not {allow!r}"
            )
        if not isinstance(param, str) or not _PARAM_NAME.match(param):
            raise ValueError(f"param must be a plain query parameter name, not {param!r}")
        config.check_max_events(max_inject_bytes, "max_inject_bytes")
        if max_events is not None:
            config.check_max_events(max_events)
        config.check_ms("slow_ms", slow_ms)
        config.check_flag("strip_param", strip_param)
        config.check_flag("install", install)
        if not isinstance(console, (bool, Console)):
            raise TypeError(f"console must be True, False or a rich Console, not {console!r}")
        if route is not None and not callable(route):
            raise TypeError(f"route must be a callable taking the environ, not {route!r}")
        self.sinks = sinks.check_sinks(record, export)
        self.route = route
        self.app = app
        self.allow = allow if allow is not None else access.loopback()
        self.param = param
        self.trusted_proxies = access.parse_networks(trusted_proxies)
        self.strip_param = strip_param
        self.max_inject_bytes = max_inject_bytes
        self.max_events = max_events
        self.slow_ms = float(slow_ms)
        if console is True:
            self.console: Console | None = Console(stderr=True, highlight=False)
        else:
            self.console = console or None
        if install:
            ioprofiler.install()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query = environ.get("QUERY_STRING", "")
        mode = notice = None
        if self.param in query:
            mode, notice = self._mode(query)
            if mode is not None and not self._allowed(environ):
                mode = None
        if mode is None:
            if self.sinks:
                return self._record(environ, start_response)
            return self.app(environ, start_response)
        if self.strip_param:
            environ = self._without_param(environ)
        return self._profile(environ, start_response, mode, notice)

    def close(self) -> None:
        """Close the sinks (a recorder flushes its log); also done at interpreter exit."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("ioprofiler: closing the sink %r failed", sink)

    # -- deciding --------------------------------------------------------------------

    def _mode(self, query: str) -> tuple[str | None, str | None]:
        values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == self.param]
        if not values:
            return None, None
        value = values[-1].strip().lower()
        if value in OFF or (value.isdecimal() and int(value) == 0):  # "00" is zero too
            return None, None
        if value in MODES:
            return MODES[value], None
        shown = values[-1][:40]
        return "html", f"unknown ioprofiler mode {shown!r}: use {self.param}=1, text or json"

    def _allowed(self, environ: dict[str, Any]) -> bool:
        try:
            request = Request(dict(environ, **{"ioprofiler.trusted_proxies": self.trusted_proxies}))
            if self.allow(request):
                return True
            if log.isEnabledFor(logging.DEBUG):
                reason = access.why_refused(environ, self.trusted_proxies, self.allow)
                log.debug("ioprofiler: %s not profiled: %s", _request_line(environ), reason)
            return False
        except Exception:
            log.exception("ioprofiler: the access rule failed; the request is not profiled")
            return False

    def _without_param(self, environ: dict[str, Any]) -> dict[str, Any]:
        """The environ with the parameter taken out of the query string, and nothing else
        changed: the other parameters stay exactly as the client sent them."""
        kept = [
            part
            for part in environ.get("QUERY_STRING", "").split("&")
            if unquote_plus(part.split("=", 1)[0]) != self.param
        ]
        return dict(environ, QUERY_STRING="&".join(kept))

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
        if self.sinks:
            environ["ioprofiler.request_id"] = sinks.request_id(environ.get("HTTP_X_REQUEST_ID"))
        response = ProfiledResponse(self, trace, environ, start_response, mode, notice)
        try:
            response.body = trace.call(self.app, environ, response.capture_start_response)
        except BaseException:
            response.finish()
            raise
        return response

    def _record(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Trace the request for the sinks, passing the response through unchanged."""
        trace = Trace(max_events=self.max_events, name="request").start()
        environ["ioprofiler.trace"] = trace
        environ["ioprofiler.request_id"] = sinks.request_id(environ.get("HTTP_X_REQUEST_ID"))
        response = RecordedResponse(self, trace, environ, start_response)
        try:
            response.body = trace.call(self.app, environ, response.capture_start_response)
        except BaseException:
            response.finish()
            raise
        return response

    def _deliver(self, body: TracedBody) -> None:
        """Hand the finished request to the sinks (the trace is closed by now)."""
        if not self.sinks:
            return
        trace, environ = body.trace, body.environ
        try:
            script = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            request = sinks.FinishedRequest(
                trace=trace,
                method=environ.get("REQUEST_METHOD", "GET"),
                path=script.encode("latin-1", "replace").decode("utf-8", "replace"),
                query=environ.get("QUERY_STRING", ""),
                route=sinks.route_of(environ, self.route, body.matched),
                status=sinks.status_code(body.status),
                started_at=body.started_at,
                duration_ms=trace.elapsed_ms,
                request_id=environ["ioprofiler.request_id"],
                host=sinks.HOST,
                pid=os.getpid(),
                context=body.context,
            )
        except Exception:
            log.exception("ioprofiler: could not describe the finished request for the sinks")
            return
        sinks.deliver(self.sinks, request)


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
        self.matched: str | None = None  # the framework's route, read when the response starts
        self.status: str | None = None
        self.body: Iterable[bytes] | None = None
        self._body_closed = False
        self._finished = False

    def _close_body(self) -> None:
        if self._body_closed:
            return
        self._body_closed = True
        close = getattr(self.body, "close", None)
        if close is not None:
            self.trace.call(close)

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


class RecordedResponse(TracedBody):
    """The application's body, passed through unchanged while the trace records each step
    of it (and ``close()``)."""

    def capture_start_response(
        self, status: str, headers: list[tuple[str, str]], *exc_info: Any
    ) -> Any:
        self.status = status
        self.matched = sinks.matched_rule(self.environ)
        return self.start_response(status, headers, *exc_info)

    def __iter__(self) -> Iterator[bytes]:
        if isinstance(self.body, (list, tuple)):  # iterating it runs no application code
            return iter(self.body)
        return self._traced_iteration()

    def _traced_iteration(self) -> Iterator[bytes]:
        assert self.body is not None
        iterator = self.trace.call(iter, self.body)
        while True:
            try:
                chunk = self.trace.call(next, iterator)
            except StopIteration:
                return
            yield chunk


def _request_line(environ: dict[str, Any]) -> str:
    """``GET /path`` for a log line: no query string (its values may be private)."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return visible(f"{environ.get('REQUEST_METHOD', 'GET')} {path}")


def _why_unchanged(parts: ResponseParts, method: str, exc_info: Any) -> str | None:
    """Why a response's body must go out as it is, or None when it may be changed."""
    if exc_info is not None:
        return "the application reported an error (start_response with exc_info)"
    if method == "HEAD":
        return "a HEAD response has no body"
    if parts.status_code in (204, 206, 304):
        return f"a {parts.status_code} response's body is not changed"
    if parts.is_encoded:
        return f"the body is compressed (Content-Encoding: {parts.header('Content-Encoding')})"
    return None


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
        path = self.environ.get("SCRIPT_NAME", "") + self.environ.get("PATH_INFO", "")
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
        iterator = self.trace.call(iter, self.body)
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
                if decision == "replace":
                    chunks, size = [], 0  # the page is replaced by the trace: keep nothing
            if decision == "pass":
                break
            if size > limit:
                self._not_shown(f"the body grew past max_inject_bytes ({limit:,} bytes)")
                break
            try:
                chunk = self.trace.call(next, iterator)
            except StopIteration:
                exhausted = True
                break
            written = self._drain_written(decision)
            chunks += written
            size += _size(written)
            if decision != "replace":
                chunks.append(chunk)
                size += len(chunk)
        if self.status is None:
            self.finish()
            raise RuntimeError("the application did not call start_response")
        if exhausted:
            self._close_body()
            self.trace.close()
            yield from self._send_final(chunks, decision == "replace")
            return
        self._send_headers(self._passed_through_headers())
        yield from chunks
        while True:
            try:
                chunk = self.trace.call(next, iterator)
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
        return [] if decision == "replace" else written

    def _decide(self) -> str:
        """Once the status and headers are known: keep, replace or pass the body through."""
        parts = ResponseParts(self.status or "", self.headers, b"")
        method = self.environ.get("REQUEST_METHOD", "GET").upper()
        reason = _why_unchanged(parts, method, self.exc_info)
        if reason is not None:
            self._not_shown(reason)
            return "pass"
        if self.mode in ("text", "json"):
            return "replace"
        if parts.media_type in CHANGEABLE_TYPES:
            return "keep"
        param = self.middleware.param
        self._not_shown(
            f"{parts.media_type or 'a body without Content-Type'} is not HTML or text/plain "
            f"(?{param}=text or ?{param}=json show the trace instead)"
        )
        return "pass"

    def _not_shown(self, reason: str) -> None:
        log.debug(
            "ioprofiler: %s profiled, but sent without the trace: %s",
            _request_line(self.environ),
            reason,
        )

    def _passed_through_headers(self) -> list[tuple[str, str]]:
        try:
            return ResponseParts(self.status or "", self.headers, b"").passed_through(self.trace)
        except Exception:
            log.exception("ioprofiler: could not add Server-Timing; the response is unchanged")
            return self.headers

    def _send_headers(self, headers: list[tuple[str, str]], status: str | None = None) -> None:
        self._headers_sent = True
        if self.exc_info is not None:
            self.start_response(status or self.status, headers, self.exc_info)
        else:
            self.start_response(status or self.status, headers)

    def _send_final(self, chunks: list[bytes], replace: bool) -> Iterator[bytes]:
        original = ResponseParts(self.status or "", self.headers, b"".join(chunks))
        try:
            if replace:
                final = build_document(self.trace, self.request, self.mode, self.middleware.slow_ms)
            else:
                final = decorate(
                    original, self.trace, self.request, self.notice, self.middleware.slow_ms
                )
                if final.body is original.body:
                    self._not_shown(f"the page's charset ({original.charset}) is not ASCII-based")
        except Exception as exc:
            log.exception("ioprofiler: rendering the trace failed")
            # The page itself was dropped in text and json modes: say what went wrong.
            final = original if not replace else render_failure(exc)
        self._send_headers(final.headers, final.status)
        yield final.body

    def _closed(self) -> None:
        """Print the trace to the console, when asked."""
        console = self.middleware.console
        if console is not None:
            try:
                from ioprofiler.render.console import print_trace

                print_trace(self.trace, self.request, console, self.middleware.slow_ms)
            except Exception:
                log.exception("ioprofiler: could not print the trace to the console")
