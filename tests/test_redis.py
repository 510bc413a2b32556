"""redis-py, sync and asyncio, against the Redis server at 127.0.0.1:6379.

Each test session claims a database number of its own (other sessions may run at the
same time) and flushes only that one. Redis's counters (``INFO stats``, ``INFO
commandstats``) are server-wide, and other sessions' tests keep the shared server busy: the
tests that compare them run against a redis-server of this session's own
(tests/redis_servers.py), whose counters count only their commands.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aredis
from ioprofiler.integrations import redis as integration
from redis.backoff import NoBackoff
from redis.retry import Retry

import ioprofiler
from ioprofiler.patching import is_ours
from ioprofiler.render.json import render_json
from ioprofiler.stored import load
from ioprofiler.testing import IOBudgetExceeded, assert_io, at_most
from tests.redis_servers import RedisServer, free_port, server_or_skip

HOST, PORT = "127.0.0.1", 6379
_CLAIM = "ioprofiler:test-session"


def _claim_database() -> tuple[int, redis.Redis]:
    for db in range(15, 0, -1):
        client = redis.Redis(HOST, PORT, db=db, socket_connect_timeout=3)
        if client.set(_CLAIM, os.getpid(), nx=True, ex=3600):
            client.flushdb()
            client.set(_CLAIM, os.getpid(), ex=3600)
            return db, client
        client.close()
    pytest.fail("every Redis database from 1 to 15 is claimed by another test session")


@pytest.fixture(scope="session")
def redis_db() -> Iterator[int]:
    try:
        redis.Redis(HOST, PORT, socket_connect_timeout=3).ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {HOST}:{PORT} is not answering: {exc}")
    db, client = _claim_database()
    yield db
    client.flushdb()  # our database only; the claim goes with it
    client.close()


@pytest.fixture
def r(redis_db) -> Iterator[redis.Redis]:
    client = redis.Redis(HOST, PORT, db=redis_db)
    client.ping()  # connected: the tests' traces start with their own commands
    yield client
    client.close()


@pytest.fixture(scope="session")
def own_server(tmp_path_factory) -> Iterator[RedisServer]:
    """A redis-server of this session's own, on a free port."""
    server = RedisServer(server_or_skip(), tmp_path_factory.mktemp("redis-own"), free_port())
    yield server
    server.stop()


@pytest.fixture
def own(own_server) -> Iterator[redis.Redis]:
    """A client of :func:`own_server`, connected."""
    client = redis.Redis(HOST, own_server.port)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def key() -> str:
    return f"k{uuid.uuid4().hex[:12]}"


def info(client: redis.Redis, section: str) -> dict:
    kwargs = client.get_connection_kwargs()
    with redis.Redis(kwargs["host"], kwargs["port"]) as other:
        return other.info(section)


def deltas(before: dict, after: dict, names: list[str]) -> dict[str, int]:
    def calls(stats: dict, name: str) -> int:
        value = stats.get(name, 0)
        return value["calls"] if isinstance(value, dict) else value

    return {n: calls(after, n) - calls(before, n) for n in names}


def measured(
    client: redis.Redis, section: str, names: list[str], run
) -> tuple[dict[str, int], object]:
    """Run ``run`` (returning a trace) until ``client``'s server's counters moved by exactly
    what this run did: another client's traffic in between shows as a larger delta, and is
    retried."""
    for _ in range(5):
        before = info(client, section)
        trace, expected = run()
        moved = deltas(before, info(client, section), names)
        if moved == expected:
            return moved, trace
    return moved, trace


def whats(trace) -> list[str]:
    return [e.line().split(" ms ", 1)[1] for e in trace.events]


def test_reads_report_hits_out_of_keys_as_the_server_counts_them(own, key):
    r = own
    r.set(key + "a", "1")
    r.set(key + "b", "")  # an empty value is still a hit
    r.hset(key + "h", mapping={"f": "v", "g": "w"})

    def run():
        with ioprofiler.profile() as trace:
            assert r.get(key + "a") == b"1"
            assert r.get(key + "zz") is None
            assert r.mget(key + "a", key + "b", key + "c") == [b"1", b"", None]
            assert r.exists(key + "a", key + "nope") == 1
            assert r.hget(key + "h", "f") == b"v"
            assert r.hmget(key + "h", "f") == [b"v"]  # Redis counts one lookup per hash
            assert r.hget(key + "absent", "f") is None
        expected = {"keyspace_hits": trace.cache_hits(), "keyspace_misses": trace.cache_misses()}
        return trace, expected

    moved, trace = measured(r, "stats", ["keyspace_hits", "keyspace_misses"], run)
    assert moved == {"keyspace_hits": 6, "keyspace_misses": 4}
    assert (trace.cache_hits(), trace.cache_misses()) == (6, 4)
    assert whats(trace) == [
        f"Cache HIT, keys: {key}a",
        f"Cache MISS, keys: {key}zz",
        f"Cache HIT 2/3, keys: {key}a, {key}b, {key}c (missed: {key}c)",
        f"Cache EXISTS HIT 1/2, keys: {key}a, {key}nope (missed: 1 unnamed)",
        f"Cache HGET HIT, keys: {key}h f",
        f"Cache HMGET HIT, keys: {key}h f",
        f"Cache HGET MISS, keys: {key}absent f",
    ]
    assert {e.target for e in trace.events} == {
        f"redis {HOST}:{r.get_connection_kwargs()['port']}/0"
    }


