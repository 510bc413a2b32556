"""Events of every kind: one class per kind, every field readable on every event, copies and
pickles that keep everything."""

from __future__ import annotations

import copy
import pickle

import pytest
import sqlalchemy as sa
from pymemcache.client.base import Client

import ioprofiler
from ioprofiler.event import CACHE, COMMIT, CONNECT, DB, HTTP, Event, new_event
from ioprofiler.recording import begin, done, failed
from ioprofiler.trace import active

# Every field a reader may ask any event for, and its value before anything is recorded.
DEFAULTS = {
    "statement": None,
    "params": None,
    "paramstyle": None,
    "dialect": None,
    "rows": None,
    "status": None,
    "size": None,
    "keys": (),
    "hit": None,
    "missed_keys": None,
    "counts": None,
    "note": None,
    "detail": None,
    "error": None,
    "error_message": None,
    "end_ns": None,
}
KINDS = [(DB, "execute"), (DB, COMMIT), (DB, CONNECT), (CACHE, "get"), (CACHE, CONNECT)]
KINDS += [(HTTP, "GET"), ("queue", "publish")]


def fields(event: Event) -> dict:
    names = [*DEFAULTS, "kind", "op", "target", "start_ns", "_origin_ns", "_site", "_overflow"]
    return {name: getattr(event, name) for name in names}


@pytest.mark.parametrize(("kind", "op"), KINDS)
def test_a_new_event_of_any_kind_reads_every_field_at_its_default(kind, op):
    with ioprofiler.profile() as trace:
        event = begin(active.get(), kind, op, "somewhere", 2)
    assert isinstance(event, Event)
    assert (event.kind, event.op, event.target) == (kind, op, "somewhere")
    assert {name: getattr(event, name) for name in DEFAULTS} == DEFAULTS
    assert event.start_ns > 0 and event._site is not None
    assert trace.events == [event]
    made = Event(kind, op, "somewhere", trace.start_ns)  # the public constructor: same class
    assert type(made) is type(event) and isinstance(made, Event)
    assert {name: getattr(made, name) for name in DEFAULTS} == DEFAULTS
    assert (made.kind, made.op, made.target, made.start_ns) == (kind, op, "somewhere", 0)
    assert fields(new_event(kind, op, "somewhere", 5)) == fields(Event(kind, op, "somewhere", 5))


@pytest.mark.parametrize(("kind", "op"), KINDS)
def test_any_field_can_be_written_on_any_kind_and_reads_back(kind, op):
    values = {name: f"value of {name}" for name in DEFAULTS}
    event = Event(kind, op, "somewhere", 0)
    for name, value in values.items():
        setattr(event, name, value)
    assert {name: getattr(event, name) for name in DEFAULTS} == values
    other = Event(kind, op, "somewhere", 0)  # the class's defaults are left alone
    assert {name: getattr(other, name) for name in DEFAULTS} == DEFAULTS


def test_an_error_on_a_statement_is_kept_with_it(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard01.db'}")
    ioprofiler.install()
    try:
        with ioprofiler.profile() as trace, engine.connect() as conn:
            with pytest.raises(sa.exc.OperationalError):
                conn.exec_driver_sql("SELECT * FROM missing_table")
    finally:
        ioprofiler.uninstall()
        engine.dispose()
    (event,) = [e for e in trace.events if e.is_statement]
    assert event.error == "OperationalError"
    assert "missing_table" in event.error_message
    assert event.hit is None and event.keys == ()
    assert event.line().endswith("[ERROR OperationalError]")


def recorded_events(tmp_path, memcached) -> list[Event]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard01.db'}")
    client = Client(memcached.address)
    ioprofiler.install()
    try:
        with ioprofiler.profile() as trace:
            with engine.begin() as conn:
                conn.execute(sa.text("SELECT :x"), {"x": 5773453}).all()
            client.set("present", b"1")
            client.get("present")
            client.get_many(["present", "absent"])
            event = begin(active.get(), HTTP, "GET", "http api", 2)
            event.statement, event.status, event.size = "/v1/items?id=?", 200, 3100
            event.end_ns = event.start_ns + 1000
            done(event)
            event = begin(active.get(), CACHE, "get", "memcache", 2)
            failed(event, TimeoutError("timed out"))
    finally:
        ioprofiler.uninstall()
        client.close()
        engine.dispose()
    return trace.events


def test_events_copy_and_pickle_with_every_field(tmp_path, memcached):
    events = recorded_events(tmp_path, memcached)
    kinds = {(e.kind, e.op) for e in events}
    assert {
        (DB, "execute"),
        (DB, COMMIT),
        (CACHE, "get"),
        (CACHE, "get_many"),
        (HTTP, "GET"),
    } <= kinds
    for event in events:
        for twin in (copy.copy(event), copy.deepcopy(event)):
            assert type(twin) is type(event)
            assert fields(twin) == fields(event)
            assert twin.line() == event.line()
        # pickled: the callsite (a code object) is the one field that does not travel
        event._site = None
        twin = pickle.loads(pickle.dumps(event))
        assert type(twin) is type(event)
        assert {k: v for k, v in fields(twin).items() if k != "target"} == {
            k: v for k, v in fields(event).items() if k != "target"
        }
        assert twin.target == event.target
        assert twin.line() == event.line()
