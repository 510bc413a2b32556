"""The context-local trace: an append-only, bounded record of one block's I/O.

>>> with ioprofiler.profile() as trace:
...     handle_request()
>>> trace.count(kind="db", target="dbshard01")
3
>>> print(trace.text())
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any, TypeVar

from ioprofiler import config
from ioprofiler.event import CACHE, CONNECTION_OPS, Event
from ioprofiler.targets import target_matches
from ioprofiler.words import counted

log = logging.getLogger("ioprofiler")

# The traces open in this context, innermost last. A tuple, so that reading it on
# the hot path is one ContextVar.get and an empty tuple is the "not recording" case.
active: ContextVar[tuple[Trace, ...]] = ContextVar("ioprofiler_traces", default=())

F = TypeVar("F", bound=Callable[..., Any])


class _Tally:
    """Calls past ``max_events``: not kept one by one, still counted per target."""

    __slots__ = ("calls", "ns", "hits", "misses", "errors")

    def __init__(self) -> None:
        self.calls = self.ns = self.hits = self.misses = self.errors = 0


class Trace:
    """The I/O recorded while the trace was open, in start order.

    Open one with :func:`ioprofiler.profile`. Events are recorded in every trace
    open in the calling context, so a test's trace also sees the I/O of a request
    that the middleware profiles inside it.
    """

    # Slots for what every recorded call reads (ioprofiler.recording.begin); __dict__ and
    # __weakref__ keep a trace open to attributes of its own and to weak references.
    __slots__ = (
        "max_events",
        "name",
        "start_ns",
        "end_ns",
        "profiler_errors",
        "_events",
        "_open",
        "_used",
        "_overflow",
        "__dict__",
        "__weakref__",
    )

    def __init__(self, max_events: int | None = None, name: str | None = None) -> None:
        self.max_events = (
            config.settings.max_events
            if max_events is None
            else config.check_max_events(max_events)
        )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"a trace's name must be a string, not {name!r}")
        self.name = name
        self.start_ns = 0
        self.end_ns: int | None = None
        self.profiler_errors = 0
        self._events: list[Event] = []
        self._open = False
        self._used = False
        self._overflow: dict[tuple[str, Any, str], _Tally] = {}

    # Guards every trace's _overflow: one lock for all, not one made with every trace (held
    # only past max_events, and while a reader copies the tallies).
    _lock = threading.Lock()

    # -- opening and closing ---------------------------------------------------------

    def __enter__(self) -> Trace:
        self.start()
        active.set(active.get() + (self,))
        return self

    def start(self) -> Trace:
        """Start the clock without recording anywhere yet; see :meth:`call`."""
        if self._used:
            raise RuntimeError("a Trace records once; open a new one with ioprofiler.profile()")
        self._used = True
        self.start_ns = perf_counter_ns()
        self._open = True
        return self

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` with this trace recording in the current context, and only during
        the call: the caller's context is otherwise left exactly as the call left it.

        For code that hands control back and forth, like a WSGI middleware iterating a body.
        """
        before = active.get()
        mine = before + (self,)
        active.set(mine)
        try:
            return fn(*args)
        finally:
            if active.get() is mine and self not in before:
                active.set(before)  # the usual case: nothing else changed, and once
            else:
                leave(self)

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Trace:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop recording. Called by the ``with`` block; safe to call twice."""
        if not self._open:
            return
        self._open = False
        self.end_ns = perf_counter_ns()
        # Not ContextVar.reset: traces may close out of order, or from another context
        # (a callback, a body finished elsewhere); take out this trace and no other.
        traces = active.get()
        if self in traces:
            active.set(tuple(t for t in traces if t is not self))

    @property
    def recording(self) -> bool:
        return self._open

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the calls made inside the block out of this trace.

        >>> with trace.paused():
        ...     warm_up_the_cache()        # not counted
        """
        before = active.get()
        without = tuple(t for t in before if t is not self)
        active.set(without)
        try:
            yield
        finally:
            if active.get() == without:
                active.set(before)

    # -- reading -----------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """The kept events, in the order the calls started."""
        return list(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(list(self._events))

    def __len__(self) -> int:
        return len(self._events)

    def __bool__(self) -> bool:
        return True  # a trace that has recorded nothing yet is still a trace

    def _overflow_items(self) -> list[tuple[tuple[str, Any, str], _Tally]]:
        with self._lock:
            return list(self._overflow.items())

    @property
    def dropped(self) -> int:
        """Calls that were counted but not kept, because of ``max_events``."""
        return sum(t.calls for _, t in self._overflow_items())

    @property
    def elapsed_ms(self) -> float:
        """How long the trace has been (or was) open."""
        end = self.end_ns if self.end_ns is not None else perf_counter_ns()
        return (end - self.start_ns) / 1e6

    def offset_ms(self, event: Event) -> float:
        """When ``event`` started, in milliseconds from the start of this trace."""
        return (event.start_ns - self.start_ns) / 1e6

    def count(
        self, kind: str | None = None, target: str | None = None, op: str | None = None
    ) -> int:
        """Calls made, kept or not. ``kind`` is "db", "cache" or "http"; ``target`` a shard
        or server name (a service's name, like "memcache", matches each of its servers).

        Without ``op`` only the application's calls count (statements, cache commands);
        connects, pool waits, commits and rollbacks count when ``op`` names them:
        ``trace.count(kind="db", op="commit")``.
        """
        total = sum(1 for e in self._events if _matches(e.kind, e.target, e.op, kind, target, op))
        for (k, raw, o), tally in self._overflow_items():
            if _matches(k, str(raw), o, kind, target, op):
                total += tally.calls
        return total

    def duration_ms(
        self, kind: str | None = None, target: str | None = None, op: str | None = None
    ) -> float:
        """Time spent in finished calls, filtered like :meth:`count`."""
        ns = sum(
            e.end_ns - e.start_ns
            for e in self._events
            if e.end_ns is not None and _matches(e.kind, e.target, e.op, kind, target, op)
        )
        for (k, raw, o), tally in self._overflow_items():
            if _matches(k, str(raw), o, kind, target, op):
                ns += tally.ns
        return ns / 1e6

    def cache_hits(self, target: str | None = None) -> int:
        """Keys found by cache reads."""
        hits = sum(
            e.hit_count or 0
            for e in self._events
            if _matches(e.kind, e.target, e.op, CACHE, target)
        )
        return hits + sum(
            t.hits
            for (k, raw, o), t in self._overflow_items()
            if _matches(k, str(raw), o, CACHE, target)
        )

    def cache_misses(self, target: str | None = None) -> int:
        """Keys not found by cache reads."""
        misses = sum(
            e.miss_count or 0
            for e in self._events
            if _matches(e.kind, e.target, e.op, CACHE, target)
        )
        return misses + sum(
            t.misses
            for (k, raw, o), t in self._overflow_items()
            if _matches(k, str(raw), o, CACHE, target)
        )

    def overflow(self) -> dict[tuple[str, str, str], tuple[int, float, int, int, int]]:
        """Per (kind, target, op): (calls, ms, hits, misses, errors) of the calls not kept."""
        totals: dict[tuple[str, str, str], list[float]] = {}
        for (k, raw, o), t in self._overflow_items():
            total = totals.setdefault((k, str(raw), o), [0, 0, 0, 0, 0])
            for i, value in enumerate((t.calls, t.ns / 1e6, t.hits, t.misses, t.errors)):
                total[i] += value
        return {
            key: (int(c), ms, int(h), int(m), int(e)) for key, (c, ms, h, m, e) in totals.items()
        }

    def text(self, callsites: bool = False) -> str:
        """The listing: one line per call in start order, then a summary.

        ``callsites=True`` ends each line with the application frame that made the call.
        """
        from ioprofiler.render.text import listing

        return listing(self, callsites=callsites)

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        """``rich.print(trace)``: the listing with a colour per target."""
        from ioprofiler.render.console import trace_renderables

        yield from trace_renderables(self)

    def __repr__(self) -> str:
        state = "recording" if self._open else "closed"
        return f"<Trace {state}, {counted(self.count(), 'call')}>"

    # -- recording (used by the integrations through ioprofiler.recording) -------------

    def _tally(self, event: Event) -> None:
        with self._lock:
            key = (event.kind, event._target, event.op)
            tally = self._overflow.get(key)
            if tally is None:
                tally = self._overflow[key] = _Tally()
            tally.calls += 1
            if event.end_ns is not None:
                tally.ns += event.end_ns - event.start_ns
            if event.hit is not None:
                tally.misses += event.miss_count or 0
                tally.hits += event.hit_count or 0
            if event.error is not None:
                tally.errors += 1


def _new_lock_after_fork() -> None:
    """A child forked while another thread held the traces' lock gets a free one."""
    Trace._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def leave(trace: Trace) -> None:
    """``trace`` records no more in this context; the other open traces stay as they are."""
    active.set(tuple(t for t in active.get() if t is not trace))


def _matches(
    kind: str,
    target: str,
    op: str,
    want_kind: str | None,
    want_target: str | None,
    want_op: str | None = None,
) -> bool:
    if want_kind is not None and kind != want_kind:
        return False
    if want_op is None:
        if op in CONNECTION_OPS:  # counts mean the application's calls unless asked
            return False
    elif op != want_op:
        return False
    return want_target is None or target_matches(target, want_target)


def profile(max_events: int | None = None, name: str | None = None) -> Trace:
    """Record the I/O of a block: this thread, and asyncio tasks created inside it.

    >>> with ioprofiler.profile() as trace:
    ...     shop.render_listing(5773453)
    >>> print(trace.text())
    [dbshard01] 0.902 ms SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773453
    [memcache] 0.361 ms Cache HIT, keys: Etsy_Cache_Results:c812331f123321:1121231

    Threads do not inherit the trace; hand work to them through :func:`propagate`.
    """
    return Trace(max_events=max_events, name=name)


def current() -> Trace | None:
    """The innermost trace recording in this context, or None."""
    for trace in reversed(active.get()):
        if trace._open:
            return trace
    return None


def propagate(fn: F) -> F:
    """Wrap ``fn`` so that it runs in the current context, wherever it is called.

    A thread does not inherit the request's trace; work handed to a pool does:

    >>> with ioprofiler.profile() as trace:
    ...     list(executor.map(ioprofiler.propagate(load_shard), shards))

    Each call runs in its own copy of the context taken when ``propagate`` was
    called, so the wrapped function may run in many threads at once.
    """
    if not callable(fn):
        raise TypeError(f"propagate() takes a function to run in this context, not {fn!r}")
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_captured_context(*args: Any, **kwargs: Any) -> Any:
        return context.copy().run(fn, *args, **kwargs)

    return run_in_captured_context  # type: ignore[return-value]
