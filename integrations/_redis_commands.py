"""What the redis-py integration's two halves share: a command's keys, its event, its reply.

``redis.py`` (plain clients, pipelines, pub/sub) and ``_redis_cluster.py`` (``RedisCluster``)
both import from here, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ioprofiler.event import CACHE
from ioprofiler.recording import active, begin, done, failed, perf_counter_ns, profiler_failed
from ioprofiler.targets import Service, format_server


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
