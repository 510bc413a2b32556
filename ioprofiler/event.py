"""One intercepted I/O call: a database statement, a cache command, an HTTP exchange, or a
round trip around them (a connect, a commit). One class per kind (``Statement``,
``ConnectionOp``, ``CacheCall``, ``HTTPExchange``), all of them ``Event``.

Events hold raw facts taken at call time (integers from ``perf_counter_ns``, the
statement, the parameters in owned form (:mod:`ioprofiler.values`), the keys, the
outcome). Everything a person reads (the listing line, the interpolated SQL, the
callsite text) is made on demand by the properties below, never while the
application is running.
"""

from __future__ import annotations

import functools
import os
import warnings
from types import CodeType
from typing import Any

from ioprofiler import config
from ioprofiler.cache_text import describe
from ioprofiler.http_text import describe_http
from ioprofiler.roundtrip_text import describe_op
from ioprofiler.sql_text import render_statement

DB = "db"
CACHE = "cache"  # memcache, Redis: calls with hits and misses
HTTP = "http"

# Ops of the round trips and waits around the application's own calls: opening a
# connection, waiting for one from a pool, ending a transaction. They are listed and
# timed like every call, but counts and budgets leave them out unless asked by ``op``
# (``trace.count(kind="db", op="commit")``), so a query count stays a query count.
CONNECT = "connect"
POOL_WAIT = "pool_wait"
BEGIN = "begin"  # a transaction begun by a call of its own (Django turning autocommit off)
COMMIT = "commit"
ROLLBACK = "rollback"
BEGIN_TWOPHASE = "begin_twophase"
PREPARE_TWOPHASE = "prepare_twophase"
COMMIT_TWOPHASE = "commit_twophase"
ROLLBACK_TWOPHASE = "rollback_twophase"
RECOVER_TWOPHASE = "recover_twophase"
# Round trips a library makes on its own to set up, check or reset a connection: a
# statement a dialect or driver sends to set a new connection up (``SET NAMES``, a first
# connect's ``SELECT VERSION()``, ``SET AUTOCOMMIT = 1``), a pool's pre-ping, redis-py's
# ``UNWATCH`` when a pipeline is reset. Listed and timed, counted only when asked by op.
SETUP = "setup"
PING = "ping"
RESET = "reset"
CONNECTION_OPS = frozenset(
    (
        CONNECT,
        POOL_WAIT,
        BEGIN,
        COMMIT,
        ROLLBACK,
        BEGIN_TWOPHASE,
        PREPARE_TWOPHASE,
        COMMIT_TWOPHASE,
        ROLLBACK_TWOPHASE,
        RECOVER_TWOPHASE,
        SETUP,
        PING,
        RESET,
    )
)


