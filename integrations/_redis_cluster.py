"""redis-py's ``RedisCluster``, sync and asyncio: one event per round trip to each node.

Part of the redis-py integration (``integrations/redis.py`` installs these). The target names
the node that answered (``[redis 127.0.0.1:7001/0]``); a ``MOVED``/``ASK`` redirect, the
``ASKING`` before a retried command and each retry are round trips of their own; a cluster
pipeline is one event per node it wrote to, listing that node's commands. Wrapped:

- sync: ``RedisCluster._execute_command`` marks a command in flight (its retry loop runs
  inside); ``redis.cluster.get_connection`` starts each attempt's clock with the connection
  in hand and the node client's ``parse_response`` ends it, only for that connection (a round
  trip made meanwhile by the cluster's own refresh is recorded as the plain command it is).
  ``parse_response`` is wrapped on the cluster's node clients only, as an attribute of each
  when a recorded command first uses it: a plain ``Redis`` client never pays for it;
  ``NodeCommands.write``/``read``: one node's share of a pipeline; the transaction strategy's
  ``_execute_transaction`` (``MULTI``…``EXEC`` on the slot's node) and
  ``_send_command_parse_response`` (commands after ``WATCH``).
- asyncio: ``ClusterNode.execute_command`` and ``execute_pipeline`` (each node's own round
  trip), the transaction strategy's ``_execute_transaction`` and ``_send_command_parse_response``.
"""

from __future__ import annotations

import contextvars
import weakref
from typing import Any

from ioprofiler.integrations._redis_commands import (
    REDIS,
    Settle,
    _begin,
    _begin_command,
    _finish,
    _target,
    awaited,
    batch_facts,
    finish_batch,
)

from ioprofiler.patching import Patches
from ioprofiler.recording import active, failed, perf_counter_ns, profiler_failed


class _InFlight:
    """A sync cluster command whose attempts are being recorded."""

    __slots__ = ("args", "options", "connection", "start_ns")

    def __init__(self, args: Any, options: Any) -> None:
        self.args = args
        self.options = options
        self.connection: Any = None
        self.start_ns = 0


_in_flight: contextvars.ContextVar[_InFlight | None] = contextvars.ContextVar(
    "ioprofiler_redis_cluster_command", default=None
)
_written: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_hooked_nodes: weakref.WeakSet[Any] = weakref.WeakSet()  # node clients with a reply hook


def install(patches: Patches) -> None:
    """Wrap what the installed redis-py has of the cluster's round trips."""
    try:
        import redis.cluster as cluster
    except ImportError:  # pragma: no cover - redis-py without cluster support
        return
    patches.wrap(cluster.RedisCluster, "_execute_command", _command)
    patches.wrap(cluster, "get_connection", _attempt_connection)
    patches.wrap(cluster.NodeCommands, "write", _node_write)
    patches.wrap(cluster.NodeCommands, "read", _node_read)
    strategy = getattr(cluster, "TransactionStrategy", None)
    if strategy is not None:
        patches.wrap(strategy, "_execute_transaction", _transaction)
        patches.wrap(strategy, "_send_command_parse_response", _watched)
    try:
        import redis.asyncio.cluster as acluster
    except ImportError:  # pragma: no cover
        return
    patches.wrap(acluster.ClusterNode, "execute_command", _async_node_command)
    patches.wrap(acluster.ClusterNode, "execute_pipeline", _async_node_pipeline)
    strategy = getattr(acluster, "TransactionStrategy", None)
    if strategy is not None:
        patches.wrap(strategy, "_execute_transaction", _async_transaction)
        patches.wrap(strategy, "_send_command_parse_response", _async_watched)


# -- sync: one command, each attempt ---------------------------------------------------


def uninstall() -> None:
    """Take the reply hooks off the node clients that got one."""
    for node in list(_hooked_nodes):
        vars(node).pop("parse_response", None)
    _hooked_nodes.clear()


def _command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``_execute_command(target_node, *args, **kwargs)``: its attempts are recorded."""
    if not active.get():
        return wrapped(*args, **kwargs)
    token = _in_flight.set(_InFlight(args[1:], kwargs))
    try:
        return wrapped(*args, **kwargs)
    finally:
        _in_flight.reset(token)


def _attempt_connection(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``get_connection(redis_node)``: an attempt starts with this connection."""
    connection = wrapped(*args, **kwargs)
    flight = _in_flight.get()
    if flight is not None:
        try:
            node = args[0] if args else kwargs["redis_node"]
            if "parse_response" not in vars(node):
                _hook_replies(node)
        except Exception as exc:
            profiler_failed(active.get(), exc)
        flight.connection = connection
        flight.start_ns = perf_counter_ns()
    return connection


def _hook_replies(node: Any) -> None:
    """Wrap one node client's ``parse_response`` (an attribute of its own, taken off by
    ``uninstall``), so an attempt's reply ends its event."""
    cls = type(node)

    def parse_response(*args: Any, **kwargs: Any) -> Any:
        # the class's method as it is now: a patch another tool makes later still runs
        return _attempt_reply(cls.parse_response.__get__(node, cls), node, args, kwargs)

    node.parse_response = parse_response
    _hooked_nodes.add(node)


