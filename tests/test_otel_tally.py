"""The OpenTelemetry exporter's pass over a request's events: compiled (ioprofiler._tally)
and its Python reference (IOCounts._count_kept) give the same counts, in the same order,
on real traces: SQLite shards, memcached reads that hit and miss, failed statements, calls
past ``max_events``, stored events read back from a log record, and events of a shape only
the reference reads."""

from __future__ import annotations

import json
import os

import pytest
import sqlalchemy as sa

import ioprofiler
from ioprofiler import compiled
from ioprofiler.export import otel
from ioprofiler.export.otel import IOCounts
from ioprofiler.render.json import render_json
from ioprofiler.stored import load

REQUIRED = os.environ.get("IOPROFILER_REQUIRE_SPEEDUPS") == "1"


@pytest.fixture
def compiled_pass():
    if otel._tally is None:
        if REQUIRED:
            pytest.fail(f"ioprofiler._tally is not in use: {compiled.why_not('_tally')}")
        pytest.skip(f"ioprofiler._tally is not in use: {compiled.why_not('_tally')}")
    return otel._tally


def as_tuple(counts: IOCounts) -> tuple:
    """Every figure, with each dictionary's order."""
    return (
        list(counts.per_shard.items()),
        list(counts.per_kind.items()),
        list(counts.statements.items()),
        counts.io_ns,
        counts.errors,
        counts.hits,
        counts.misses,
    )


def both(trace: ioprofiler.Trace, monkeypatch) -> tuple[tuple, tuple]:
    """(compiled, reference) counts of the trace."""
    fast = as_tuple(IOCounts.of(trace))
    with monkeypatch.context() as patch:
        patch.setattr(otel, "_tally", None)
        slow = as_tuple(IOCounts.of(trace))
    return fast, slow


def test_a_request_of_statements_cache_reads_errors_and_round_trips(
    compiled_pass, sqlite_shards, client, key, monkeypatch
):
    client.set(f"{key}:1", b"x")
    client.set(f"{key}:3", b"x")
    with ioprofiler.profile() as trace:
        for name in ("dbshard01", "dbshard02"):
            with sqlite_shards[name].connect() as conn:
                for listing in range(3):
                    conn.exec_driver_sql(
                        "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?",
                        (listing,),
                    )
                with pytest.raises(sa.exc.OperationalError):
                    conn.exec_driver_sql("SELECT * FROM NoSuchTable")
        client.get(f"{key}:1")  # a hit
        client.get(f"{key}:2")  # a miss
        client.get_many([f"{key}:1", f"{key}:2", f"{key}:3", f"{key}:4"])  # 2 hits, 2 misses
        client.set(f"{key}:5", b"y")  # a write: no hits, no misses
    fast, slow = both(trace, monkeypatch)
    assert fast == slow
    per_shard, per_kind, statements, io_ns, errors, hits, misses = fast
    assert per_shard == [("dbshard01", 4), ("dbshard02", 4)]
    assert per_kind == [("cache", 4)]
    assert [count for _, count in statements] == [3, 1, 3, 1]
    assert (errors, hits, misses) == (2, 3, 3)
    kept = [e for e in trace.events if e.op != "pool wait" and e.end_ns is not None]
    assert io_ns == sum(e.end_ns - e.start_ns for e in kept)


def test_more_distinct_statements_than_the_compiled_table_holds_keep_their_first_seen_order(
    compiled_pass, sqlite_shards, monkeypatch
):
    # texts made anew on every call: equal statements that are different str objects, which
    # must count as one, interleaved over two shards and more of them than the table's 16
    with ioprofiler.profile() as trace:
        for round_ in range(3):
            for name in ("dbshard01", "dbshard02"):
                with sqlite_shards[name].connect() as conn:
                    for n in range(25):
                        conn.exec_driver_sql("SELECT " + str(n) + " + " + str(round_ % 1))
    fast, slow = both(trace, monkeypatch)
    assert fast == slow
    statements = fast[2]
    assert len(statements) == 50
    assert [count for _, count in statements] == [3] * 50
    assert statements[0][0] == ("dbshard01", "SELECT 0 + 0")
    assert statements[25][0] == ("dbshard02", "SELECT 0 + 0")


def test_calls_past_max_events_are_added_after_the_pass(
    compiled_pass, sqlite_shards, client, key, monkeypatch
):
    with ioprofiler.profile(max_events=5) as trace:
        with sqlite_shards["dbshard01"].connect() as conn:
            for listing in range(8):
                conn.exec_driver_sql(
                    "SELECT note FROM FavoriteListingUser WHERE listing_id = ?", (listing,)
                )
        for n in range(4):
            client.get(f"{key}:{n}")
    assert trace.dropped > 0
    fast, slow = both(trace, monkeypatch)
    assert fast == slow
    per_shard, per_kind, _, _, _, hits, misses = fast
    assert per_shard == [("dbshard01", 8)]
    assert per_kind == [("cache", 4)]
    assert (hits, misses) == (0, 4)


def test_stored_events_read_back_from_a_log_record_count_the_same(
    compiled_pass, sqlite_shards, client, key, monkeypatch
):
    client.set(f"{key}:1", b"x")
    with ioprofiler.profile() as trace:
        with sqlite_shards["dbshard03"].connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            conn.exec_driver_sql("SELECT 1")
        client.get_many([f"{key}:1", f"{key}:2"])
    stored, _ = load(json.loads(render_json(trace)))  # as `ioprofiler show` reads a log
    assert type(stored.events[0]).__name__ == "StoredEvent"  # a class read attribute by attribute
    fast, slow = both(stored, monkeypatch)
    assert fast == slow
    original = as_tuple(IOCounts.of(trace))
    assert fast[:3] == original[:3]
    assert fast[4:] == original[4:] == (0, 1, 1)


def test_an_event_the_compiled_pass_cannot_read_is_counted_by_the_reference(
    compiled_pass, sqlite_shards, monkeypatch
):
    with ioprofiler.profile() as trace:
        with sqlite_shards["dbshard01"].connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            conn.exec_driver_sql("SELECT 2")
    statement = next(e for e in trace.events if e.statement == "SELECT 2")
    statement.end_ns = statement.start_ns + 1500.5  # not an int: the C pass refuses it
    with pytest.raises(TypeError):
        compiled_pass.count_io(trace._events, {}, {})
    fast, slow = both(trace, monkeypatch)
    assert fast == slow
    assert isinstance(fast[3], float)
    assert fast[2] == [(("dbshard01", "SELECT 1"), 1), (("dbshard01", "SELECT 2"), 1)]


def test_the_compiled_pass_refuses_what_it_is_not_given():
    module = compiled.load("_tally")
    if module is None:
        pytest.skip(f"ioprofiler._tally is not in use: {compiled.why_not('_tally')}")
    with pytest.raises(TypeError, match="count_io"):
        module.count_io((), {}, {})
    with pytest.raises(TypeError, match="describe"):
        module.describe(1, 2, 3, 4, 5, 6, 7)
