"""redis-py, sync and asyncio: one event per round trip to a Redis server.

Wrapped where a round trip happens with the connection in hand, so the target names the
server that answered (``[redis 10.0.0.5:6379/0]``), whichever client chose it (a plain
``Redis``, one from a ``Sentinel``, a pipeline in ``WATCH`` mode):

- ``Redis._send_command_parse_response``: one command, sent and its reply read; called
  once per attempt, so a retried command is one event per attempt. Blocking commands
  (``BLPOP``…) are timed as they are, waiting included.
- ``Pipeline._execute_pipeline`` and ``_execute_transaction``: a pipeline (or a
  ``MULTI``/``EXEC`` transaction) is one round trip, one event listing its commands.
- ``Pipeline.reset`` when it sends ``UNWATCH`` straight on the connection (a pipeline left
  in ``WATCH`` mode without ``EXEC``): a ``reset`` event, a round trip of the connection
  that counts and budgets leave out unless asked by op, like a connect. ``Pipeline.watch``
  switches that wrapper on in its context, so pipelines that never watch pay nothing more.
- ``AbstractConnection.connect_check_health`` (``connect`` before redis-py 6) when it opens a
  connection (its handshake included), as a ``connect`` event: a server that cannot be
  reached shows there.
- ``RedisCluster`` and its pipelines: see ``_redis_cluster.py``.
- ``PubSub.execute_command`` (``SUBSCRIBE``…) and ``PubSub.parse_response`` when it hands
  back a message.

Reads (``GET``, ``MGET``, ``HGET``, ``HMGET``, ``EXISTS``) report hits and misses per key
(per field for hashes) like memcache, alone or inside a pipeline (hits out of the keys its
reads looked up). A multi-key ``EXISTS`` is answered with a count: its misses are counted
(``event.counts``), not named. Only keys are kept: never values, never the arguments of
commands whose key positions are not known here (``AUTH``…).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from ioprofiler.event import CACHE, RESET
from ioprofiler.patching import Patches
from ioprofiler.recording import active, begin, done, failed, perf_counter_ns, profiler_failed
from ioprofiler.registry import importable
from ioprofiler.targets import Service, format_server

_patches = Patches()
# True in a context once a pipeline there has entered WATCH mode with a trace open: only then
# does Pipeline.reset() run our wrapper (for the UNWATCH it may send).
_watched: ContextVar[bool] = ContextVar("ioprofiler_redis_watched", default=False)


def _address_text(address: Any) -> str:
    """``("10.0.0.5", 6379, 0)`` -> ``10.0.0.5:6379/0``."""
    *server, db = address
    return f"{format_server(tuple(server) if len(server) == 2 else server[0])}/{db}"


REDIS = Service("redis", describe=_address_text, batch_read="MGET")
_targets = REDIS.targets  # read before calling REDIS.target(): a dict lookup, no call

# Where a command's keys are, for the commands that have keys.
_SINGLE_KEY = frozenset(
    """GET SET SETEX PSETEX SETNX GETSET GETDEL GETEX APPEND STRLEN SETRANGE GETRANGE GETBIT
    SETBIT BITCOUNT INCR INCRBY INCRBYFLOAT DECR DECRBY EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL
    PTTL PERSIST TYPE DUMP RESTORE HSET HSETNX HMSET HDEL HEXISTS HGETALL HKEYS HVALS HLEN
    HINCRBY HINCRBYFLOAT HSCAN LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LREM
    LTRIM LINSERT SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SSCAN ZADD ZREM
    ZRANGE ZREVRANGE ZRANGEBYSCORE ZREVRANGEBYSCORE ZSCORE ZMSCORE ZINCRBY ZCARD ZCOUNT ZRANK
    ZREVRANK ZREMRANGEBYSCORE ZREMRANGEBYRANK ZSCAN XADD XLEN XRANGE XREVRANGE XTRIM XDEL PFADD
    GEOADD GEOPOS GEODIST PUBLISH SPUBLISH""".split()
)
_ALL_KEYS = frozenset(
    """DEL UNLINK EXISTS MGET TOUCH WATCH SINTER SUNION SDIFF PFCOUNT SUBSCRIBE UNSUBSCRIBE
    PSUBSCRIBE PUNSUBSCRIBE SSUBSCRIBE SUNSUBSCRIBE""".split()
)
_KEYS_THEN_TIMEOUT = frozenset("BLPOP BRPOP BZPOPMIN BZPOPMAX".split())
_PAIRS = frozenset("MSET MSETNX".split())
_FIELDS = frozenset(("HGET", "HMGET"))  # hit or miss per field: the keys are (hash, field)
_READS = frozenset(("GET", "MGET", "HGET", "HMGET", "EXISTS"))
# command name as redis-py passes it -> (NAME, its op in the listing), for the commands above:
# no str.upper()/lower() and no hashing of a new string per command
_KNOWN = {
    name: (name, name.lower())
    for name in _SINGLE_KEY | _ALL_KEYS | _KEYS_THEN_TIMEOUT | _PAIRS | _FIELDS | _READS
}


def available() -> bool:
    return importable("redis.client")


def install() -> bool:
    import redis.client as sync
    import redis.connection as sync_connection

    try:
        import redis.asyncio.client as asynchronous
        import redis.asyncio.connection as async_connection
    except ImportError:  # pragma: no cover - redis-py without asyncio support
        asynchronous = async_connection = None
    _patches.wrap(sync_connection.AbstractConnection, _connect_method(sync_connection), _connect)
    _patches.wrap(sync.Redis, "_send_command_parse_response", _command)
    _patches.wrap(sync.Pipeline, "_execute_pipeline", _pipeline("pipeline"))
    _patches.wrap(sync.Pipeline, "_execute_transaction", _pipeline("transaction"))
    _patches.wrap(sync.Pipeline, "watch", _watch)
    _patches.wrap(sync.Pipeline, "reset", _pipeline_reset, enabled=_watched.get)
    _patches.wrap(sync.PubSub, "execute_command", _pubsub_command)
    _patches.wrap(sync.PubSub, "parse_response", _pubsub_message)
    if asynchronous is not None:
        _patches.wrap(
            async_connection.AbstractConnection, _connect_method(async_connection), _async_connect
        )
        _patches.wrap(asynchronous.Redis, "_send_command_parse_response", _async_command)
        _patches.wrap(asynchronous.Pipeline, "_execute_pipeline", _async_pipeline("pipeline"))
        _patches.wrap(asynchronous.Pipeline, "_execute_transaction", _async_pipeline("transaction"))
        _patches.wrap(asynchronous.Pipeline, "watch", _watch)
        _patches.wrap(asynchronous.Pipeline, "reset", _async_pipeline_reset, enabled=_watched.get)
        _patches.wrap(asynchronous.PubSub, "execute_command", _async_pubsub_command)
        _patches.wrap(asynchronous.PubSub, "parse_response", _async_pubsub_message)
    from ioprofiler.integrations import _redis_cluster

    _redis_cluster.install(_patches)
    return bool(_patches)


def _connect_method(module: Any) -> str:
    """Where a connection opens: ``connect_check_health`` from redis-py 6 (``connect()`` calls
    it; a ``Sentinel``'s connection and the asyncio client's lazy connect call it directly)."""
    defined = vars(module.AbstractConnection)
    return "connect_check_health" if "connect_check_health" in defined else "connect"


def uninstall() -> None:
    _patches.unwrap_all()
    from ioprofiler.integrations import _redis_cluster

    _redis_cluster.uninstall()


# -- what a command is -------------------------------------------------------------------


def _name(args: Any) -> str:
    name = args[0] if args else ""
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).decode("ascii", "replace")
    return str(name).upper()


def command_keys(name: str, args: Any, options: Any = None) -> tuple[Any, ...]:
    """The keys of one command (``args`` without its name); () when unknown."""
    if name in _FIELDS:
        return tuple((args[0], field) for field in args[1:]) if args else ()
    if name in _SINGLE_KEY:
        return (args[0],) if args else ()
    if name in _ALL_KEYS:
        return tuple(args)
    if name in _KEYS_THEN_TIMEOUT:
        return tuple(args[:-1])
    if name in _PAIRS:
        return tuple(args[0::2])
    keys = options.get("keys") if options else None  # redis-py names the keys of reads
    return tuple(keys) if keys else ()


def _target(connection: Any) -> Any:
    path = getattr(connection, "path", None)
    server = (path, connection.db) if path else (connection.host, connection.port, connection.db)
    return _targets.get(server) or REDIS.target(server)


def _begin(traces: Any, connection: Any, op: str, keys: tuple[Any, ...]):
    try:
        event = begin(traces, CACHE, op, _target(connection))
        event.keys = keys
        event.start_ns = perf_counter_ns()
        return event
    except Exception as exc:
        profiler_failed(traces, exc)
        return None


def _begin_command(traces: Any, connection: Any, args: Any, options: Any):
    """``(event, NAME)`` for one command (``args`` starts with its name); the event is None
    when it could not be made. Every plain command passes here: a known name and a single
    key are taken without a call, and ``begin`` is called directly."""
    try:
        known = _KNOWN.get(args[0]) if args and type(args[0]) is str else None
        name, op = known if known is not None else (_name(args), None)
        if name in _SINGLE_KEY:
            keys = (args[1],) if len(args) > 1 else ()
        else:
            keys = command_keys(name, args[1:], options)
        event = begin(traces, CACHE, op or name.lower(), _target(connection), 3)
        event.keys = keys
        return event, name
    except Exception as exc:
        profiler_failed(traces, exc)
        return None, ""


def read_outcome(name: str, keys: tuple[Any, ...], result: Any) -> tuple[int, int, tuple] | None:
    """``(hits, misses, missed keys)`` of a read's reply; None when ``name`` is no read or the
    reply is an error. A multi-key ``EXISTS`` counts the keys that exist without naming the
    others: its missed keys are known only for a single key."""
    if name not in _READS or isinstance(result, BaseException):
        return None
    if name in ("GET", "HGET"):
        return (1, 0, ()) if result is not None else (0, len(keys), keys)
    if name in ("MGET", "HMGET"):
        missed = tuple(k for k, v in zip(keys, result, strict=False) if v is None)
        return len(keys) - len(missed), len(missed), missed
    if isinstance(result, int):  # EXISTS: how many of the keys exist (a repeated key counts)
        found = min(max(result, 0), len(keys))
        missing = len(keys) - found
        return found, missing, keys if missing and len(keys) == 1 else ()
    return None


def _read_outcome(event: Any, name: str, result: Any) -> None:
    """Hits and misses of a read, from its reply."""
    if name in ("GET", "HGET"):
        event.hit = result is not None
        event.missed_keys = () if event.hit else event.keys
        return
    outcome = read_outcome(name, event.keys, result)
    if outcome is not None:
        hits, misses, missed = outcome
        event.missed_keys = missed
        if misses != len(missed):
            event.counts = (hits, misses)
        event.hit = not misses


def _finish(event: Any, name: str, result: Any) -> None:
    event.end_ns = perf_counter_ns()
    if name in _READS:
        try:
            _read_outcome(event, name, result)
        except Exception as exc:
            profiler_failed(active.get() or (), exc)
    if event._overflow is not None:  # done(event), without the call when it does nothing
        done(event)


def batch_facts(event: Any, commands: Any) -> None:
    """A batch's commands (``(args, options)`` pairs) as (name, keys) pairs, and every key,
    on its event."""
    listed = []
    keys: list[Any] = []
    for args, options in commands:
        name = _name(args)
        these = command_keys(name, args[1:], options)
        listed.append((name, these))
        keys.extend(these)
    event.params = tuple(listed)
    event.keys = tuple(keys)


def batch_outcome(event: Any, results: Any) -> None:
    """Hits and misses of a batch's reads (``GET``… among its commands), from its replies:
    keys found out of keys read, across the batch."""
    hits = misses = 0
    missed: list[Any] = []
    reads = False
    for (name, keys), result in zip(event.params or (), results, strict=False):
        outcome = read_outcome(name, keys, result)
        if outcome is not None:
            reads = True
            hits += outcome[0]
            misses += outcome[1]
            missed.extend(outcome[2])
    if reads:
        event.missed_keys = tuple(missed)
        event.counts = (hits, misses)
        event.hit = not misses


def finish_batch(event: Any, results: Any) -> None:
    event.end_ns = perf_counter_ns()
    try:
        if isinstance(results, (list, tuple)):
            batch_outcome(event, results)
    except Exception as exc:
        profiler_failed(active.get() or (), exc)
    done(event)


# -- sync --------------------------------------------------------------------------------


def _command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``_send_command_parse_response(conn, command_name, *args, **options)``."""
    traces = active.get()
    if not traces or len(args) < 2:
        return wrapped(*args, **kwargs)
    event, name = _begin_command(traces, args[0], args[2:], kwargs)
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    _finish(event, name, result)
    return result