def _attempt_reply(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """A node client's ``parse_response(connection, command_name, **options)``: an
    attempt's reply."""
    flight = _in_flight.get()
    if flight is None or not args or args[0] is not flight.connection:
        return wrapped(*args, **kwargs)
    traces = active.get()
    asking = len(args) > 1 and args[1] == "ASKING"
    sent = ("ASKING",) if asking else flight.args
    event, name = _begin_command(traces, flight.connection, sent, {} if asking else flight.options)
    if event is None:
        return wrapped(*args, **kwargs)
    event.start_ns = flight.start_ns
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        flight.start_ns = event.end_ns
        raise
    _finish(event, name, result)
    flight.start_ns = event.end_ns
    return result


def _watched(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``_send_command_parse_response(conn, redis_node, command_name, *args, **options)``."""
    if len(args) < 4:
        return wrapped(*args, **kwargs)
    event, name = _begin_command(active.get(), args[0], args[3:], kwargs)
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    _finish(event, name, result)
    return result


# -- sync: pipelines and transactions ----------------------------------------------------


def _node_write(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``NodeCommands.write()``: one node's commands sent; its round trip starts."""
    event = _begin_batch(active.get(), instance.connection, "pipeline", instance.commands)
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    _written[instance] = event
    return result


def _node_read(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``NodeCommands.read()``: that node's replies read; its round trip ends."""
    event = _written.pop(instance, None)
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    _finish_node_batch(event, instance.commands)
    return result


def _begin_batch(traces: Any, connection: Any, op: str, commands: Any):
    """A batch's event on ``connection`` (None: not recorded); ``commands`` have ``args`` and
    ``options`` (sync) or ``kwargs`` (asyncio)."""
    if not traces:
        return None
    event = _begin(traces, connection, op, ())
    if event is not None:
        try:
            batch_facts(event, [(c.args, _options(c)) for c in commands])
        except Exception as exc:
            profiler_failed(traces, exc)
    return event


def _options(command: Any) -> Any:
    options = getattr(command, "options", None)
    return options if options is not None else getattr(command, "kwargs", None)


def _finish_node_batch(event: Any, commands: Any, result: Any = None) -> None:
    """The replies are on the commands. An error reply (``MOVED``: the client then retries
    that command on its own) or a lost connection is the batch's error."""
    results = [c.result for c in commands]
    error = next((r for r in results if isinstance(r, BaseException)), None)
    if error is not None:
        failed(event, error)
    else:
        finish_batch(event, results)


def _transaction(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``_execute_transaction(stack, raise_on_error)``: ``MULTI``…``EXEC`` on one node."""
    event = _begin_transaction(instance, args)
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _retarget(event, instance)
        failed(event, exc)
        raise
    _retarget(event, instance)
    finish_batch(event, result)
    return result


def _begin_transaction(strategy: Any, args: Any):
    """The event starts before the strategy picks its connection: named when it has."""
    traces = active.get()
    if not args or not traces:
        return None
    event = _begin_batch(traces, _Unknown, "transaction", args[0])
    return event


class _Unknown:
    """A connection not chosen yet."""

    path = None
    host = "?"
    port = "?"
    db = 0


def _retarget(event: Any, strategy: Any) -> None:
    connection = getattr(strategy, "_transaction_connection", None)
    if connection is not None:
        try:
            event._target = _target(connection)
        except Exception as exc:
            profiler_failed(active.get() or (), exc)


# -- asyncio -------------------------------------------------------------------------------


def _node_target(node: Any) -> Any:
    return REDIS.target((node.host, node.port, 0))  # a cluster has database 0 only


def _async_node_command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``ClusterNode.execute_command(*args, asking=False, **kwargs)``: one round trip."""
    traces = active.get()
    event, name = _begin_command(traces, _NodeAddress(instance), args, kwargs)
    if event is None:
        return wrapped(*args, **kwargs)
    return awaited(event, wrapped(*args, **kwargs), _finish, name)


class _NodeAddress:
    """A ClusterNode read as a connection (its host and port; database 0)."""

    __slots__ = ("path", "host", "port", "db")

    def __init__(self, node: Any) -> None:
        self.path = None
        self.host = node.host
        self.port = node.port
        self.db = 0


def _async_node_pipeline(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``ClusterNode.execute_pipeline(commands)``: one node's share of a pipeline."""
    if not args:
        return wrapped(*args, **kwargs)
    event = _begin_batch(active.get(), _NodeAddress(instance), "pipeline", args[0])
    if event is None:
        return wrapped(*args, **kwargs)
    return awaited(event, wrapped(*args, **kwargs), _finish_node_batch, args[0])


def _async_transaction(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    event = _begin_transaction(instance, args)
    if event is None:
        return wrapped(*args, **kwargs)
    settle = Settle(_retarget, instance)
    return awaited(event, wrapped(*args, **kwargs), _finish_transaction, settle)


def _finish_transaction(event: Any, settle: Settle, result: Any) -> None:
    settle(event)
    finish_batch(event, result)


def _async_watched(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if len(args) < 4:
        return wrapped(*args, **kwargs)
    event, name = _begin_command(active.get(), args[0], args[3:], kwargs)
    if event is None:
        return wrapped(*args, **kwargs)
    return awaited(event, wrapped(*args, **kwargs), _finish, name)
