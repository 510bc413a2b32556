"""Where the traces of a page's own requests wait for its panel to read them.

With ``follow_requests=True`` the middleware keeps the trace of each request the panel's
script marked (and that the access rule allowed) under a random id, and the panel fetches
it by that id. The default store lives in the process:

>>> IOProfilerMiddleware(app, follow_requests=True)                       # MemoryStore()
>>> IOProfilerMiddleware(app, follow_requests=True, store=MemoryStore(max_bytes=2**20))

Several workers or hosts share one through a server the application already runs; its own
calls are never recorded into a trace:

>>> IOProfilerMiddleware(app, follow_requests=True, store="redis://127.0.0.1:6379/0")
>>> IOProfilerMiddleware(app, follow_requests=True, store="memcached://127.0.0.1:11211")

A shared store keeps no bound values, error messages or query-string values unless it is
made with ``values=True`` (``RedisStore(url, values=True)``).
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger("ioprofiler")

DEFAULT_TTL = 300.0  # seconds a trace waits to be read
DEFAULT_MAX_BYTES = 8 * 1024 * 1024  # the in-process store's bound, all entries together
MAX_SHARED_ENTRY_BYTES = 1024 * 1024  # memcached's default item limit; Redis alike
RECENT_IDS = 100  # ids a shared store remembers for the recent requests page
_ID = re.compile(r"^[0-9a-f]{32}$")
T = TypeVar("T")


def new_id() -> str:
    """128 random bits, as 32 hex digits."""
    return secrets.token_hex(16)


def is_id(text: str) -> bool:
    return bool(_ID.match(text))


class TraceStore(Protocol):
    """What the middleware needs of a store. ``values``: whether entries may hold bound
    values, error messages and query-string values; ``max_entry_bytes``: the largest entry
    it keeps."""

    values: bool
    max_entry_bytes: int

    def put(self, trace_id: str, entry: bytes) -> None: ...

    def get(self, trace_id: str) -> bytes | None: ...

    def recent(self, count: int) -> list[bytes]:
        """The newest ``count`` entries still kept, newest first."""
        ...


class MemoryStore:
    """Entries of this process, at most ``max_bytes`` together (8 MiB by default: the
    oldest go first), each for ``ttl`` seconds (5 minutes). One larger than the bound is
    not kept."""

    values = True

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_positive("max_bytes", max_bytes)
        _check_positive("ttl", ttl)
        self.max_bytes = self.max_entry_bytes = max_bytes
        self.ttl = float(ttl)
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The bytes held now."""
        return self._bytes

    def put(self, trace_id: str, entry: bytes) -> None:
        if len(entry) > self.max_bytes:
            log.debug("ioprofiler: a trace of %d bytes is past the store's bound", len(entry))
            return
        with self._lock:
            self._forget_expired()
            while self._entries and self._bytes + len(entry) > self.max_bytes:
                self._drop(next(iter(self._entries)))
            self._entries[trace_id] = (self._clock() + self.ttl, entry)
            self._bytes += len(entry)

    def get(self, trace_id: str) -> bytes | None:
        with self._lock:
            self._forget_expired()
            found = self._entries.get(trace_id)
        return None if found is None else found[1]

    def recent(self, count: int) -> list[bytes]:
        with self._lock:
            self._forget_expired()
            newest_first = reversed(self._entries.values())
            return [entry for _, entry in newest_first][:count]

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest][0] > now:
                return
            self._drop(oldest)

    def _drop(self, trace_id: str) -> None:
        _, entry = self._entries.pop(trace_id)
        self._bytes -= len(entry)

    def __repr__(self) -> str:
        return f"MemoryStore(max_bytes={self.max_bytes}, ttl={self.ttl:g})"