def _begin_pipeline(traces: Any, op: str, args: Any):
    """``_execute_pipeline(connection, commands, raise_on_error)``: an event, or None."""
    event = _begin(traces, args[0], op, ())
    if event is not None:
        try:
            batch_facts(event, args[1])
        except Exception as exc:
            profiler_failed(traces, exc)
    return event


def _pipeline(op: str):
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or len(args) < 2:
            return wrapped(*args, **kwargs)
        event = _begin_pipeline(traces, op, args)
        if event is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        finish_batch(event, result)
        return result

    return wrapper


def _watch(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Pipeline.watch()``: from now on, resets in this context are looked at."""
    if not _watched.get():
        _watched.set(True)
    return wrapped(*args, **kwargs)


def _begin_reset(traces: Any, pipeline: Any):
    """The event of the ``UNWATCH`` that ``pipeline.reset()`` is about to send; None when it
    sends nothing (not watching, or its connection is gone) or on failure."""
    try:
        connection = pipeline.connection
        if not (pipeline.watching and connection is not None and connection.is_connected):
            return None
    except Exception as exc:
        profiler_failed(traces, exc)
        return None
    event = _begin(traces, connection, RESET, ())
    if event is not None:
        event.detail = "UNWATCH"
    return event


def _reset_done(event: Any, result: Any = None) -> None:
    event.end_ns = perf_counter_ns()
    done(event)


def _pipeline_reset(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Pipeline.reset()``: an event for the ``UNWATCH`` it sends, when it sends one."""
    traces = active.get()
    event = _begin_reset(traces, instance) if traces else None
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    _reset_done(event)
    return result


def _connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces or getattr(instance, "_sock", None) is not None:
        return wrapped(*args, **kwargs)  # connected already: connect() does nothing
    event = _begin(traces, instance, "connect", ())
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    _connected(event, instance)
    return result


def _connected(event: Any, connection: Any, result: Any = None) -> None:
    """A connect that succeeded: named after the server it reached (a ``Sentinel``'s
    connection learns its server's address while connecting)."""
    try:
        event._target = _target(connection)
    except Exception as exc:
        profiler_failed(active.get() or (), exc)
    _finish(event, "", None)


def _pubsub_command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)
    event, name = _begin_pubsub(traces, instance, args)
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    _finish(event, name, result)
    return result


