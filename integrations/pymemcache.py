"""pymemcache: every round trip of ``pymemcache.client.base.Client``.

PooledClient, HashClient and RetryingClient all end in the base Client, so one
event is one call to one server, and ``client.server`` names it. Wrapped: every
public I/O method of the base Client, and the aliases, which are separate class
attributes (``set_multi``, ``get_multi``, ``delete_multi``); and ``Client._connect``,
where the client opens its socket (on first use, and again after an error or a closed
connection), as a CONNECT event: a server that cannot be reached shows there.
"""

from __future__ import annotations

import importlib
from typing import Any

from ioprofiler import recorders
from ioprofiler.event import CACHE, CONNECT, CacheCall
from ioprofiler.patching import Patches
from ioprofiler.recording import active, begin, done, failed, perf_counter_ns, profiler_failed
from ioprofiler.targets import Service

# method -> how its keys are passed
#   "key":    the first argument is one key
#   "keys":   the first argument is an iterable of keys
#   "values": the first argument is a {key: value} mapping
#   "none":   no keys
WRITES: dict[str, str] = {
    "set": "key",
    "set_many": "values",
    "set_multi": "values",
    "add": "key",
    "replace": "key",
    "append": "key",
    "prepend": "key",
    "cas": "key",
    "delete": "key",
    "delete_many": "keys",
    "delete_multi": "keys",
    "incr": "key",
    "decr": "key",
    "touch": "key",
    "stats": "none",
    "cache_memlimit": "none",
    "version": "none",
    "raw_command": "command",
    "flush_all": "none",
    "quit": "none",
    "shutdown": "none",
}
READS = ("get", "gets", "get_many", "get_multi", "gets_many")
CANONICAL_OP = {"set_multi": "set_many", "get_multi": "get_many", "delete_multi": "delete_many"}
_IGNORED_ERROR = "error hidden by ignore_exc"
_NOT_FOUND = object()  # our own default for get/gets, so a stored falsy value is still a HIT

_patches = Patches()
# [memcache] while the process has used one server, [memcache 10.0.0.5:11211] once it has used more
MEMCACHE = Service("memcache", address="when_many", batch_read="get_many")
_targets = MEMCACHE.targets  # read before calling MEMCACHE.target(): a dict lookup, no call


def available() -> bool:
    try:
        importlib.import_module("pymemcache.client.base")
    except ImportError:
        return False
    return True


def install() -> bool:
    Client = base_client()
    for name in READS:
        _patches.wrap(Client, name, _READ_WRAPPERS[CANONICAL_OP.get(name, name)])
    for name, keys_shape in WRITES.items():
        _patches.wrap(Client, name, _write_wrapper(CANONICAL_OP.get(name, name), keys_shape))
    _patches.wrap(Client, "_connect", _connect)
    return bool(_patches)


def uninstall() -> None:
    _patches.unwrap_all()


def base_client() -> type:
    """pymemcache's own base ``Client`` class, even where another tool has put something
    else under its name (ddtrace puts a proxy class there; ``PooledClient`` and
    ``HashClient`` still make real ``Client`` objects, so that class is where to patch)."""
    from pymemcache.client import base

    for candidate in (base.Client, base.PooledClient.client_class):
        if (
            isinstance(candidate, type)
            and candidate.__module__ == base.__name__
            and candidate.__qualname__ == "Client"
        ):
            return candidate
    return base.Client


def _begin(traces: Any, op: str, client: Any, keys: tuple[Any, ...]):
    """begin() for a call to ``client``'s server, called by a wrapper; None if it failed."""
    try:
        server = client.server
        event = begin(traces, CACHE, op, _targets.get(server) or MEMCACHE.target(server))
        event.keys = keys
        return event
    except Exception as exc:
        profiler_failed(traces, exc)
        return None


def _single_read(op: str):
    """get(key, default=None) and gets(key, default=None, cas_default=None)."""

    def bind_get(key: Any, default: Any = None) -> tuple[Any, tuple[Any, ...]]:
        return key, (default,)

    def bind_gets(key: Any, default: Any = None, cas_default: Any = None):
        return key, (default, cas_default)

    bind = bind_get if op == "get" else bind_gets
    no_defaults = (None,) if op == "get" else (None, None)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces:
            return wrapped(*args, **kwargs)
        if len(args) == 1 and not kwargs:  # get(key): the usual call, bound without a call
            key, defaults = args[0], no_defaults
        else:
            try:
                key, defaults = bind(*args, **kwargs)
            except TypeError:
                return wrapped(*args, **kwargs)  # let the library raise its own error
        try:  # _begin(), without the call: this is the call most applications make most
            server = instance.server
            event = begin(traces, CACHE, op, _targets.get(server) or MEMCACHE.target(server), 2)
            event.keys = (key,)
        except Exception as exc:
            profiler_failed(traces, exc)
            return wrapped(*args, **kwargs)
        try:
            if op == "get":
                result = wrapped(key, _NOT_FOUND)
            else:
                result = wrapped(key, _NOT_FOUND, defaults[1])
        except BaseException as exc:
            failed(event, exc)
            raise
        event.end_ns = perf_counter_ns()
        if op == "get":
            found = result is not _NOT_FOUND
        else:
            found = not (isinstance(result, tuple) and result and result[0] is _NOT_FOUND)
        event.hit = found
        if not found:
            event.missed_keys = event.keys
            result = defaults[0] if op == "get" else defaults
            _note_hidden_error(event, instance)
        if event._overflow is not None:  # done(event), without the call when it does nothing
            done(event)
        return result

    return wrapper


