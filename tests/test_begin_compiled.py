"""The compiled begin (ioprofiler._speedups.begin) makes the event the pure-Python begin makes.

Each case calls both, the same way, from the same function: the event's class, every field,
its callsite (code object and line), where it went (which traces kept it, which counted it
past their bound) and the order of its clock against the traces' must be the same.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa
from pymemcache.client.base import Client

import ioprofiler
from ioprofiler import callsite, recording
from ioprofiler.event import CACHE, DB, CacheCall, Statement
from ioprofiler.trace import Trace, active
from tests.test_callsite_accelerated import needs_speedups
from tests.test_event import DEFAULTS, KINDS

pytestmark = needs_speedups

SAME = ["kind", "op", "target", "_origin_ns", "_overflow", *DEFAULTS]


def fields(event) -> dict:
    return {name: getattr(event, name) for name in SAME}


def both(kind: str, op: str, target: object = "somewhere"):
    """(compiled, pure) events, begun by the same caller, as a wrapper begins them."""
    traces = active.get()  # (no comprehension here: on 3.11 it is a frame of its own)
    compiled = recording.begin(traces, kind, op, target, 2)
    return compiled, recording.begin_pure(traces, kind, op, target, 2)


def test_the_compiled_begin_is_the_one_integrations_use():
    from ioprofiler.integrations import pymemcache, sqlalchemy

    assert recording.compiled_begin
    assert recording.begin is not recording.begin_pure
    assert pymemcache.begin is recording.begin and sqlalchemy.begin is recording.begin


def test_every_kind_gets_the_same_event_as_from_the_pure_begin():
    for kind, op in KINDS:
        with ioprofiler.profile() as trace:
            compiled, pure = both(kind, op)
        assert type(compiled) is type(pure), (kind, op)
        assert fields(compiled) == fields(pure), (kind, op)
        # both() stands where a wrapper stands: the site is the frame that called it
        assert compiled._site[0] is pure._site[0] is sys._getframe().f_code
        assert trace.events == [compiled, pure]
        assert trace.start_ns < compiled.start_ns < pure.start_ns
    assert type(compiled) not in (Statement, CacheCall)  # the last kind: an unknown one


def test_statements_and_cache_calls_are_made_in_c_with_their_own_defaults():
    with ioprofiler.profile():
        statement, _ = both(DB, "execute")
        cache_call, _ = both(CACHE, "get")
    assert type(statement) is Statement and type(cache_call) is CacheCall
    assert (statement.statement, statement.params, statement.rows) == (None, None, None)
    assert (cache_call.keys, cache_call.hit, cache_call.missed_keys) == ((), None, None)
    assert statement.end_ns is None and statement._overflow is None
    statement.note = "kept in the event's own __dict__"  # a field of another kind
    assert statement.note == "kept in the event's own __dict__"
    assert Statement(DB, "execute", "x", 0).note is None


def test_depth_by_keyword_and_the_default_depth_find_the_same_callsite():
    def helper(begin, **depth):  # a wrapper's helper that begins the event: one frame more
        return begin(active.get(), DB, "execute", "x", **depth)

    def wrapper(begin, **depth):
        return helper(begin, **depth)

    here = sys._getframe().f_code
    with ioprofiler.profile():
        by_name = wrapper(recording.begin, depth=3), wrapper(recording.begin_pure, depth=3)
        by_default = wrapper(recording.begin), wrapper(recording.begin_pure)
    for compiled, pure in (by_name, by_default):
        assert compiled._site == pure._site and compiled._site[0] is here


def test_nested_traces_a_closed_one_and_a_full_one():
    outer = Trace(max_events=2)
    with outer:
        both(DB, "execute")  # fills outer
        with ioprofiler.profile() as inner:
            closed = Trace()
            with closed:
                pass
            token = active.set(active.get() + (closed,))
            try:
                compiled, pure = both(CACHE, "get")
            finally:
                active.reset(token)
    assert inner.events == [compiled, pure]
    assert len(outer.events) == 2 and compiled not in outer.events
    assert compiled._overflow == pure._overflow == (outer,)
    assert compiled._origin_ns == pure._origin_ns == closed.start_ns  # the innermost trace's
    for event in (compiled, pure):
        event.end_ns = event.start_ns + 1_000
        recording.done(event)
    assert outer.dropped == 2 and outer.count(kind="cache") == 2
    assert compiled._overflow is None


def test_a_trace_of_another_class_is_read_through_its_attributes():
    class NamedTrace(Trace):
        @property
        def max_events(self):  # read as Python reads it: the property, not the slot
            return 1

        @max_events.setter
        def max_events(self, value):
            pass

    with NamedTrace() as trace:  # its max_events slot is never set: only the property answers
        compiled, pure = both(DB, "execute")
        pure_first, compiled_second = reversed(both(DB, "execute"))
    assert trace.events == [compiled]
    assert pure._overflow == pure_first._overflow == compiled_second._overflow == (trace,)


def test_no_open_trace_or_bad_arguments_fail_as_the_pure_begin_does():
    import pytest

    for begin in (recording.begin, recording.begin_pure):
        with pytest.raises(IndexError):
            begin((), DB, "execute", "x", 2)
        with pytest.raises(TypeError):
            begin((Trace(),), DB, "execute", "x", 2, "extra")
        with pytest.raises(TypeError):
            begin((Trace(),), DB, "execute", "x", deep=2)


def test_a_patched_callsite_finder_is_called_as_from_the_pure_begin(monkeypatch):
    asked = []

    def finder(depth):
        asked.append(depth)
        return callsite._find_pure(depth + 1)

    monkeypatch.setattr(callsite, "find", finder)
    with ioprofiler.profile():
        compiled, pure = both(DB, "execute")
    assert asked == [1, 2]  # the compiled begin has no frame of its own
    assert compiled._site == pure._site


def test_recorded_calls_through_the_real_libraries_match(tmp_path, memcached, monkeypatch):
    ioprofiler.install()

    def run() -> list[str]:  # new connections each time: a CONNECT on each server each time
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard01.db'}")
        client = Client(memcached.address)
        with ioprofiler.profile() as trace:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT :x"), {"x": 5773453}).all()
            client.get("absent")
        engine.dispose()
        client.close()
        return [(e.line().split(" ms ")[-1], e.target, e._site) for e in trace.events]

    try:
        compiled = run()
        monkeypatch.setattr(recording, "begin", recording.begin_pure)
        from ioprofiler.integrations import pymemcache, sqlalchemy

        monkeypatch.setattr(sqlalchemy, "begin", recording.begin_pure)
        monkeypatch.setattr(pymemcache, "begin", recording.begin_pure)
        pure = run()
    finally:
        ioprofiler.uninstall()
    assert compiled == pure
    listed = [(line, target) for line, target, _ in compiled]
    assert ("Cache MISS, keys: absent", "memcache") in listed
    assert any("SELECT 5773453" in line for line, _, _ in compiled)


def test_a_bound_past_any_machine_integer_and_a_list_of_another_class():
    class Events(list):
        appended = 0

        def append(self, event):
            Events.appended += 1
            super().append(event)

    class OwnList(Trace):
        __slots__ = ()

        def __init__(self):
            super().__init__(max_events=10**20)  # no upper limit on the setting
            self._events = Events()

    with OwnList() as trace:
        compiled, pure = both(DB, "execute")
    assert trace.events == [compiled, pure] and Events.appended == 2
    assert compiled._overflow is None


def test_install_events_refuses_what_it_cannot_fill_and_changes_nothing():
    import pytest

    from ioprofiler import _speedups
    from ioprofiler.event import CACHE_CALL_DEFAULTS, CONNECTION_OPS, STATEMENT_DEFAULTS, Event

    class NotAnEvent:
        __slots__ = ("statement",)

    def install(statement, fields):
        _speedups.install_events(
            Event, statement, fields, CacheCall, tuple(CACHE_CALL_DEFAULTS.items()),
            DB, CACHE, CONNECTION_OPS, recording.begin_pure, vars(callsite), Trace,
        )  # fmt: skip

    defaults = tuple(STATEMENT_DEFAULTS.items())
    with pytest.raises(TypeError, match="subclass"):
        install(NotAnEvent, (("statement", None),))
    with pytest.raises(TypeError, match="named twice"):
        install(Statement, (*defaults, ("op", "again")))
    with pytest.raises(TypeError, match="unset"):
        install(Statement, defaults[:-1])
    with ioprofiler.profile():  # what was installed before still holds
        compiled, pure = both(DB, "execute")
    assert type(compiled) is Statement and fields(compiled) == fields(pure)


def test_the_compiled_begin_has_a_signature():
    import inspect

    assert list(inspect.signature(recording.begin).parameters) == [
        *inspect.signature(recording.begin_pure).parameters
    ]