def _begin_pubsub(traces: Any, pubsub: Any, args: Any):
    try:
        connection = _pubsub_connection(pubsub)
    except Exception as exc:
        profiler_failed(traces, exc)
        return None, ""
    return _begin_command(traces, connection, args, None)


def _pubsub_connection(pubsub: Any) -> Any:
    """The connection a PubSub uses; before its first command, the pool's settings."""
    if pubsub.connection is not None:
        return pubsub.connection
    return _PoolSettings(pubsub.connection_pool.connection_kwargs)


class _PoolSettings:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.path = settings.get("path")
        self.host = settings.get("host", "localhost")
        self.port = settings.get("port", 6379)
        self.db = settings.get("db", 0)


def _pubsub_message(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """A message read off a subscribed connection is an event; a poll that found none is not."""
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)
    start_ns = perf_counter_ns()
    result = wrapped(*args, **kwargs)
    if result is not None:
        _record_message(traces, instance, start_ns, result)
    return result


def _record_message(traces: Any, pubsub: Any, start_ns: int, message: Any) -> None:
    try:
        kind = message[0] if isinstance(message, (list, tuple)) and message else b"message"
        channel = message[1] if isinstance(message, (list, tuple)) and len(message) > 1 else None
        event = _begin(traces, _pubsub_connection(pubsub), "received", ())
        if event is None:
            return
        event.keys = () if channel is None else (channel,)
        event.note = _name((kind,)).lower()
        event.start_ns = start_ns
        event.end_ns = perf_counter_ns()
        done(event)
    except Exception as exc:
        profiler_failed(traces, exc)


