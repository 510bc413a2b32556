"""redis-py, sync and asyncio: one event per round trip to a Redis server.

Wrapped where a round trip happens with the connection in hand, so the target names the
server that answered (``[redis 10.0.0.5:6379/0]``), whichever client chose it (a plain
``Redis``, one from a ``Sentinel``, a pipeline in ``WATCH`` mode):

- ``Redis._send_command_parse_response``: one command, sent and its reply read; called
  once per attempt, so a retried command is one event per attempt. Blocking commands
  (``BLPOP``…) are timed as they are, waiting included.
- ``Pipeline._execute_pipeline`` and ``_execute_transaction``: a pipeline (or a
  ``MULTI``/``EXEC`` transaction) is one round trip, one event listing its commands.
- ``AbstractConnection.connect`` when it opens a connection (its handshake included), as a
  ``connect`` event: a server that cannot be reached shows there.
- ``PubSub.execute_command`` (``SUBSCRIBE``…) and ``PubSub.parse_response`` when it hands
  back a message.

Reads (``GET``, ``MGET``, ``HGET``, ``HMGET``, ``EXISTS``) report hits and misses per key
(per field for hashes) like memcache. Only keys are kept: never values, never the
arguments of commands whose key positions are not known here (``AUTH``…).
"""

from __future__ import annotations

from typing import Any

from ioprofiler.event import CACHE
from ioprofiler.patching import Patches
from ioprofiler.recording import active, begin, done, failed, perf_counter_ns, profiler_failed
from ioprofiler.registry import importable
from ioprofiler.targets import Service, format_server

_patches = Patches()


def _address_text(address: Any) -> str:
    """``("10.0.0.5", 6379, 0)`` -> ``10.0.0.5:6379/0``."""
    *server, db = address
    return f"{format_server(tuple(server) if len(server) == 2 else server[0])}/{db}"


REDIS = Service("redis", describe=_address_text, batch_read="MGET")

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


class _Unnamed:
    """A key missed by a multi-key EXISTS: the reply counts them without naming them."""

    def __str__(self) -> str:
        return "?"


_UNNAMED = _Unnamed()


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
    _patches.wrap(sync_connection.AbstractConnection, "connect", _connect)
    _patches.wrap(sync.Redis, "_send_command_parse_response", _command)
    _patches.wrap(sync.Pipeline, "_execute_pipeline", _pipeline("pipeline"))
    _patches.wrap(sync.Pipeline, "_execute_transaction", _pipeline("transaction"))
    _patches.wrap(sync.PubSub, "execute_command", _pubsub_command)
    _patches.wrap(sync.PubSub, "parse_response", _pubsub_message)
    if asynchronous is not None:
        _patches.wrap(async_connection.AbstractConnection, "connect", _async_connect)
        _patches.wrap(asynchronous.Redis, "_send_command_parse_response", _async_command)
        _patches.wrap(asynchronous.Pipeline, "_execute_pipeline", _async_pipeline("pipeline"))
        _patches.wrap(asynchronous.Pipeline, "_execute_transaction", _async_pipeline("transaction"))
        _patches.wrap(asynchronous.PubSub, "execute_command", _async_pubsub_command)
        _patches.wrap(asynchronous.PubSub, "parse_response", _async_pubsub_message)
    return bool(_patches)


def uninstall() -> None:
    _patches.unwrap_all()


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
    server = (path,) if path else (connection.host, connection.port)
    return REDIS.target((*server, connection.db))


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
    """An event for one command: ``args`` starts with its name."""
    try:
        name = _name(args)
        keys = command_keys(name, args[1:], options)
    except Exception as exc:
        profiler_failed(traces, exc)
        return None, ""
    return _begin(traces, connection, name.lower(), keys), name


def _read_outcome(event: Any, name: str, result: Any) -> None:
    """Hits and misses of a read, from its reply."""
    if name in ("GET", "HGET"):
        event.hit = result is not None
        event.missed_keys = () if event.hit else event.keys
    elif name in ("MGET", "HMGET"):
        event.missed_keys = tuple(k for k, v in zip(event.keys, result, strict=False) if v is None)
        event.hit = not event.missed_keys
    elif name == "EXISTS" and isinstance(result, int):
        missing = max(len(event.keys) - result, 0)
        unnamed = (_UNNAMED,) * missing
        event.missed_keys = event.keys if len(event.keys) == 1 and missing else unnamed
        event.hit = not missing


def _finish(event: Any, name: str, result: Any) -> None:
    event.end_ns = perf_counter_ns()
    if name in _READS:
        try:
            _read_outcome(event, name, result)
        except Exception as exc:
            profiler_failed(event._traces or (), exc)
    done(event)


def _pipeline_facts(event: Any, commands: Any) -> None:
    """The commands as (name, keys) pairs, and every key, on the pipeline's event."""
    listed = []
    keys: list[Any] = []
    for args, options in commands:
        name = _name(args)
        these = command_keys(name, args[1:], options)
        listed.append((name, these))
        keys.extend(these)
    event.params = tuple(listed)
    event.keys = tuple(keys)


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
            _pipeline_facts(event, args[1])
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
        _finish(event, "", result)
        return result

    return wrapper


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
    _finish(event, "", result)
    return result


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


async def _awaited(event: Any, name: str, pending: Any) -> Any:
    try:
        result = await pending
    except BaseException as exc:
        failed(event, exc)
        raise
    _finish(event, name, result)
    return result


def _async_command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces or len(args) < 2:
        return wrapped(*args, **kwargs)
    event, name = _begin_command(traces, args[0], args[2:], kwargs)
    if event is None:
        return wrapped(*args, **kwargs)
    return _awaited(event, name, wrapped(*args, **kwargs))


def _async_pipeline(op: str):
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or len(args) < 2:
            return wrapped(*args, **kwargs)
        event = _begin_pipeline(traces, op, args)
        if event is None:
            return wrapped(*args, **kwargs)
        return _awaited(event, "", wrapped(*args, **kwargs))

    return wrapper


def _async_connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces or getattr(instance, "is_connected", False):
        return wrapped(*args, **kwargs)
    event = _begin(traces, instance, "connect", ())
    if event is None:
        return wrapped(*args, **kwargs)
    return _awaited(event, "", wrapped(*args, **kwargs))


def _async_pubsub_command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)
    event, name = _begin_pubsub(traces, instance, args)
    if event is None:
        return wrapped(*args, **kwargs)
    return _awaited(event, name, wrapped(*args, **kwargs))


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