def test_exists_names_a_missed_key_only_when_the_reply_tells_which(r, key):
    r.set(key + "a", "1")
    with ioprofiler.profile() as trace:
        r.exists(key + "nope")
        r.exists(key + "a", key + "nope", key + "gone")
        r.exists(key + "a", key + "a")  # Redis counts a repeated key each time
    one, many, repeated = trace.events
    assert (one.hit_count, one.miss_count, one.missed_keys) == (0, 1, (key + "nope",))
    assert (many.hit_count, many.miss_count, many.missed_keys) == (1, 2, ())
    assert (repeated.hit_count, repeated.miss_count) == (2, 0)
    assert whats(trace) == [
        f"Cache EXISTS MISS, keys: {key}nope",
        f"Cache EXISTS HIT 1/3, keys: {key}a, {key}nope, {key}gone (missed: 2 unnamed)",
        f"Cache EXISTS HIT 2/2, keys: {key}a, {key}a",
    ]
    document = json.loads(render_json(trace))
    event = document["events"][1]
    assert (event["hit_count"], event["miss_count"], event["missed_keys"]) == (1, 2, [])
    stored, _ = load(document)  # as `ioprofiler show` reads it back from a log
    counts = (trace.cache_hits(), trace.cache_misses())
    assert (stored.cache_hits(), stored.cache_misses()) == counts == (3, 3)


@pytest.mark.parametrize("transaction", [True, False])
def test_pipeline_reads_count_hits_out_of_keys_as_the_server_does(own, key, transaction):
    r = own
    r.set(key + "a", "1")
    r.hset(key + "h", "f", "v")

    def run():
        with ioprofiler.profile() as trace:
            with r.pipeline(transaction=transaction) as pipe:
                pipe.get(key + "a").get(key + "x").set(key + "y", "2")
                pipe.mget(key + "a", key + "y", key + "z").hget(key + "h", "f")
                pipe.exists(key + "a", key + "q").exists(key + "q")
                pipe.execute()
        expected = {"keyspace_hits": trace.cache_hits(), "keyspace_misses": trace.cache_misses()}
        return trace, expected

    moved, trace = measured(r, "stats", ["keyspace_hits", "keyspace_misses"], run)
    assert moved == {"keyspace_hits": 5, "keyspace_misses": 4}  # y was set before MGET read it
    (event,) = trace.events
    assert (event.hit_count, event.miss_count, event.hit) == (5, 4, False)
    assert event.missed_keys == (key + "x", key + "z", key + "q")  # EXISTS a q: q unnamed
    assert event.description().endswith(
        f"; reads HIT 5/9 (missed: {key}x, {key}z, {key}q and 1 unnamed)"
    )


def test_hash_fields_are_hits_and_misses_one_by_one(r, key):
    r.hset(key, "f", "v")
    with ioprofiler.profile() as trace:
        r.hmget(key, "f", "g", "h")
    (event,) = trace.events
    assert (event.hit_count, event.missed_keys) == (1, ((key, "g"), (key, "h")))
    assert event.line().endswith(
        f"Cache HMGET HIT 1/3, keys: {key} f, {key} g, {key} h (missed: {key} g, {key} h)"
    )


def test_one_event_per_round_trip_as_the_server_counts_commands(own, key):
    r = own
    names = ["cmdstat_set", "cmdstat_get", "cmdstat_incrby", "cmdstat_del", "cmdstat_hset"]

    def run():
        with ioprofiler.profile() as trace:
            r.set(key, "v")
            r.get(key)
            r.incr(key + "n")
            r.hset(key + "h", "f", "v")
            r.delete(key, key + "n")
        ops = [e.op for e in trace.events]
        return trace, {n: ops.count(n.removeprefix("cmdstat_")) for n in names}

    moved, trace = measured(r, "commandstats", names, run)
    assert moved == dict.fromkeys(names, 1)
    assert whats(trace) == [
        f"Cache SET, keys: {key}",
        f"Cache HIT, keys: {key}",
        f"Cache INCRBY, keys: {key}n",
        f"Cache HSET, keys: {key}h",
        f"Cache DEL, keys: {key}, {key}n",
    ]


