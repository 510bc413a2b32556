"""urllib3 2.x (and so ``requests``): one event per request and response on a connection.

Wrapped:

- ``HTTPConnectionPool._make_request``, called once per attempt with the connection in
  hand, so each retry and each redirect urllib3 or ``requests`` follows is an event of its
  own. A body urllib3 reads at once (``preload_content=True``, ``PoolManager.request``'s
  default) is read inside it.
- ``HTTPResponse.release_conn`` and ``close``: a body read later (``preload_content=False``;
  ``requests`` always reads this way, at once unless ``stream=True``) ends its event when
  urllib3 has read it to the end and gives the connection back, or when the application
  closes the response; ``HTTPResponse._handle_chunk`` counts a chunked body's bytes as
  ``stream()`` and ``read_chunked()`` read them (urllib3's ``tell()`` does not).

The size is the body's bytes as received (compressed, when the server compressed it).
"""

from __future__ import annotations

import sys
from typing import Any
from weakref import WeakKeyDictionary

from ioprofiler.integrations._http import begin_exchange, body_ended, finish_exchange

from ioprofiler.patching import Patches
from ioprofiler.recording import active, failed, profiler_failed
from ioprofiler.registry import importable

_patches = Patches()


class _Body:
    """A response whose body is still to be read, and its event."""

    __slots__ = ("event", "traces", "chunked", "chunks", "reading")

    def __init__(self, event: Any, traces: Any) -> None:
        self.event = event
        self.traces = traces
        self.chunked = 0  # bytes read through _handle_chunk, which tell() leaves out
        self.chunks = False  # read chunk by chunk (stream(), read_chunked())
        self.reading = False  # inside _raw_read, which counts its bytes after releasing


# HTTPResponse -> _Body, while the body is unread; gone with the response.
_bodies: WeakKeyDictionary[Any, _Body] = WeakKeyDictionary()


def available() -> bool:
    return importable("urllib3.connectionpool")


def install() -> bool:
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.response import HTTPResponse

    _patches.wrap(HTTPConnectionPool, "_make_request", _make_request)
    _patches.wrap(HTTPResponse, "release_conn", _release_conn)
    _patches.wrap(HTTPResponse, "close", _close)
    _patches.wrap(HTTPResponse, "_raw_read", _raw_read)
    _patches.wrap(HTTPResponse, "_handle_chunk", _handle_chunk)
    return bool(_patches)


def uninstall() -> None:
    _patches.unwrap_all()


def _bind(conn: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return method, url


def _make_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``_make_request(conn, method, url, body=None, headers=None, …)``."""
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)
    try:
        method, url = _bind(*args, **kwargs)
    except TypeError:
        return wrapped(*args, **kwargs)  # let urllib3 raise its own error
    event = begin_exchange(traces, instance.scheme, instance.host, instance.port, method, url)
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    try:
        # closed: read already (preloaded); no length left: no body (HEAD, 204, 304, 0)
        pending = not response.isclosed() and response.length_remaining != 0
        size = None if pending else response.tell()
    except Exception as exc:
        profiler_failed(traces, exc)
        pending, size = False, None
    finish_exchange(event, traces, response.status, size, body_pending=pending)
    if pending:
        _bodies[response] = _Body(event, traces)
    return response


def _end(response: Any, body: _Body, error: BaseException | None) -> None:
    try:
        # urllib3 reads a body's end and then closes http.client's response (isclosed);
        # Content-Length's count reaches 0 unless the body ended short.
        complete = error is None and response.isclosed() and not response.length_remaining
        if body.chunks:  # read_chunked() stops at the last chunk, of size 0
            complete = complete and response.chunk_left == 0
        size = response.tell() + body.chunked
    except Exception as exc:
        profiler_failed(body.traces, exc)
        return
    body_ended(body.event, body.traces, size, complete, error)


def _reading_error() -> BaseException | None:
    """The exception on its way out of the urllib3 frame that is releasing the connection
    (its ``_error_catcher``, when reading the body failed); None for one merely being
    handled around the call (an application's ``except`` block)."""
    error = sys.exc_info()[1]
    if error is None or isinstance(error, GeneratorExit):  # a reader that stopped early
        return None
    frames = set()
    frame = sys._getframe(2)  # the caller of release_conn (wrapt's C wrapper adds none)
    for _ in range(4):  # and a few above it, for wrapt's pure-Python wrappers
        if frame is None:
            break
        frames.add(frame)
        frame = frame.f_back
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame in frames:
            return error
        tb = tb.tb_next
    return None


def _release_conn(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """urllib3 read the body to its end, or its reading failed (the error on its way out),
    or the application let the connection go."""
    body = _bodies.get(instance)
    if body is not None and not body.reading:  # _raw_read ends it, its bytes counted
        del _bodies[instance]
        _end(instance, body, _reading_error())
    return wrapped(*args, **kwargs)


def _raw_read(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """read(), read1(), drain_conn(): the body's end is known once the bytes are counted."""
    body = _bodies.get(instance)
    if body is None:
        return wrapped(*args, **kwargs)
    body.reading = True
    try:
        data = wrapped(*args, **kwargs)
    except BaseException as exc:
        body.reading = False
        if _bodies.pop(instance, None) is not None:
            _end(instance, body, exc)
        raise
    body.reading = False
    try:
        ended = instance.isclosed()
    except Exception:
        ended = True
    if ended and _bodies.pop(instance, None) is not None:
        _end(instance, body, None)
    return data


def _close(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    body = _bodies.pop(instance, None)
    if body is not None:
        _end(instance, body, None)  # an exception passing by is the application's
    return wrapped(*args, **kwargs)


def _handle_chunk(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    chunk = wrapped(*args, **kwargs)
    body = _bodies.get(instance)
    if body is not None:
        body.chunks = True
        body.chunked += len(chunk)
    return chunk
