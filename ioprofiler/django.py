"""``?ioprofiler=1`` for Django, sync and async, as a middleware:

>>> MIDDLEWARE = [
...     "django.middleware.security.SecurityMiddleware",
...     "django.middleware.gzip.GZipMiddleware",       # before: ioprofiler sees plain HTML
...     "ioprofiler.django.IOProfilerMiddleware",
...     "django.contrib.sessions.middleware.SessionMiddleware",
...     "django.middleware.csrf.CsrfViewMiddleware",   # after: a refused POST is traced too
...     ...
... ]
>>> IOPROFILER = {"ALLOW": ioprofiler.access.networks("10.0.0.0/8"), "PARAM": "ioprofiler"}

``settings.IOPROFILER`` takes every option of :class:`ioprofiler.wsgi.IOProfilerMiddleware`
by its upper-case name. Under WSGI and ASGI alike; with async views the middleware is async
(Django's ``sync_and_async_middleware``), and sync views that Django runs in a thread carry
the request's trace. Sinks see the resolver's route (``listing/<int:listing>``).
A streaming response passes through without ``Server-Timing`` (sent before the body, it could
not count the stream's queries); its trace records while the server reads the stream, so I/O
of a generator view is in it, and ends (the sinks get the request) when the stream ends or
the response is closed. A ``FileResponse`` is left as it is (the server may send its file
with ``sendfile``): its trace ends with the view.

:func:`query_count` counts what Django's ``assertNumQueries`` counts, for tests that hold
ioprofiler's budgets and Django's assertions side by side.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict

from ioprofiler import sinks
from ioprofiler.event import BEGIN, COMMIT, DB, ROLLBACK
from ioprofiler.profiling import (
    FOLLOW,
    ID_HEADER,
    KEEP,
    REPLACE,
    RequestProfiler,
    options_from,
    request_line,
)
from ioprofiler.render.request import RequestInfo
from ioprofiler.response import ResponseParts
from ioprofiler.store import new_id
from ioprofiler.trace import Trace, active

log = logging.getLogger("ioprofiler")
GetResponse = Callable[[HttpRequest], Any]


# The events Django logs in connection.queries: statements through execute() and
# executemany() (savepoints, SQLite's BEGIN included) and the transaction calls it times
# itself; not callproc() (Django does not log it), not a CONNECT.
DJANGO_LOGGED_OPS = ("execute", "executemany", BEGIN, COMMIT, ROLLBACK)


def query_count(trace: Trace, using: str = "default") -> int:
    """The queries on the database alias ``using`` as Django counts them
    (``assertNumQueries(n, using=using)``, ``CaptureQueriesContext(connections[using])``)::

        with ioprofiler.profile() as trace, self.assertNumQueries(7):
            self.client.get("/listing/5773453")
        assert ioprofiler.django.query_count(trace) == 7

    ``trace.count(kind="db", target=using)`` counts the statements only: COMMIT, ROLLBACK
    and a BEGIN Django sends by turning autocommit off (MySQL, PostgreSQL) are connection
    ops there, counted with ``op="commit"`` and so on; SQLite's BEGIN is a statement.
    """
    return sum(trace.count(kind=DB, target=using, op=op) for op in DJANGO_LOGGED_OPS)


class IOProfilerMiddleware(RequestProfiler):
    """Django's middleware: list ``"ioprofiler.django.IOProfilerMiddleware"`` in
    ``MIDDLEWARE``; options from ``settings.IOPROFILER``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        configured = getattr(settings, "IOPROFILER", {})
        if not isinstance(configured, dict):
            raise TypeError(f"settings.IOPROFILER must be a dict of options, not {configured!r}")
        super().__init__(**options_from(configured, "", "settings.IOPROFILER"))
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        kept = self._own_answer(request)
        if kept is not None:
            return kept
        mode, notice = self._asked(request)
        if mode is None and not self.sinks:
            return self.get_response(request)
        trace, started_at = self._open(request, mode)
        try:
            response = trace.call(self.get_response, request)
        except BaseException:
            trace.close()
            raise
        return self._finish(request, response, trace, started_at, mode, notice)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        kept = self._own_answer(request)
        if kept is not None:
            return kept
        mode, notice = self._asked(request)
        if mode is None and not self.sinks:
            return await self.get_response(request)
        trace, started_at = self._open(request, mode)
        active.set(active.get() + (trace,))
        try:
            response = await self.get_response(request)
        except BaseException:
            trace.close()
            raise
        finally:
            active.set(tuple(t for t in active.get() if t is not trace))
        return self._finish(request, response, trace, started_at, mode, notice)

    def _own_answer(self, request: HttpRequest) -> HttpResponse | None:
        """The recent requests or the kept trace asked for, or None: the application
        answers."""
        if self.store is None or not request.path_info.startswith(self.follow_path):
            return None
        own = self.own_answer(request.META)
        if own is None:
            return None
        response = HttpResponse(own.body)
        _replace_headers(response, own.headers)
        return response

    def _asked(self, request: HttpRequest) -> tuple[str | None, str | None]:
        query = request.META.get("QUERY_STRING", "")
        mode = notice = None
        if self.param in query:
            mode, notice = self.mode(query)
            if mode is not None and not self.allowed(request.META):
                mode = None
        if mode is None and self.store is not None and self.follows(request.META):
            mode = FOLLOW
        if mode is not None and self.store is not None:  # kept, followed or not
            request.META["ioprofiler.trace_id"] = new_id()
        return mode, notice

    def _open(self, request: HttpRequest, mode: str | None) -> tuple[Trace, float]:
        # the caller's context (an outer OpenTelemetry span, say), for the sinks
        request.META["ioprofiler.context"] = contextvars.copy_context() if self.sinks else None
        if mode is not None and self.strip_param:
            query = self.without_param(request.META.get("QUERY_STRING", ""))
            request.META["QUERY_STRING"] = query
            request.GET = QueryDict(query)
        trace = self.new_trace()
        request.META["ioprofiler.trace"] = trace
        if self.sinks:
            request.META["ioprofiler.request_id"] = self.request_id(
                request.META.get("HTTP_X_REQUEST_ID")
            )
        return trace, time.time()

    def _finish(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        trace: Trace,
        started_at: float,
        mode: str | None,
        notice: str | None,
    ) -> HttpResponseBase:
        """Show the trace in the response, then close it and hand the request to the sinks:
        at once, or, for a streamed response, once the server has read the stream."""
        if self.sinks and not response.has_header(sinks.REQUEST_ID_HEADER):
            response[sinks.REQUEST_ID_HEADER] = request.META["ioprofiler.request_id"]
        streamed = _streams_application_code(response)
        if not streamed:
            trace.close()
        if mode is not None:
            try:
                self._change(request, response, trace, mode, notice)
            except Exception:
                log.exception("ioprofiler: could not show the trace; the response is unchanged")
        if not streamed:
            self._deliver(request, response, trace, started_at)
            return response
        try:
            response.streaming_content = _traced_stream(  # type: ignore[attr-defined]
                response,
                trace,
                lambda error: self._deliver(request, response, trace, started_at, error),
            )
        except Exception:
            log.exception("ioprofiler: could not follow the stream; its trace ends here")
            self._deliver(request, response, trace, started_at)
        return response

    def _deliver(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        trace: Trace,
        started_at: float,
        error: str | None = None,
    ) -> None:
        """Hand the request on; ``error``: the exception its streamed body raised."""
        trace.close()
        if "ioprofiler.trace_id" in request.META:
            status = f"{response.status_code} {response.reason_phrase}"
            info = RequestInfo(request.method or "GET", request.get_full_path(), status)
            self.keep(trace, info, request.META["ioprofiler.trace_id"])
        if self.sinks:
            match = getattr(request, "resolver_match", None)
            self.deliver(
                trace,
                method=request.method or "GET",
                path=request.path,
                query=request.META.get("QUERY_STRING", ""),
                route=sinks.route_of(request.META, self.route, getattr(match, "route", None)),
                status=response.status_code,
                started_at=started_at,
                request_id=request.META["ioprofiler.request_id"],
                context=request.META["ioprofiler.context"],
                error=error,
            )

    def _change(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        trace: Trace,
        mode: str,
        notice: str | None,
    ) -> None:
        status = f"{response.status_code} {response.reason_phrase}"
        headers = list(response.items())
        line = request_line(request.META)
        decision = self.decide(line, mode, request.method or "GET", status, headers)
        info = RequestInfo(request.method or "GET", request.get_full_path(), status)
        self.print_to_console(trace, info)
        if decision in (KEEP, REPLACE) and not response.streaming:
            original = ResponseParts(status, headers, response.content)  # type: ignore[attr-defined]
            final = self.final(
                trace,
                line,
                info,
                mode,
                notice,
                original,
                decision == REPLACE,
                request.META.get("SCRIPT_NAME", ""),
            )
            _replace(response, final)
        else:
            streamed = _streams_application_code(response)
            _replace_headers(
                response, self.passed_through_headers(trace, status, headers, streamed)
            )
        if "ioprofiler.trace_id" in request.META:
            response[ID_HEADER] = request.META["ioprofiler.trace_id"]