@pytest.mark.parametrize("transaction", [True, False])
def test_a_pipeline_is_one_event_listing_its_commands(own, key, transaction):
    r = own
    names = ["cmdstat_get", "cmdstat_set", "cmdstat_hget", "cmdstat_multi", "cmdstat_exec"]

    def run():
        with ioprofiler.profile() as trace:
            with r.pipeline(transaction=transaction) as pipe:
                pipe.set(key, "v").get(key).hget(key + "h", "f")
                assert pipe.execute() == [True, b"v", None]
        extra = 1 if transaction else 0
        expected = dict.fromkeys(names[:3], 1) | dict.fromkeys(names[3:], extra)
        return trace, expected

    moved, trace = measured(r, "commandstats", names, run)
    extra = 1 if transaction else 0
    assert moved == dict.fromkeys(names[:3], 1) | dict.fromkeys(names[3:], extra)
    (event,) = trace.events
    verb = "MULTI/EXEC" if transaction else "PIPELINE"
    assert event.description() == (
        f"{verb} 3 commands: SET {key}, GET {key}, HGET {key}h f; reads HIT 1/2 (missed: {key}h f)"
    )
    assert event.op == ("transaction" if transaction else "pipeline")


def test_values_and_credentials_are_never_shown(redis_db, key):
    r = redis.Redis(HOST, PORT, db=redis_db, retry=Retry(NoBackoff(), 0))
    with ioprofiler.profile() as trace:
        r.set(key, "s3cret-value")
        r.hset(key + "h", "field", "s3cret-value")
        with pytest.raises(redis.AuthenticationError):
            r.execute_command("AUTH", "someone", "s3cret-password")
        with r.pipeline() as pipe:
            pipe.set(key, "s3cret-value").execute()
    document = render_json(trace)
    for text in (trace.text(), document):
        assert "s3cret" not in text
    lines = [e["line"] for e in json.loads(document)["events"]]
    assert any(line.endswith("Cache AUTH [ERROR AuthenticationError]") for line in lines)


def test_an_error_is_recorded_and_reraised_unchanged(r, key):
    r.set(key, "not a list")
    with ioprofiler.profile() as trace:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE") as raised:
            r.lpush(key, "x")
    (event,) = trace.events
    assert event.error == "ResponseError" and "WRONGTYPE" in event.error_message
    assert type(raised.value) is redis.ResponseError


