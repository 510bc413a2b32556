"""Where the recording time goes, measured two ways.

1. In the real calls, paired like every other configuration (:func:`ablations`): a bare
   pass-through wrapper on the same methods with a trace open, patched as ioprofiler patches
   them (a MethodPatch where it is built, else wrapt: the floor of any wrapper that runs
   Python code), and ioprofiler recording with the callsite lookup
   switched off. Against raw and full recording these split the recorded call's cost into
   the wrapper, the callsite lookup, and everything else (event object, clocks, trace
   append, parameter snapshot, the wrapper's own code). When the compiled lookup
   (ioprofiler._speedups) is in use, recording with the pure-Python lookup runs in the same
   rounds, so the two lookups are compared paired.

2. Step by step (:func:`sql_breakdown`, :func:`cache_breakdown`): a probe (a wrapt wrapper
   standing where ioprofiler's stands) catches one real call: SQLAlchemy's
   ``DefaultDialect.do_execute`` called by ``Connection.execute``, or pymemcache's
   ``Client.get``. Inside it, with the real stack above and a trace open, each step runs
   many times in a tight loop. A loop keeps the caches warm and the frames above already
   materialized, so these are lower bounds: a real call pays for cold caches, and for the
   frame objects the callsite walk creates (CPython makes them on demand, once per call).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
from collections.abc import Callable, Iterator
from time import perf_counter_ns
from typing import Any

import wrapt
from ioprofiler.integrations import sqlalchemy as sqlalchemy_integration

from ioprofiler import callsite, patching, recorders, recording
from ioprofiler.event import CACHE, DB, new_event
from ioprofiler.trace import active
from ioprofiler.values import snapshot

Step = Callable[[], object]


def ablations(
    recording_config: Callable[[], Any], installed_config: Callable[[], Any]
) -> dict[str, Callable[[], Any]]:
    """Configurations that take the recording path apart in the real calls.

    ``recording_config``, ``installed_config``: the benchmark's full recording and idle
    configurations.
    """
    from pymemcache.client.base import Client
    from sqlalchemy.engine.default import DefaultDialect

    import ioprofiler

    def pass_through(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    @contextlib.contextmanager
    def bare_wrapper() -> Iterator[None]:
        ioprofiler.uninstall()
        originals = [(Client, "get"), (DefaultDialect, "do_execute")]
        for owner, name in originals:  # the kind of patch ioprofiler uses there
            wrapper = patching._patch(owner, owner.__dict__[name], pass_through, active.get)
            setattr(owner, name, wrapper)
        try:
            with ioprofiler.profile():
                yield
        finally:
            for owner, name in originals:
                setattr(owner, name, owner.__dict__[name].__wrapped__)

    @contextlib.contextmanager
    def without_callsite() -> Iterator[None]:
        find = callsite.find
        callsite.find = lambda depth: None
        try:
            with recording_config():
                yield
        finally:
            callsite.find = find

    @contextlib.contextmanager
    def pure_callsite() -> Iterator[None]:
        find = callsite.find
        callsite.find = callsite._find_pure
        try:
            with recording_config():
                yield
        finally:
            callsite.find = find

    @contextlib.contextmanager
    def pure_begin() -> Iterator[None]:
        """The Python wrappers (the recorders hold the begin they were made with) calling the
        pure-Python begin."""
        from ioprofiler.integrations import pymemcache, sqlalchemy

        users = (recording, pymemcache, sqlalchemy)  # begin, as each imported it
        compiled = [user.begin for user in users]
        for user in users:
            user.begin = recording.begin_pure
        try:
            with python_wrappers(recording_config)():
                yield
        finally:
            for user, begin in zip(users, compiled, strict=True):
                user.begin = begin

    def switched_off(module: Any, flag: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
        """``config`` installed with ``module.flag`` False (read by Patches.wrap at install)."""

        def with_flag_off(config: Callable[[], Any]) -> Callable[[], Any]:
            @contextlib.contextmanager
            def flag_off() -> Iterator[None]:
                setattr(module, flag, False)
                try:
                    with config():
                        yield
                finally:
                    setattr(module, flag, True)

            return flag_off

        return with_flag_off

    python_wrappers = switched_off(recorders, "compiled_recorders")
    with_wrapt_patches = switched_off(patching, "compiled_patches")

    configs = {"wrapper only": bare_wrapper, "no callsite": without_callsite}
    if callsite.accelerated:  # the same rounds measure the lookup compiled and pure
        configs["pure callsite"] = pure_callsite
    if recording.compiled_begin:  # and begin compiled and pure
        configs["pure begin"] = pure_begin
    if recorders.compiled_recorders:  # and the get and statement wrappers compiled and Python
        configs["python wrappers"] = python_wrappers(recording_config)
    if patching.compiled_patches:  # and the patched methods as MethodPatch and as wrapt's
        configs["idle, wrapt patches"] = with_wrapt_patches(installed_config)
        configs["wrapt patches"] = with_wrapt_patches(recording_config)
    return configs


def _ns_per_call(step: Step, n: int, repeats: int = 5) -> float:
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeats):
            start = perf_counter_ns()
            for _ in range(n):
                step()
            best = min(best, (perf_counter_ns() - start) / n)
    finally:
        gc.enable()
    return best


def _time_steps(steps: dict[str, Step], n: int) -> dict[str, float]:
    """ns per step, less the cost of the timing loop's own call of a no-op."""

    def nothing() -> None:
        return None

    floor = _ns_per_call(nothing, n)
    return {name: max(0.0, _ns_per_call(step, n) - floor) for name, step in steps.items()}


