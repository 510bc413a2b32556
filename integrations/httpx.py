"""httpx, sync and async: one event per request and response through its HTTP transport.

Wrapped: ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.handle_async_request``,
which ``Client.send`` calls once per hop, so each redirect is an event of its own. The time
is until the response's headers (httpx streams the body afterwards); the size is the
body's ``Content-Length``, when the server sends one.
"""

from __future__ import annotations

from typing import Any

from ioprofiler.integrations._http import begin_exchange, finish_exchange

from ioprofiler.patching import Patches
from ioprofiler.recording import active, failed, profiler_failed
from ioprofiler.registry import importable

_patches = Patches()


def available() -> bool:
    return importable("httpx")


def install() -> bool:
    import httpx

    _patches.wrap(httpx.HTTPTransport, "handle_request", _handle_request)
    _patches.wrap(httpx.AsyncHTTPTransport, "handle_async_request", _handle_async_request)
    return bool(_patches)


def uninstall() -> None:
    _patches.unwrap_all()


def _begin(traces: Any, args: Any, kwargs: Any):
    try:
        request = args[0] if args else kwargs["request"]
        url = request.url
        scheme, host, port, path = url.scheme, url.host, url.port, url.raw_path
    except Exception as exc:
        profiler_failed(traces, exc)
        return None
    return begin_exchange(traces, scheme, host, port, request.method, path)


def _handle_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)
    event = _begin(traces, args, kwargs)
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    finish_exchange(event, response.status_code, response.headers)
    return response


def _handle_async_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)
    event = _begin(traces, args, kwargs)
    if event is None:
        return wrapped(*args, **kwargs)
    return _awaited(event, wrapped(*args, **kwargs))


async def _awaited(event: Any, pending: Any) -> Any:
    try:
        response = await pending
    except BaseException as exc:
        failed(event, exc)
        raise
    finish_exchange(event, response.status_code, response.headers)
    return response