class Event:
    """A database statement or a cache call, as the application made it.

    >>> with ioprofiler.profile() as trace:
    ...     cache.get("user:1")
    >>> event = trace.events[0]
    >>> event.kind, event.target, event.op, event.hit, event.hit_count, event.missed_keys
    ('cache', 'memcache', 'get', False, 0, ('user:1',))
    >>> event.line()
    '[memcache] 0.041 ms Cache MISS, keys: user:1'
    """

    # The fields every kind of call has. Each kind has a class of its own below, which
    # keeps its own fields in slots as well: a statement has no keys, a cache call no SQL
    # (fewer bytes per kept event, fewer stores per recorded call). Every other field reads
    # as the class-level default below (``event.hit`` on a statement is None), and writing
    # one keeps it in the event's ``__dict__``, made only then: an error, a note on a call
    # that rarely has one.
    __slots__ = (
        "op",
        "_target",
        "_origin_ns",
        "start_ns",
        "end_ns",
        "_site",
        "_overflow",
        "__dict__",
    )

    kind: str | None = None
    statement: str | None = None
    params: Any = None
    paramstyle: str | None = None
    dialect: str | None = None
    rows: int | None = None
    status: int | None = None  # HTTP: the response's status code
    size: int | None = None  # HTTP: the response body's length in bytes, when told
    keys: tuple[Any, ...] = ()
    hit: bool | None = None
    missed_keys: tuple[Any, ...] | None = None
    # (hits, misses) of a read whose keys and missed keys do not tell them: a pipeline's
    # reads among its writes, a multi-key EXISTS whose reply counts misses unnamed.
    counts: tuple[int, int] | None = None
    note: str | None = None
    # Raw facts of a connection op, formatted late: the address of a CONNECT, the
    # pool's state at a POOL WAIT, True for a rollback the pool made on check-in.
    detail: Any = None
    # A CONNECT's pool: how many connections it kept before this one (0: its first, or
    # Django's persistent connection, CONN_MAX_AGE); None when nothing keeps the connection
    # for later requests (NullPool, Django's default CONN_MAX_AGE=0, a driver's connect).
    pool_held: int | None = None
    error: str | None = None
    error_message: str | None = None

    def __new__(
        cls, kind: str | None = None, op: str = "", target: Any = None, origin_ns: int = 0
    ) -> Event:
        """``Event(kind, op, target, origin_ns)``: an event of the class for ``kind``
        (:func:`new_event`), not yet started (``start_ns`` 0) and not finished."""
        if cls is Event:
            return new_event(kind, op, target, origin_ns)
        event = _new(cls)  # a subclass made directly (a stored event), or being unpickled
        event.op = op
        event._target = target
        event._origin_ns = origin_ns
        event.start_ns = 0
        event.end_ns = None
        event._site = None  # the callsite's (code, line)
        event._overflow = None
        if kind is not None and kind != cls.kind:
            event.kind = kind
        return event

    # -- what the application sees --------------------------------------------------

    @property
    def target(self) -> str:
        """The shard or server name: ``dbshard01``, ``memcache``, ``redis 10.0.0.5:6379/0``."""
        return str(self._target)

    @property
    def server(self) -> Any:
        """For calls to a server, its address as the client names it (``(host, port)``, a path)."""
        return getattr(self._target, "address", None)

    @property
    def is_call(self) -> bool:
        """A call the application made (a statement, a cache command): what counts and
        budgets count. False for the round trips and waits around those calls: connects,
        pool waits, commits, rollbacks, two-phase steps, and what a library sends to set
        up, check or reset a connection (see ``CONNECTION_OPS``)."""
        return self.op not in CONNECTION_OPS

    @property
    def is_statement(self) -> bool:
        """A database statement (``execute``, ``executemany``), not a connection op."""
        return self.kind == DB and self.op not in CONNECTION_OPS

    @property
    def duration_ms(self) -> float | None:
        """Wall-clock duration as the application saw it; None while still running."""
        return None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e6

    @property
    def start_ms(self) -> float:
        """Milliseconds from the start of the innermost trace open when the call started."""
        return (self.start_ns - self._origin_ns) / 1e6

    @property
    def hit_count(self) -> int | None:
        """How many of the keys were found, for cache reads; None for writes."""
        if self.hit is None:
            return None
        if self.counts is not None:
            return self.counts[0]
        return len(self.keys) - len(self.missed_keys or ())

    @property
    def miss_count(self) -> int | None:
        """How many of the keys were not found, for cache reads; None for writes. It may
        exceed ``len(missed_keys)``: a multi-key ``EXISTS`` counts misses without naming them."""
        if self.hit is None:
            return None
        if self.counts is not None:
            return self.counts[1]
        return len(self.missed_keys or ())

    @property
    def hits(self) -> int | None:
        """Deprecated: :attr:`hit_count`."""
        _deprecated("hits", "hit_count")
        return self.hit_count

    @property
    def misses(self) -> tuple[Any, ...] | None:
        """Deprecated: :attr:`missed_keys`."""
        _deprecated("misses", "missed_keys")
        return self.missed_keys

    @misses.setter
    def misses(self, keys: tuple[Any, ...] | None) -> None:
        _deprecated("misses", "missed_keys")
        self.missed_keys = keys

    @property
    def callsite(self) -> str | None:
        """First frame outside ioprofiler, the intercepted libraries and the standard library.

        As ``path/to/file.py:42 in function``; the path is relative to the working
        directory when it lies below it.
        """
        if self._site is None:
            return None
        return callsite_text(*self._site)

    @property
    def _code(self) -> CodeType | None:
        return None if self._site is None else self._site[0]

    @property
    def _lineno(self) -> int:
        return 0 if self._site is None else self._site[1]

    @property
    def sql(self) -> str | None:
        """The statement on one line with its parameters in place (``?`` when redacted)."""
        if self.statement is None:
            return None
        return render_statement(
            self.statement,
            self.params,
            self.paramstyle,
            self.rows,
            config.settings.redact,
            self.dialect,
        )

    def description(self, sql: str | None = None) -> str:
        """What happened, as the listing shows it after the duration. Never raises.

        ``sql``: this event's :attr:`sql`, when the caller has rendered it already.
        """
        try:
            if self.op == SETUP:
                text = f"{sql if sql is not None else (self.sql or '')} (connection set-up)"
            elif self.op in CONNECTION_OPS:
                text = describe_op(self.op, self.detail)
            elif self.kind == DB:
                text = sql if sql is not None else (self.sql or "")
            elif self.kind == HTTP:
                text = describe_http(self)
            else:
                text = describe(self)
        except Exception as exc:
            text = f"<ioprofiler could not describe this call: {type(exc).__name__}>"
        if self.error:
            text += f" [ERROR {self.error}]"
        return text

    def line(self) -> str:
        """One line of the listing: ``[target] 0.902 ms what happened``."""
        return _event_line()(self)

    def __repr__(self) -> str:
        return f"<Event {self.line()}>"