class RedisStore:
    """Entries in Redis under ``ioprofiler:trace:<id>``, each at most 1 MiB, expiring
    after ``ttl`` seconds (Redis drops them itself)."""

    max_entry_bytes = MAX_SHARED_ENTRY_BYTES

    def __init__(self, url: str, ttl: float = DEFAULT_TTL, values: bool = False) -> None:
        import redis

        _check_positive("ttl", ttl)
        self.url = url
        self.ttl = max(1, round(ttl))
        self.values = values
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def put(self, trace_id: str, entry: bytes) -> None:
        if _fits(entry):
            outside_traces(self._put, trace_id, entry)

    def _put(self, trace_id: str, entry: bytes) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            pipe.set(_key(trace_id), entry, ex=self.ttl)
            pipe.lpush(RECENT_KEY, trace_id)
            pipe.ltrim(RECENT_KEY, 0, RECENT_IDS - 1)
            pipe.expire(RECENT_KEY, self.ttl)
            pipe.execute()

    def get(self, trace_id: str) -> bytes | None:
        return outside_traces(self._client.get, _key(trace_id))

    def recent(self, count: int) -> list[bytes]:
        """The newest entries of every process that shares the store."""
        return outside_traces(self._recent, count)

    def _recent(self, count: int) -> list[bytes]:
        ids = [i.decode("ascii") for i in self._client.lrange(RECENT_KEY, 0, count - 1)]
        entries = self._client.mget([_key(i) for i in ids]) if ids else []
        return [entry for entry in entries if entry is not None]

    def __repr__(self) -> str:
        return f"RedisStore({_without_password(self.url)!r}, ttl={self.ttl})"


class MemcachedStore:
    """Entries in memcached (``memcached://host:port``), each at most 1 MiB, expiring after
    ``ttl`` seconds; memcached may drop them sooner when it needs the room."""

    max_entry_bytes = MAX_SHARED_ENTRY_BYTES

    def __init__(self, url: str, ttl: float = DEFAULT_TTL, values: bool = False) -> None:
        from pymemcache.client.base import PooledClient

        _check_positive("ttl", ttl)
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"a memcached store URL is memcached://host:port, not {url!r}")
        self.url = url
        self.ttl = max(1, round(ttl))
        self.values = values
        self._client = PooledClient(
            (parts.hostname, parts.port or 11211), connect_timeout=2, timeout=2
        )
        self._recent: deque[str] = deque(maxlen=RECENT_IDS)  # memcached lists no keys

    def put(self, trace_id: str, entry: bytes) -> None:
        if _fits(entry):
            outside_traces(self._client.set, _key(trace_id), entry, self.ttl, False)
            self._recent.appendleft(trace_id)

    def get(self, trace_id: str) -> bytes | None:
        return outside_traces(self._client.get, _key(trace_id))

    def recent(self, count: int) -> list[bytes]:
        """The newest entries this process kept (memcached cannot list the others')."""
        keys = [_key(trace_id) for trace_id in list(self._recent)[:count]]
        found = outside_traces(self._client.get_many, keys) if keys else {}
        return [found[key] for key in keys if key in found]

    def __repr__(self) -> str:
        return f"MemcachedStore({self.url!r}, ttl={self.ttl})"


def store_from(spec: str | TraceStore | None) -> TraceStore:
    """The store an option names: None (a :class:`MemoryStore`), a URL
    (``redis://``, ``rediss://``, ``unix://``, ``memcached://``) or a store."""
    if spec is None:
        return MemoryStore()
    if isinstance(spec, str):
        scheme = urlsplit(spec).scheme
        if scheme in ("redis", "rediss", "unix"):
            return RedisStore(spec)
        if scheme == "memcached":
            return MemcachedStore(spec)
        shown = _without_password(spec)
        raise ValueError(f"store must be a redis:// or memcached:// URL, or a store, not {shown!r}")
    if not (callable(getattr(spec, "put", None)) and callable(getattr(spec, "get", None))):
        raise TypeError(f"store must be a URL or an object with put() and get(), not {spec!r}")
    return spec


def outside_traces(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``function`` in an empty context: no trace is open there, so the store's own
    Redis or memcached calls never land in the request's trace."""
    return contextvars.Context().run(function, *args, **kwargs)


RECENT_KEY = "ioprofiler:recent"


def _key(trace_id: str) -> str:
    return f"ioprofiler:trace:{trace_id}"


def _fits(entry: bytes) -> bool:
    if len(entry) <= MAX_SHARED_ENTRY_BYTES:
        return True
    log.debug("ioprofiler: a trace of %d bytes is past the shared store's 1 MiB", len(entry))
    return False


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")
