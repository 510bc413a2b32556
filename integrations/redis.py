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

from contextvars import ContextVar
from typing import Any

from ioprofiler.integrations import _redis_cluster
from ioprofiler.integrations._redis_commands import (
    _begin,
    _begin_command,
    _finish,
    _name,
    _target,
    awaited,
    batch_facts,
    finish_batch,
)

from ioprofiler.event import RESET
from ioprofiler.patching import Patches
from ioprofiler.recording import active, done, failed, perf_counter_ns, profiler_failed
from ioprofiler.registry import importable

_patches = Patches()
# True in a context once a pipeline there has entered WATCH mode with a trace open: only then
# does Pipeline.reset() run our wrapper (for the UNWATCH it may send).
_watched: ContextVar[bool] = ContextVar("ioprofiler_redis_watched", default=False)


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
    _redis_cluster.install(_patches)
    return bool(_patches)


def _connect_method(module: Any) -> str:
    """Where a connection opens: ``connect_check_health`` from redis-py 6 (``connect()`` calls
    it; a ``Sentinel``'s connection and the asyncio client's lazy connect call it directly)."""
    defined = vars(module.AbstractConnection)
    return "connect_check_health" if "connect_check_health" in defined else "connect"


def uninstall() -> None:
    _patches.unwrap_all()
    _redis_cluster.uninstall()


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