def _multi_read(op: str):
    """get_many(keys) and gets_many(keys): hits are the keys returned."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces:
            return wrapped(*args, **kwargs)
        keys = args[0] if args else kwargs.get("keys")
        if keys is None or len(args) + len(kwargs) != 1:
            return wrapped(*args, **kwargs)
        recorded, passed = _read_keys(keys)
        if not recorded and passed is keys:
            return wrapped(passed)  # no round trip: the library returns {} at once
        event = _begin(traces, op, instance, recorded)
        if event is None:
            return wrapped(passed)
        try:
            result = wrapped(passed)
        except BaseException as exc:
            failed(event, exc)
            raise
        event.end_ns = perf_counter_ns()
        try:
            if len(result) < len(recorded):
                event.missed_keys = tuple(k for k in recorded if k not in result)
                if not result:
                    _note_hidden_error(event, instance)
            event.hit = not event.missed_keys
        except Exception as exc:
            profiler_failed(traces, exc)
        done(event)
        return result

    return wrapper


def _note_hidden_error(event: Any, client: Any) -> None:
    """With ignore_exc=True a failed read looks like a miss, but it closed the socket."""
    if getattr(client, "ignore_exc", False) and getattr(client, "sock", True) is None:
        event.error = _IGNORED_ERROR


def _read_keys(keys: Any) -> tuple[tuple[Any, ...], Any]:
    """(the keys to record, the keys to hand the library).

    An iterator is read here, once, and the library gets the same items again. An
    exception raised while reading it is the application's own and propagates, as it
    would from inside the library.
    """
    if iter(keys) is keys:
        recorded = tuple(keys)
        return recorded, iter(recorded)
    return tuple(keys), keys


def _write_keys(shape: str, args: Any, kwargs: Any) -> tuple[tuple[Any, ...], Any, Any, bool]:
    """(keys to record, args to pass, kwargs to pass, whether a round trip happens)."""
    if shape == "none":
        return (), args, kwargs, True
    if args:
        first = args[0]
    elif shape in kwargs:  # the first parameter is named for its shape: key, keys, values…
        first = kwargs[shape]
    else:
        return (), args, kwargs, True
    if shape in ("key", "command"):
        return (first,), args, kwargs, True
    recorded, passed = _read_keys(first)
    if passed is not first:
        if args:
            args = (passed,) + tuple(args[1:])
        else:
            kwargs = dict(kwargs, **{shape: passed})
    # set_many({}) and delete_many([]) return without asking the server anything.
    return recorded, args, kwargs, bool(recorded) or passed is not first


_WRITE_NOTES = {
    # (op, result) -> what the listing adds after the verb
    ("add", False): "not stored",
    ("replace", False): "not stored",
    ("append", False): "not stored",
    ("prepend", False): "not stored",
    ("cas", False): "exists",
    ("cas", None): "not found",
    ("delete", False): "not found",
    ("touch", False): "not found",
    ("incr", None): "not found",
    ("decr", None): "not found",
}


def _write_wrapper(op: str, shape: str):
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces:
            return wrapped(*args, **kwargs)
        keys, args, kwargs, round_trip = _write_keys(shape, args, kwargs)
        if not round_trip:
            return wrapped(*args, **kwargs)
        event = _begin(traces, op, instance, keys)
        if event is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        event.end_ns = perf_counter_ns()
        if op == "set_many" and result:
            event.note = f"{len(result)} not stored"
        else:
            try:
                note = _WRITE_NOTES.get((op, result))
            except TypeError:
                note = None
            if note is not None:
                event.note = note
        if event._overflow is not None:  # done(event), without the call when it does nothing
            done(event)
        return result

    return wrapper


_READ_WRAPPERS = {
    # get compiled (ioprofiler/_recorders.c), this module's wrapper its reference
    "get": recorders.cache_get(
        _single_read("get"),
        kind=CACHE,
        op="get",
        event_class=CacheCall,
        targets=_targets,
        target=MEMCACHE.target,
        not_found=_NOT_FOUND,
        ignored_error=_IGNORED_ERROR,
    ),
    "gets": _single_read("gets"),
    "get_many": _multi_read("get_many"),
    "gets_many": _multi_read("gets_many"),
}


def _connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Client._connect()``: a new socket to the server, made inside the call that needs it
    (its time is also part of that call's)."""
    traces = active.get()
    if not traces:
        return wrapped(*args, **kwargs)
    event = _begin(traces, CONNECT, instance, ())
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    event.end_ns = perf_counter_ns()
    done(event)
    return result
