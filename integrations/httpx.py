"""httpx, sync and async: one event per request and response through its HTTP transport.

Wrapped: ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.handle_async_request``,
which ``Client.send`` calls once per hop, so each redirect is an event of its own. The
response's byte stream is handed on inside a thin stream of ours that ends the event's time
when the body has been read to its end or the response is closed: at once for
``client.get()``, when the application reads it for ``client.stream()`` and
``send(stream=True)``. The size is the body's bytes as received (before decompression).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ioprofiler.integrations._http import (
    begin_exchange,
    body_ended,
    finish_exchange,
    has_no_body,
)

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


class _Body:
    """What the timed streams share: the event, its traces and the bytes seen."""

    __slots__ = ("event", "traces", "length", "size", "ended")

    def __init__(self, event: Any, traces: Any, length: int | None) -> None:
        self.event = event
        self.traces = traces
        self.length = length  # Content-Length, when the server sent one
        self.size = 0
        self.ended = False

    def end(self, complete: bool, error: BaseException | None = None) -> None:
        if not self.ended:
            self.ended = True
            # closed once every promised byte came: read to the end, in all but name
            complete = complete or (error is None and self.length == self.size)
            body_ended(self.event, self.traces, self.size, complete, error)


def _timed(event: Any, traces: Any, response: Any, stream_type: type) -> None:
    """Record the headers; hand the body on through a timed stream unless there is none."""
    try:
        length = response.headers.get("content-length")
        empty = has_no_body(event.op, response.status_code, length)
        if not empty:
            length = int(length) if length is not None and length.isdigit() else None
            response.stream = stream_type(response.stream, _Body(event, traces, length))
    except Exception as exc:
        profiler_failed(traces, exc)
        empty = True
    finish_exchange(event, traces, response.status_code, 0 if empty else None, not empty)


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
    _timed(event, traces, response, _stream_types()[0])
    return response


def _handle_async_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)
    event = _begin(traces, args, kwargs)
    if event is None:
        return wrapped(*args, **kwargs)
    return _awaited(event, traces, wrapped(*args, **kwargs))


async def _awaited(event: Any, traces: Any, pending: Any) -> Any:
    try:
        response = await pending
    except BaseException as exc:
        failed(event, exc)
        raise
    _timed(event, traces, response, _stream_types()[1])
    return response


@functools.lru_cache(maxsize=1)
def _stream_types() -> tuple[type, type]:
    """The timed streams, subclasses of httpx's own so that ``Response.read()`` takes them
    (made once httpx is imported)."""
    import httpx

    class TimedStream(httpx.SyncByteStream):
        """The transport's byte stream, passed through unchanged; ends the event at its end."""

        def __init__(self, stream: Any, body: _Body) -> None:
            self._stream = stream
            self._body = body

        def __iter__(self) -> Iterator[bytes]:
            body = self._body
            try:
                for chunk in self._stream:
                    body.size += len(chunk)
                    yield chunk
            except GeneratorExit:  # the reader stopped early: close() says when it is done
                raise
            except BaseException as exc:
                body.end(False, exc)
                raise
            body.end(True)

        def close(self) -> None:
            self._body.end(False)  # nothing when read to the end already
            self._stream.close()

    class TimedAsyncStream(httpx.AsyncByteStream):
        """The async transport's byte stream, as ``TimedStream``."""

        def __init__(self, stream: Any, body: _Body) -> None:
            self._stream = stream
            self._body = body

        async def __aiter__(self) -> AsyncIterator[bytes]:
            body = self._body
            try:
                async for chunk in self._stream:
                    body.size += len(chunk)
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                body.end(False, exc)
                raise
            body.end(True)

        async def aclose(self) -> None:
            self._body.end(False)
            await self._stream.aclose()

    return TimedStream, TimedAsyncStream
