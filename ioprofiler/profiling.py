"""The request-profiling core that every web surface shares: WSGI, ASGI, Flask, Django.

A surface translates its framework's request and response into the few facts this module
decides on, and back:

>>> class MyMiddleware(RequestProfiler):
...     def __call__(self, request):
...         mode, notice = self.mode(query_string)          # None: not asked for
...         if mode and not self.allowed(environ):          # WSGI-style environ
...             mode = None
...         trace = self.new_trace()
...         ...                                             # run the app in trace
...         decision = self.decide(request_line, method, status, headers)
...         final = self.final(trace, info, mode, notice, status, headers, body, decision)

Options are checked once, here, so every surface refuses bad input the same way.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
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
    findings_description,
    render_failure,
)
from ioprofiler.sql_text import visible
from ioprofiler.store import MAX_SHARED_ENTRY_BYTES, TraceStore, is_id, new_id, store_from
from ioprofiler.trace import Trace
from ioprofiler.urls import redact_url

log = logging.getLogger("ioprofiler")

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
KEEP, REPLACE, PASS = "keep", "replace", "pass"  # what happens to a profiled body
FOLLOW = "follow"  # the mode of a request the panel's script marked: kept, passed through
FOLLOW_HEADER = "X-IOProfiler-Follow"  # the panel's mark on the page's own requests
FOLLOW_ENVIRON = "HTTP_X_IOPROFILER_FOLLOW"
ID_HEADER = "X-IOProfiler-Id"  # the id a marked request's trace is kept under
DEFAULT_FOLLOW_PATH = "/__ioprofiler__/"  # the recent requests; their traces under traces/
RECENT = 50  # requests the recent requests page lists
TAIL_BYTES = 1024 * 1024  # read from a recorder's log for that page
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.~-]+$")
OPTIONS = (
    "allow",
    "param",
    "trusted_proxies",
    "strip_param",
    "console",
    "max_inject_bytes",
    "max_events",
    "slow_ms",
    "install",
    "record",
    "export",
    "route",
    "trust_request_id",
    "follow_requests",
    "store",
    "follow_path",
)


class RequestProfiler:
    """The options of a profiling surface and the decisions made with them.

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
      sinks (ASGI: it gets the scope); the application may also set
      ``environ["ioprofiler.route"]`` (ASGI: ``scope["ioprofiler.route"]``) itself.
    - ``trust_request_id``: with sinks, each request's id is the incoming ``X-Request-Id``
      when it is safe (:func:`ioprofiler.sinks.request_id`); False: always a new one. The
      id goes back in the response's ``X-Request-Id`` unless the application sent one.
    - ``follow_requests``: the panel also lists the page's own same-origin fetch and XHR
      requests: each one its script marks (``X-IOProfiler-Follow``) and ``allow`` allows is
      profiled, its trace kept in ``store`` under a random id sent back in
      ``X-IOProfiler-Id``, and read by the panel from ``<follow_path>traces/<id>``; so is
      each request profiled with the parameter, and ``follow_path`` itself lists the
      recent ones. Off by default; off, ``follow_path`` is the application's like any other.
    - ``store``: where those traces wait (:mod:`ioprofiler.store`): None for the process's
      own (8 MiB, 5 minutes), a ``redis://`` or ``memcached://`` URL, or a store.
    """

    def __init__(
        self,
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
        trust_request_id: bool = True,
        follow_requests: bool = False,
        store: str | TraceStore | None = None,
        follow_path: str = DEFAULT_FOLLOW_PATH,
    ) -> None:
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
        config.check_flag("trust_request_id", trust_request_id)
        config.check_flag("follow_requests", follow_requests)
        if store is not None and not follow_requests:
            raise ValueError("store= keeps followed requests: it needs follow_requests=True")
        if not isinstance(follow_path, str) or not re.match(r"^/[\w./-]*/$", follow_path):
            raise ValueError(
                f"follow_path must be a path like '/__ioprofiler__/', not {follow_path!r}"
            )
        if not isinstance(console, (bool, Console)):
            raise TypeError(f"console must be True, False or a rich Console, not {console!r}")
        if route is not None and not callable(route):
            raise TypeError(f"route must be a callable taking the environ, not {route!r}")
        self.sinks = sinks.check_sinks(record, export)
        self.route = route
        self.trust_request_id = trust_request_id
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
        # None: the feature is off, and no request is marked, kept or answered by id
        self.store: TraceStore | None = store_from(store) if follow_requests else None
        self.follow_path = follow_path
        self.traces_path = follow_path + "traces/"
        if install:
            ioprofiler.install()

    def close(self) -> None:
        """Close the sinks (a recorder flushes its log); also done at interpreter exit."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("ioprofiler: closing the sink %r failed", sink)

    # -- deciding --------------------------------------------------------------------

    def mode(self, query: str) -> tuple[str | None, str | None]:
        """The mode the query string asks for (``html``, ``text``, ``json``) or None, and
        a notice for the panel when the value is not a known mode."""
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

    def allowed(self, environ: dict[str, Any]) -> bool:
        """Whether the ``allow`` rule lets this client see the trace; a refusal is logged
        at DEBUG with its reason. ``environ`` is WSGI's, or one made like it (ASGI)."""
        try:
            request = Request(dict(environ, **{"ioprofiler.trusted_proxies": self.trusted_proxies}))
            if self.allow(request):
                return True
            if log.isEnabledFor(logging.DEBUG):
                reason = access.why_refused(environ, self.trusted_proxies, self.allow)
                log.debug("ioprofiler: %s not profiled: %s", request_line(environ), reason)
            return False
        except Exception:
            log.exception("ioprofiler: the access rule failed; the request is not profiled")
            return False

    def without_param(self, query: str) -> str:
        """The query string with the parameter taken out, and nothing else changed: the
        other parameters stay exactly as the client sent them."""
        kept = [p for p in query.split("&") if unquote_plus(p.split("=", 1)[0]) != self.param]
        return "&".join(kept)

    def request_id(self, incoming: str | None) -> str:
        """This request's id, from its ``X-Request-Id`` header if the deployment trusts it."""
        return sinks.request_id(incoming, self.trust_request_id)

    def new_trace(self) -> Trace:
        return Trace(max_events=self.max_events, name="request").start()

    def decide(
        self,
        line: str,
        mode: str,
        method: str,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: Any = None,
    ) -> str:
        """Once the status and headers are known: :data:`KEEP` the body to change it,
        :data:`REPLACE` it by the trace, or :data:`PASS` it through as it is."""
        if mode == FOLLOW:  # kept whole, to keep the trace before the client has the body
            return KEEP
        parts = ResponseParts(status, headers, b"")
        reason = _why_unchanged(parts, method.upper(), exc_info)
        if reason is not None:
            not_shown(line, reason)
            return PASS
        if mode in ("text", "json"):
            return REPLACE
        if parts.media_type in CHANGEABLE_TYPES:
            return KEEP
        param = self.param
        not_shown(
            line,
            f"{parts.media_type or 'a body without Content-Type'} is not HTML or text/plain "
            f"(?{param}=text or ?{param}=json show the trace instead)",
        )
        return PASS

    def passed_through_headers(
        self, trace: Trace, status: str, headers: list[tuple[str, str]], streamed: bool = False
    ) -> list[tuple[str, str]]:
        """The headers of a profiled body sent as it is: with Server-Timing unless it is
        ``streamed`` (:func:`ioprofiler.response.is_stream`)."""
        try:
            parts = ResponseParts(status, headers, b"")
            return parts.passed_through(trace, self.slow_ms, streamed)
        except Exception:
            log.exception("ioprofiler: could not add Server-Timing; the response is unchanged")
            return headers

    def final(
        self,
        trace: Trace,
        line: str,
        request: RequestInfo,
        mode: str,
        notice: str | None,
        original: ResponseParts,
        replace: bool,
        script_name: str = "",
    ) -> ResponseParts:
        """The response to send once the whole body is known and the trace closed;
        ``script_name``: where the application is mounted, for the panel's requests."""
        try:
            if replace:
                return build_document(trace, request, mode, self.slow_ms)
            if mode == FOLLOW:  # the page script's own request: its body as it was
                headers = original.passed_through(trace, self.slow_ms)
                return ResponseParts(original.status, headers, original.body)
            follow = script_name + self.traces_path if self.store is not None else None
            final = decorate(original, trace, request, notice, self.slow_ms, follow)
            if final.body is original.body:
                not_shown(line, f"the page's charset ({original.charset}) is not ASCII-based")
            return final
        except Exception as exc:
            log.exception("ioprofiler: rendering the trace failed")
            # The page itself was dropped in text and json modes: say what went wrong.
            return original if not replace else render_failure(exc)

    # -- following the page's own requests ----------------------------------------------

    def follows(self, environ: dict[str, Any]) -> bool:
        """Whether this is a request the panel's script marked, from an allowed client; not
        the panel's own reading of a kept trace (one no longer kept is the application's)."""
        return (
            self.store is not None
            and FOLLOW_ENVIRON in environ
            and not environ.get("PATH_INFO", "").startswith(self.follow_path)
            and self.allowed(environ)
        )

    def own_answer(self, environ: dict[str, Any]) -> ResponseParts | None:
        """The answer to a request for ``follow_path`` (the recent requests) or a kept trace
        under it; None for anything else, an id not kept (unknown, expired) or a client
        ``allow`` refuses: the application answers those as it would without ioprofiler."""
        path = environ.get("PATH_INFO", "")
        if (
            self.store is None
            or not path.startswith(self.follow_path)
            or environ.get("REQUEST_METHOD") != "GET"
        ):
            return None
        if path == self.follow_path:
            return self._recent_page(environ) if self.allowed(environ) else None
        trace_id = path[len(self.traces_path) :]
        if (
            not path.startswith(self.traces_path)
            or FOLLOW_ENVIRON not in environ
            or not is_id(trace_id)
            or not self.allowed(environ)
        ):
            return None
        try:
            entry = self.store.get(trace_id)
        except Exception:
            log.exception("ioprofiler: could not read a kept trace from %r", self.store)
            return None
        if entry is None:
            return None
        return _own_response("application/json", entry)

    def _recent_page(self, environ: dict[str, Any]) -> ResponseParts | None:
        """The recent requests page: the last profiled requests the store holds, newest
        first, each opening its listing."""
        from ioprofiler.render.html import render_recent

        try:
            recent = getattr(self.store, "recent", None)  # a store of the user's own may not
            entries = [json.loads(entry) for entry in recent(RECENT)] if recent else []
            nonce = new_id()
            logged = self._logged()
            page = render_recent(entries, nonce, logged)
            body = page.encode("ascii", "xmlcharrefreplace")
        except Exception:
            log.exception("ioprofiler: could not show the recent requests")
            return None
        policy = f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'"
        return _own_response("text/html; charset=utf-8", body, policy)

    def _logged(self) -> dict[str, list[dict[str, Any]]] | None:
        """The newest requests each recorder kept, by log path; None without a recorder."""
        from ioprofiler.recorder import Recorder

        recorders = [sink for sink in self.sinks if isinstance(sink, Recorder)]
        if not recorders:
            return None
        return {
            str(recorder.path): [
                self._logged_entry(record) for record in last_records(recorder.path, RECENT)
            ]
            for recorder in recorders
        }

    def _logged_entry(self, record: dict[str, Any]) -> dict[str, Any]:
        """A recorder's record as the recent requests page lists it."""
        from ioprofiler.render.html import render_listing
        from ioprofiler.stored import load

        trace, request = load(record)
        query = record.get("query")
        return {
            "id": str(record.get("id", "")),
            "method": str(record.get("method", "")),
            "path": str(record.get("path", "")) + (f"?{query}" if query else ""),
            "status": str(record.get("status", "")),
            "ms": float(record.get("duration_ms", 0.0)),
            "calls": int(record.get("calls", 0)),
            "findings": [str(f.get("title", "")) for f in record.get("findings", [])],
            "html": render_listing(trace, None, self.slow_ms),
        }

    def keep(self, trace: Trace, request: RequestInfo, trace_id: str) -> None:
        """Keep a followed request's closed trace under ``trace_id`` for the panel."""
        if self.store is None or not request.status:
            return
        try:
            self.store.put(trace_id, self._entry(trace_id, trace, request, self.store))
        except Exception:
            log.exception("ioprofiler: could not keep a followed request's trace")

    def _entry(
        self, trace_id: str, trace: Trace, request: RequestInfo, kept_in: TraceStore
    ) -> bytes:
        """What the panel lists of a followed request, and its listing, as JSON; a listing
        past what the store keeps is replaced by a note saying so."""
        from ioprofiler.analysis import summarize
        from ioprofiler.render.html import render_listing, render_note

        values = getattr(kept_in, "values", False)  # a store of the user's own: no values
        limit = getattr(kept_in, "max_entry_bytes", MAX_SHARED_ENTRY_BYTES)
        summary = summarize(trace)
        findings = findings_description(trace, self.slow_ms)
        entry = {
            "id": trace_id,
            "method": request.method,
            "path": request.path if values else redact_url(request.path),
            "status": request.status,
            "ms": round(trace.elapsed_ms, 3),
            "calls": sum(total.calls for total in summary.targets),
            "findings": findings.split(", ") if findings else [],
            "html": render_listing(trace, None, self.slow_ms, values, summary=summary),
        }
        encoded = json.dumps(entry).encode("utf-8", "backslashreplace")
        if len(encoded) <= limit:
            return encoded
        entry["html"] = render_note(
            f"this listing ({len(encoded):,} bytes) is past what the store keeps "
            f"({limit:,} bytes): ask for the request with ?{self.param}=text"
        )
        return json.dumps(entry).encode("utf-8", "backslashreplace")

    def print_to_console(self, trace: Trace, request: RequestInfo) -> None:
        """Print the closed trace to the console, when asked."""
        if self.console is None:
            return
        try:
            from ioprofiler.render.console import print_trace

            print_trace(trace, request, self.console, self.slow_ms)
        except Exception:
            log.exception("ioprofiler: could not print the trace to the console")

    def deliver(
        self,
        trace: Trace,
        *,
        method: str,
        path: str,
        query: str,
        route: str | None,
        status: int,
        started_at: float,
        request_id: str,
        context: contextvars.Context | None = None,
        error: str | None = None,
    ) -> None:
        """Hand the finished request to the sinks (the trace is closed by now); ``context``
        is a copy of the context the application was called in; ``error`` the type of the
        exception the application raised, if it did: the request failed (500), even when
        its status line had been sent."""
        if self.sinks:
            self.hand_on(
                trace, method, path, query, route, status, started_at, request_id, context, error
            )

    def hand_on(
        self,
        trace: Trace,
        method: str,
        path: str,
        query: str,
        route: str | None,
        status: int,
        started_at: float,
        request_id: str,
        context: contextvars.Context | None,
        error: str | None,
    ) -> None:
        """:meth:`deliver` with its arguments in order, for a surface's every request: the
        sinks are attached."""
        try:
            end_ns = trace.end_ns
            request = _finished_request(
                trace,
                method,
                path,
                query,
                route,
                500 if error else status,
                started_at,
                trace.elapsed_ms if end_ns is None else (end_ns - trace.start_ns) / 1e6,
                request_id,
                sinks.HOST,
                _pid,
                context,
                error,
            )
        except Exception:
            log.exception("ioprofiler: could not describe the finished request for the sinks")
            return
        for sink in self.sinks:  # sinks.deliver, inline
            try:
                sink.handle(request)
            except Exception:
                log.exception("ioprofiler: the sink %r failed on a request", sink)


