"""urllib3 2.x (and so ``requests``): one event per request and response on a connection.

Wrapped: ``HTTPConnectionPool._make_request``, called once per attempt with the
connection in hand, so each retry and each redirect urllib3 or ``requests`` follows is an
event of its own. The time is until the response's headers (and its body, when urllib3
reads it at once, as ``PoolManager.request`` does by default); the size is the body's
length as ``Content-Length`` tells it, or as read.
"""

from __future__ import annotations

from typing import Any

from ioprofiler.integrations._http import begin_exchange, finish_exchange

from ioprofiler.patching import Patches
from ioprofiler.recording import active, failed
from ioprofiler.registry import importable

_patches = Patches()


def available() -> bool:
    return importable("urllib3.connectionpool")


def install() -> bool:
    from urllib3.connectionpool import HTTPConnectionPool

    _patches.wrap(HTTPConnectionPool, "_make_request", _make_request)
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
    body = getattr(response, "_body", None)  # read already (preload_content): never read here
    size = len(body) if isinstance(body, bytes) else None
    finish_exchange(event, response.status, response.headers, size)
    return response