def _callsite_step(find: Callable[[int], object]) -> Step:
    # find() is called by _ns_per_call (through a partial, which has no frame), called
    # by _time_steps, called by the probe: the probe's caller, the library frame that
    # called the wrapped method, is where ioprofiler's own lookup starts too.
    return functools.partial(find, 3)


def _trace_steps(kind: str, op: str, target: Any) -> dict[str, Step]:
    traces = active.get()
    origin = traces[-1].start_ns

    def append_and_done() -> None:
        event = new_event(kind, op, target, origin)
        for trace in traces:
            if trace._open and len(trace._events) < trace.max_events:
                trace._events.append(event)
        recording.done(event)

    steps = {
        "trace lookup (ContextVar.get)": active.get,
        "event object": lambda: new_event(kind, op, target, origin),
        "callsite lookup": _callsite_step(callsite.find),
        "clock reads (2)": lambda: (perf_counter_ns(), perf_counter_ns()),
        "trace append + done (event object incl.)": append_and_done,
    }
    if callsite.accelerated:
        steps["callsite lookup (pure Python)"] = _callsite_step(callsite._find_pure)
    if recording.compiled_begin:
        begin = recording.begin
        # the whole of begin, as a wrapper calls it (one frame nearer the library frame)
        steps["begin, compiled (event, callsite, append, clock)"] = functools.partial(
            begin, traces, kind, op, target, 2
        )
        steps["begin, pure Python"] = functools.partial(
            recording.begin_pure, traces, kind, op, target, 3
        )
    return steps


def _sql_steps(instance: Any, args: tuple[Any, ...]) -> dict[str, Step]:
    steps = _trace_steps(DB, "execute", "dbshard01")
    guard = getattr(sqlalchemy_integration, "_recording_statement", None)
    if guard is not None:

        def reentry_guard() -> None:
            guard.get()
            guard.reset(guard.set(True))

        steps["re-entry guard (dialect overrides only)"] = reentry_guard
    parameters = args[2]
    steps["parameter snapshot"] = lambda: snapshot(parameters)
    target = sqlalchemy_integration._target
    context = args[3]
    steps["shard name"] = lambda: target(instance, context)
    return steps


def _cache_steps(instance: Any, args: tuple[Any, ...]) -> dict[str, Step]:
    steps = _trace_steps(CACHE, "get", instance.server)
    key = args[0]
    steps["keys tuple"] = lambda: (key,)
    return steps


def _probe(
    owner: type, name: str, make_steps: Callable[..., dict[str, Step]], n: int
) -> tuple[Callable[[], None], dict[str, float]]:
    """Put a probe on ``owner.name`` (ioprofiler must not be installed); the returned
    function takes it off. The first call through it fills the returned dict."""
    original = owner.__dict__[name]
    found: dict[str, float] = {}

    def probe(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not found:
            found.update(_time_steps(make_steps(instance, args), n))
        return wrapped(*args, **kwargs)

    setattr(owner, name, wrapt.FunctionWrapper(original, probe))

    def remove() -> None:
        setattr(owner, name, original)

    return remove, found


def sql_breakdown(execute: Callable[[], object], n: int = 20_000) -> dict[str, float]:
    """ns per step of recording one SQLAlchemy statement; ``execute`` runs one."""
    from sqlalchemy.engine.default import DefaultDialect

    import ioprofiler

    ioprofiler.uninstall()
    remove, found = _probe(DefaultDialect, "do_execute", _sql_steps, n)
    try:
        with ioprofiler.profile(max_events=sys.maxsize):
            execute()
    finally:
        remove()
    return found


def cache_breakdown(get: Callable[[], object], n: int = 20_000) -> dict[str, float]:
    """ns per step of recording one memcached get; ``get`` makes one."""
    from pymemcache.client.base import Client

    import ioprofiler

    ioprofiler.uninstall()
    remove, found = _probe(Client, "get", _cache_steps, n)
    try:
        with ioprofiler.profile(max_events=sys.maxsize):
            get()
    finally:
        remove()
    return found