def last_records(path: str | os.PathLike[str], count: int) -> list[dict[str, Any]]:
    """The newest ``count`` records of a recorder's log, newest first, read from its end
    (at most the last MiB of the current file: a page view never reads a whole log)."""
    from ioprofiler.logread import parse

    try:
        with open(path, "rb") as log_file:
            size = log_file.seek(0, os.SEEK_END)
            log_file.seek(max(0, size - TAIL_BYTES))
            tail = log_file.read()
    except FileNotFoundError:
        return []
    lines = tail.split(b"\n")
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first may be the end of a line that began before
    records = [parse(line) for line in lines if line.strip()]
    return [record for record in records if record is not None][::-1][:count]


def _own_response(content_type: str, body: bytes, policy: str | None = None) -> ResponseParts:
    """A response of ioprofiler's own: never cached, never sniffed as another type."""
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if policy is not None:
        headers.append(("Content-Security-Policy", policy))
    return ResponseParts("200 OK", headers, body)


def with_trace_id(headers: list[tuple[str, str]], trace_id: str) -> list[tuple[str, str]]:
    """A followed request's headers, with the id its trace is kept under."""
    return [*headers, (ID_HEADER, trace_id)]


def options_from(settings: Mapping[str, Any], prefix: str, where: str) -> dict[str, Any]:
    """The options named in a framework's settings: ``IOPROFILER_ALLOW`` (Flask's
    ``app.config``, ``prefix="IOPROFILER_"``) or ``{"ALLOW": ...}`` (Django's
    ``settings.IOPROFILER``, no prefix) -> ``{"allow": ...}``. A name that is not an
    option is an error that lists the ones there are."""
    options = {}
    for key, value in settings.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        name = key[len(prefix) :].lower()
        if name not in OPTIONS:
            known = ", ".join(prefix + option.upper() for option in OPTIONS)
            raise ValueError(f"{where}: {key} is not an ioprofiler option; they are {known}")
        options[name] = value
    return options