class Statement(Event):
    """A database statement (``execute``, ``executemany``)."""

    __slots__ = ("statement", "params", "paramstyle", "dialect", "rows")
    kind = DB


class ConnectionOp(Event):
    """A database round trip around the statements: a connect, a pool wait, a commit…"""

    __slots__ = ("dialect", "detail")
    kind = DB


class CacheCall(Event):
    """A cache command (memcache, Redis): its keys, and for reads which were found."""

    __slots__ = ("keys", "hit", "missed_keys", "note")
    kind = CACHE


class HTTPExchange(Event):
    """One HTTP request and its response's status (the URL is in ``statement``)."""

    __slots__ = ("statement", "status", "size")
    kind = HTTP


_new = object.__new__

# Each kind's own fields and their values in a new event: what new_event writes, and what
# the compiled begin (ioprofiler._speedups) writes for the kinds it makes itself.
STATEMENT_DEFAULTS = {
    "statement": None,
    "params": None,
    "paramstyle": None,
    "dialect": None,
    "rows": None,
}
CACHE_CALL_DEFAULTS = {"keys": (), "hit": None, "missed_keys": None, "note": None}
CONNECTION_OP_DEFAULTS = {"dialect": None, "detail": None}


def new_event(kind: str | None, op: str, target: Any, origin_ns: int) -> Event:
    """An event of the class for ``kind`` and ``op``, every field at its default.

    Runs for every recorded call (``recording.begin``): it writes each slot once, and
    makes the event without calling a class (a type call with ``__init__`` costs twice
    this function).
    """
    if kind == DB:
        if op in CONNECTION_OPS:
            event = _new(ConnectionOp)
            event.dialect = event.detail = None
        else:
            event = _new(Statement)
            event.statement = event.params = event.paramstyle = event.dialect = None
            event.rows = None
    elif kind == CACHE:
        event = _new(CacheCall)
        event.keys = ()
        event.hit = event.missed_keys = event.note = None
    elif kind == HTTP:
        event = _new(HTTPExchange)
        event.statement = event.status = event.size = None
    else:
        event = _new(Event)
        event.kind = kind
    event.op = op
    event._target = target
    event._origin_ns = origin_ns
    event.start_ns = 0
    event.end_ns = event._site = event._overflow = None
    return event


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"Event.{old} is deprecated: use Event.{new}", DeprecationWarning, stacklevel=3)


@functools.lru_cache(maxsize=1)
def _event_line():  # render.text reads Events: imported on first use, not at import time
    from ioprofiler.render.text import event_line

    return event_line


def callsite_text(code: CodeType, lineno: int) -> str:
    """``path/to/file.py:42 in function``."""
    return f"{_display_path(code.co_filename)}:{lineno} in {code.co_name}"


@functools.lru_cache(maxsize=1024)
def _display_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except (ValueError, OSError):  # another drive; or the working directory is gone
        return filename
    return filename if relative.startswith("..") else relative