def test_an_unreachable_server_is_a_failed_connect():
    client = redis.Redis(HOST, 1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    with ioprofiler.profile() as trace:
        with pytest.raises(redis.ConnectionError) as raised:
            client.get("k")
    (event,) = trace.events
    assert (event.op, event.error, event.target) == (
        "connect",
        "ConnectionError",
        f"redis {HOST}:1/0",
    )
    assert event.error_message == str(raised.value)


def test_a_new_connection_is_one_connect_event(redis_db, key):
    client = redis.Redis(HOST, PORT, db=redis_db)
    with ioprofiler.profile() as trace:
        client.get(key)
        client.get(key)
    client.close()
    assert [e.op for e in trace.events] == ["connect", "get", "get"]


def test_a_blocking_command_is_timed_with_its_wait(r, key):
    with ioprofiler.profile() as trace:
        assert r.blpop([key], timeout=0.2) is None
    (event,) = trace.events
    assert event.description() == f"Cache BLPOP, keys: {key}"
    assert event.duration_ms >= 150


def test_pub_sub_commands_and_messages(r, key):
    pubsub = r.pubsub()
    with ioprofiler.profile() as trace:
        pubsub.subscribe(key)
        assert pubsub.get_message(timeout=1)["type"] == "subscribe"
        assert r.publish(key, "hello") == 1
        assert pubsub.get_message(timeout=1)["data"] == b"hello"
        assert pubsub.get_message(timeout=0.05) is None  # no message: no round trip shown
    pubsub.close()
    assert whats(trace) == [
        f"Cache SUBSCRIBE, keys: {key}",
        f"Cache RECEIVED (subscribe), keys: {key}",
        "CONNECT",  # the pub/sub holds the pool's one connection: PUBLISH opens another
        f"Cache PUBLISH, keys: {key}",
        f"Cache RECEIVED (message), keys: {key}",
    ]


def test_nothing_is_recorded_without_a_trace(r, key):
    outer = ioprofiler.profile()
    r.get(key)
    with outer:
        pass
    assert outer.count() == 0


async def test_asyncio_client_commands_pipelines_and_errors(redis_db, key):
    client = aredis.Redis(host=HOST, port=PORT, db=redis_db)
    await client.set(key, "v")  # connected before the trace
    with ioprofiler.profile() as trace:
        assert await client.get(key) == b"v"
        assert await client.mget(key, key + "x") == [b"v", None]
        async with client.pipeline() as pipe:
            pipe.get(key).incr(key + "n")
            assert await pipe.execute() == [b"v", 1]
        with pytest.raises(redis.ResponseError):
            await client.lpush(key, "x")
    await client.aclose()
    assert whats(trace) == [
        f"Cache HIT, keys: {key}",
        f"Cache HIT 1/2, keys: {key}, {key}x (missed: {key}x)",
        f"MULTI/EXEC 2 commands: GET {key}, INCRBY {key}n; reads HIT 1/1",
        f"Cache LPUSH, keys: {key} [ERROR ResponseError]",
    ]
    assert all(e.callsite and "test_redis.py" in e.callsite for e in trace.events)


def test_budgets_and_counts_name_redis_by_its_service(r, key):
    with assert_io(cache={"redis": 2}, redis={f"redis {HOST}:{PORT}/*": 2}) as trace:
        r.get(key)
        r.set(key, "v")
    assert trace.count(kind="cache", target="redis") == 2
    with pytest.raises(IOBudgetExceeded) as exceeded:
        with assert_io(redis=at_most(1), memcache=0):
            r.get(key)
            r.get(key)
    (redis_verdict, memcache_verdict) = exceeded.value.verdicts
    assert (redis_verdict.target, redis_verdict.calls, redis_verdict.ok) == ("redis", 2, False)
    assert (memcache_verdict.target, memcache_verdict.calls, memcache_verdict.ok) == (
        "memcache",
        0,
        True,
    )


def test_install_and_uninstall_are_exact():
    import redis.cluster as cluster
    from redis import connection
    from redis.asyncio import client as async_client
    from redis.asyncio import cluster as async_cluster
    from redis.asyncio import connection as async_connection
    from redis.client import Pipeline, PubSub, Redis

    classes = (
        Redis,
        Pipeline,
        PubSub,
        async_client.Redis,
        async_client.Pipeline,
        async_client.PubSub,
        connection.AbstractConnection,
        async_connection.AbstractConnection,
        cluster,  # the module: its get_connection function
        cluster.RedisCluster,
        cluster.NodeCommands,
        cluster.TransactionStrategy,
        async_cluster.ClusterNode,
        async_cluster.TransactionStrategy,
    )
    ioprofiler.uninstall()
    before = {(c, n): v for c in classes for n, v in vars(c).items()}
    ioprofiler.install()
    assert is_ours(vars(Redis)["_send_command_parse_response"])
    assert is_ours(vars(cluster)["get_connection"])
    assert is_ours(vars(async_cluster.ClusterNode)["execute_pipeline"])
    assert "redis" in ioprofiler.installed()
    integration.install()  # twice: nothing wrapped twice
    ioprofiler.uninstall()
    after = {(c, n): v for c in classes for n, v in vars(c).items()}
    assert after.keys() == before.keys() and all(after[k] is v for k, v in before.items())


def test_a_pipeline_writing_then_reading_a_key_is_no_duplicate_read(r, key):
    from ioprofiler.findings import find
    from tests.test_findings import OUT_OF_REACH

    with ioprofiler.profile() as trace:
        with r.pipeline(transaction=False) as pipe:
            pipe.set(key, "v").get(key).execute()
    # no finding at all, and none that a stall of the busy machine could make
    assert [f.kind for f in find(trace, ioprofiler.Thresholds(**OUT_OF_REACH))] == []


async def test_asyncio_pub_sub_and_blocking_commands(redis_db, key):
    client = aredis.Redis(host=HOST, port=PORT, db=redis_db)
    await client.ping()
    pubsub = client.pubsub()
    await pubsub.subscribe(key)  # connected and subscribed before the trace
    assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"
    with ioprofiler.profile() as trace:
        assert await client.blpop([key + "l"], timeout=0.2) is None
        assert await client.publish(key, "hello") == 1
        assert (await pubsub.get_message(timeout=1))["data"] == b"hello"
        assert await pubsub.get_message(timeout=0.05) is None  # no message: no round trip
    await pubsub.aclose()
    await client.aclose()
    assert whats(trace) == [
        "CONNECT",  # the pub/sub holds the connection the PING used
        f"Cache BLPOP, keys: {key}l",
        f"Cache PUBLISH, keys: {key}",
        f"Cache RECEIVED (message), keys: {key}",
    ]
    assert trace.events[1].duration_ms >= 150  # the wait is the round trip's