def _replace(response: HttpResponseBase, final: ResponseParts) -> None:
    code, _, reason = final.status.partition(" ")
    response.content = final.body  # type: ignore[attr-defined]
    response.status_code = int(code)
    response.reason_phrase = reason or response.reason_phrase
    _replace_headers(response, final.headers)


def _replace_headers(response: HttpResponseBase, headers: list[tuple[str, str]]) -> None:
    for name in list(response.headers):
        del response.headers[name]
    for name, value in headers:
        response.headers[name] = value


def _streams_application_code(response: HttpResponseBase) -> bool:
    """A streamed body whose reading may run the application's code (a generator view);
    not a ``FileResponse``'s file, which the server may send with ``sendfile``."""
    return response.streaming and getattr(response, "file_to_stream", None) is None


def _traced_stream(response: Any, trace: Trace, finish: Finish) -> Any:
    content = response.streaming_content
    if response.is_async:
        return _TracedAsyncStream(content, trace, finish)
    return _TracedStream(content, trace, finish)


Finish = Callable[["str | None"], None]  # called with the type of the body's exception


class _Followed:
    """A streamed body read with the request's trace recording; ``finish`` runs once, when
    the body ends, fails (with the exception's type), or is closed (Django closes it with
    the response)."""

    def __init__(self, content: Any, trace: Trace, finish: Finish) -> None:
        self._content = content
        self._trace = trace
        self._finish: Finish | None = finish

    def close(self, error: str | None = None) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            try:
                finish(error)
            except Exception:
                log.exception("ioprofiler: could not hand on a streamed request's trace")


class _TracedStream(_Followed):
    def __iter__(self) -> _TracedStream:
        return self

    def __next__(self) -> Any:
        try:
            return self._trace.call(next, self._content)
        except BaseException as exc:  # StopIteration included: the body ended
            self.close(sinks.error_name(exc))
            raise


class _TracedAsyncStream(_Followed):
    def __aiter__(self) -> _TracedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        trace = self._trace
        active.set(active.get() + (trace,))
        try:
            return await self._content.__anext__()
        except BaseException as exc:  # StopAsyncIteration included: the body ended
            self.close(sinks.error_name(exc))
            raise
        finally:
            active.set(tuple(t for t in active.get() if t is not trace))