# -- asyncio -----------------------------------------------------------------------------


async def awaited(event: Any, pending: Any, finish: Callable[..., None], *facts: Any) -> Any:
    """The wrapped coroutine ``pending`` awaited for ``event``: ``finish(event, *facts, result)``
    when it returns, ``failed`` when it raises (``settle(event)`` first, when a fact is
    ``Settle``: a transaction learns its target late)."""
    try:
        result = await pending
    except BaseException as exc:
        if facts and isinstance(facts[0], Settle):
            facts[0](event)
        failed(event, exc)
        raise
    finish(event, *facts, result)
    return result


class Settle:
    """A fact for :func:`awaited` to apply to the event whether the call returns or raises."""

    __slots__ = ("apply", "subject")

    def __init__(self, apply: Callable[[Any, Any], None], subject: Any) -> None:
        self.apply = apply
        self.subject = subject

    def __call__(self, event: Any) -> None:
        self.apply(event, self.subject)


def _async_command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces or len(args) < 2:
        return wrapped(*args, **kwargs)
    event, name = _begin_command(traces, args[0], args[2:], kwargs)
    if event is None:
        return wrapped(*args, **kwargs)
    return awaited(event, wrapped(*args, **kwargs), _finish, name)


def _async_pipeline(op: str):
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or len(args) < 2:
            return wrapped(*args, **kwargs)
        event = _begin_pipeline(traces, op, args)
        if event is None:
            return wrapped(*args, **kwargs)
        return awaited(event, wrapped(*args, **kwargs), finish_batch)

    return wrapper


def _async_pipeline_reset(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    event = _begin_reset(traces, instance) if traces else None
    if event is None:
        return wrapped(*args, **kwargs)
    return awaited(event, wrapped(*args, **kwargs), _reset_done)


def _async_connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces or getattr(instance, "is_connected", False):
        return wrapped(*args, **kwargs)
    event = _begin(traces, instance, "connect", ())
    if event is None:
        return wrapped(*args, **kwargs)
    return awaited(event, wrapped(*args, **kwargs), _connected, instance)


def _async_pubsub_command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)
    event, name = _begin_pubsub(traces, instance, args)
    if event is None:
        return wrapped(*args, **kwargs)
    return awaited(event, wrapped(*args, **kwargs), _finish, name)


def _async_pubsub_message(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)

    async def read() -> Any:
        start_ns = perf_counter_ns()
        result = await wrapped(*args, **kwargs)
        if result is not None:
            _record_message(traces, instance, start_ns, result)
        return result

    return read()