_FINISHED_FIELDS = (
    "trace",
    "method",
    "path",
    "query",
    "route",
    "status",
    "started_at",
    "duration_ms",
    "request_id",
    "host",
    "pid",
    "context",
    "error",
)


def _plain_frozen_dataclass(cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``cls`` is a frozen dataclass with exactly the fields ``names``, in order,
    whose ``__init__`` does nothing but store them (no ``__post_init__``, no slots)."""
    import dataclasses

    try:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    except TypeError:
        return False
    params = getattr(cls, "__dataclass_params__", None)
    return (
        tuple(f.name for f in fields) == names
        and all(f.init for f in fields)
        and params is not None
        and params.frozen
        and not hasattr(cls, "__post_init__")
        and "__slots__" not in vars(cls)
    )


def _finished_request(
    trace: Trace,
    method: str,
    path: str,
    query: str,
    route: str | None,
    status: int,
    started_at: float,
    duration_ms: float,
    request_id: str,
    host: str,
    pid: int,
    context: contextvars.Context | None = None,
    error: str | None = None,
) -> sinks.FinishedRequest:
    """``sinks.FinishedRequest(...)``: the same object, its fields stored without the frozen
    dataclass's ``__init__`` (thirteen ``object.__setattr__`` calls, some 18,000 machine
    instructions, a quarter of what recording a request without I/O cost): its ``__dict__``
    made at once, in the fields' order."""
    request = _new(_FinishedRequest)
    _set(
        request,
        "__dict__",
        {
            "trace": trace,
            "method": method,
            "path": path,
            "query": query,
            "route": route,
            "status": status,
            "started_at": started_at,
            "duration_ms": duration_ms,
            "request_id": request_id,
            "host": host,
            "pid": pid,
            "context": context,
            "error": error,
        },
    )
    return request


_new = object.__new__
_set = object.__setattr__
_FinishedRequest = sinks.FinishedRequest
_pid = os.getpid()  # this process's, as os.getpid() would say (a system call per request)


def _forked() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
    os.register_at_fork(after_in_child=_forked)
if not _plain_frozen_dataclass(sinks.FinishedRequest, _FINISHED_FIELDS):  # pragma: no cover
    _finished_request = sinks.FinishedRequest  # type: ignore[assignment]  # noqa: F811


def request_line(environ: dict[str, Any]) -> str:
    """``GET /path`` for a log line: no query string (its values may be private)."""
    return visible(f"{environ.get('REQUEST_METHOD', 'GET')} {path_text(environ)}")


def path_text(environ: dict[str, Any]) -> str:
    """The request's path as the client wrote it. WSGI carries its bytes as Latin-1 text
    (PEP 3333: ``/€uro`` arrives as ``"/\xe2\x82\xacuro"``); a path that is not UTF-8, or
    is text already (Django's ``META`` under ASGI), is left as it is."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if path.isascii():  # the same text either way
        return path
    try:
        return path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return path


def not_shown(line: str, reason: str) -> None:
    log.debug("ioprofiler: %s profiled, but sent without the trace: %s", line, reason)


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
