"""redis-py's RedisCluster (sync and asyncio) and Sentinel, against servers the tests start.

A 3-master Redis Cluster and a master/replica pair watched by a Sentinel, each on free
loopback ports (tests/redis_servers.py); their counters (``INFO commandstats`` per node,
``INFO stats`` keyspace hits and misses) count only these tests' traffic, so they are
compared exactly. Skipped with the reason without ``redis-server``; a failure under
``IOPROFILER_REQUIRE_REDIS_CLUSTER=1`` (CI).
"""

from __future__ import annotations

import time
import types
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio.cluster as async_cluster
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

import ioprofiler
from tests.redis_servers import HOST, Cluster, SentinelSetup, server_or_skip


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    started = Cluster(server_or_skip(), Path(tmp_path_factory.mktemp("redis-cluster")))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def sentinel_setup(tmp_path_factory) -> Iterator[SentinelSetup]:
    started = SentinelSetup(server_or_skip(), Path(tmp_path_factory.mktemp("redis-sentinel")))
    yield started
    started.stop()


@pytest.fixture
def rc(cluster) -> Iterator[RedisCluster]:
    client = RedisCluster(HOST, cluster.ports[0])
    for node in client.get_nodes():  # connected: the traces start with the tests' commands
        client.ping(target_nodes=node)
    yield client
    client.close()


def target(port: int) -> str:
    return f"redis {HOST}:{port}/0"


def keys_on_each_node(cluster: Cluster) -> list[str]:
    """One fresh key served by each node, in node order."""
    found: dict[int, str] = {}
    while len(found) < len(cluster.nodes):
        key = f"k{uuid.uuid4().hex[:10]}"
        found.setdefault(cluster.node_of(key).port, key)
    return [found[port] for port in cluster.ports]


def stats(cluster: Cluster, section: str, names: list[str]) -> dict[int, dict[str, int]]:
    """``names`` from each node's ``INFO section``: calls for commandstats, else the value."""
    result = {}
    for node in cluster.nodes:
        info = node.client.info(section)
        values = {}
        for name in names:
            value = info.get(name, 0)
            values[name] = value["calls"] if isinstance(value, dict) else value
        result[node.port] = values
    return result


def moved(before: dict, after: dict) -> dict[int, dict[str, int]]:
    return {p: {n: after[p][n] - before[p][n] for n in before[p]} for p in before}


def whats(trace) -> list[tuple[str, str]]:
    return [(e.target, e.line().split(" ms ", 1)[1]) for e in trace.events]


def test_each_command_is_one_round_trip_to_the_node_that_answered(cluster, rc):
    a, b, c = keys_on_each_node(cluster)
    rc.set(a, "1")
    names = ["cmdstat_get", "cmdstat_set", "cmdstat_del"]
    before = stats(cluster, "commandstats", names)
    with ioprofiler.profile() as trace:
        rc.get(a)
        rc.set(b, "2")
        rc.get(c)
        rc.delete(a)
    assert moved(before, stats(cluster, "commandstats", names)) == {
        cluster.ports[0]: {"cmdstat_get": 1, "cmdstat_set": 0, "cmdstat_del": 1},
        cluster.ports[1]: {"cmdstat_get": 0, "cmdstat_set": 1, "cmdstat_del": 0},
        cluster.ports[2]: {"cmdstat_get": 1, "cmdstat_set": 0, "cmdstat_del": 0},
    }
    p0, p1, p2 = (target(p) for p in cluster.ports)
    assert whats(trace) == [
        (p0, f"Cache HIT, keys: {a}"),
        (p1, f"Cache SET, keys: {b}"),
        (p2, f"Cache MISS, keys: {c}"),
        (p0, f"PIPELINE 1 command: DEL {a}"),  # redis-py sends DEL per node, batched
    ]


def test_hits_and_misses_match_the_nodes_own_counts(cluster, rc):
    a, b, c = keys_on_each_node(cluster)
    rc.set(a, "1")
    rc.hset(b, "f", "v")
    names = ["keyspace_hits", "keyspace_misses"]
    before = stats(cluster, "stats", names)
    with ioprofiler.profile() as trace:
        rc.get(a)
        rc.get(c)
        rc.hmget(b, "f", "g")
        rc.exists(a)
        rc.exists(c)
        rc.mget_nonatomic(a, b + "x", c)  # one pipeline batch per node
    after = stats(cluster, "stats", names)
    server = moved(before, after)
    # Redis counts one lookup (a hit) for the HMGET of a hash: ioprofiler counts its fields.
    assert sum(s["keyspace_hits"] for s in server.values()) == trace.cache_hits() == 4
    assert sum(s["keyspace_misses"] for s in server.values()) == trace.cache_misses() - 1 == 4


def test_a_pipeline_is_one_round_trip_per_node_listing_its_commands(cluster, rc):
    a, b, c = keys_on_each_node(cluster)
    rc.set(a, "1")
    names = ["cmdstat_get", "cmdstat_set", "cmdstat_incrby"]
    before = stats(cluster, "commandstats", names)
    with ioprofiler.profile() as trace:
        with rc.pipeline() as pipe:
            pipe.get(a).set(b, "2").get(c).incr(a + "n").get(b)
            assert pipe.execute() == [b"1", True, None, 1, b"2"]
    server = moved(before, stats(cluster, "commandstats", names))
    batches = {e.target: e for e in trace.events}
    assert len(trace.events) == len(batches) == sum(1 for s in server.values() if any(s.values()))
    for port, counts in server.items():
        event = batches.get(target(port))
        listed = Counter(name for name, _ in event.params) if event else Counter()
        assert {f"cmdstat_{n.lower()}": listed[n] for n in ("GET", "SET", "INCRBY")} == counts
    # Reads across the pipeline: a and b found, c missed.
    assert (trace.cache_hits(), trace.cache_misses()) == (2, 1)
    assert all(e.op == "pipeline" for e in trace.events)
    missed = batches[target(cluster.node_of(c).port)]
    assert f"GET {c}" in missed.description()
    assert missed.description().endswith(f"; reads MISS 0/1 (missed: {c})")


def test_a_transaction_is_one_round_trip_to_the_slot_s_node(cluster, rc):
    tag = f"{{t{uuid.uuid4().hex[:8]}}}"
    node = cluster.node_of(tag)
    rc.set(tag + "a", "1")
    with ioprofiler.profile() as trace:
        with rc.pipeline(transaction=True) as pipe:
            pipe.get(tag + "a").get(tag + "b").set(tag + "b", "2")
            assert pipe.execute()[:2] == [b"1", None]
    (event,) = trace.events
    assert event.target == target(node.port)
    assert event.description() == (
        f"MULTI/EXEC 3 commands: GET {tag}a, GET {tag}b, SET {tag}b; reads HIT 1/2 (missed: {tag}b)"
    )


def _slot_ids(cluster: Cluster) -> dict[int, str]:
    return {n.port: n.client.execute_command("CLUSTER MYID").decode() for n in cluster.nodes}


def _assign(cluster: Cluster, slot: int, port: int) -> None:
    """Give ``slot`` to the node on ``port``, and wait until every node says so: the nodes
    settle the change between themselves over the cluster bus, and a client that asks a node
    still of the old view is sent back and forth until its redirects run out."""
    owner = _slot_ids(cluster)[port]
    for node in cluster.nodes:
        node.client.execute_command("CLUSTER SETSLOT", slot, "NODE", owner)
    deadline = time.monotonic() + 10
    while not all(_owner_port(node.client, slot) == port for node in cluster.nodes):
        assert time.monotonic() < deadline, f"the nodes never agreed on slot {slot}'s owner"
        time.sleep(0.01)


def _owner_port(client: redis.Redis, slot: int) -> int | None:
    for start, end, master, *_replicas in client.execute_command("CLUSTER SLOTS"):
        if start <= slot <= end:
            return int(master[1])
    return None


def test_ask_and_moved_redirects_are_round_trips_of_their_own(cluster, rc):
    key = f"k{uuid.uuid4().hex[:10]}"  # never written: no key needs migrating
    source = cluster.node_of(key)
    dest = next(n for n in cluster.nodes if n is not source)
    slot = source.client.execute_command("CLUSTER KEYSLOT", key)
    ids = _slot_ids(cluster)
    try:
        dest.client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.port])
        source.client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[dest.port])
        with ioprofiler.profile() as asked:
            assert rc.get(key) is None  # the source no longer has it: ASK the destination
        _assign(cluster, slot, dest.port)
        with ioprofiler.profile() as redirected:
            assert rc.get(key) is None  # the client's slot table still names the source
            assert rc.get(key) is None  # learnt from MOVED
    finally:
        _assign(cluster, slot, source.port)
    at_source, at_dest = target(source.port), target(dest.port)
    assert whats(asked) == [
        (at_source, f"Cache GET, keys: {key} [ERROR AskError]"),
        (at_dest, "Cache ASKING"),
        (at_dest, f"Cache MISS, keys: {key}"),
    ]
    assert whats(redirected) == [
        (at_source, f"Cache GET, keys: {key} [ERROR MovedError]"),
        (at_dest, f"Cache MISS, keys: {key}"),
        (at_dest, f"Cache MISS, keys: {key}"),
    ]


def test_an_error_reply_is_recorded_and_reraised_unchanged(cluster, rc):
    key = f"k{uuid.uuid4().hex[:10]}"
    rc.set(key, "not a list")
    with ioprofiler.profile() as trace:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE") as raised:
            rc.lpush(key, "x")
    (event,) = trace.events
    assert type(raised.value) is redis.ResponseError
    assert (event.target, event.error) == (target(cluster.node_of(key).port), "ResponseError")


async def test_asyncio_cluster_commands_and_pipelines(cluster):
    a, b, c = keys_on_each_node(cluster)
    client = async_cluster.RedisCluster(host=HOST, port=cluster.ports[0])
    await client.set(a, "1")
    for node in client.get_nodes():
        await client.ping(target_nodes=node)
    names = ["cmdstat_get", "cmdstat_set"]
    before = stats(cluster, "commandstats", names)
    with ioprofiler.profile() as trace:
        assert await client.get(a) == b"1"
        assert await client.get(c) is None
        async with client.pipeline() as pipe:
            pipe.get(a).set(b, "2").get(c)
            assert await pipe.execute() == [b"1", True, None]
        with pytest.raises(redis.ResponseError):
            await client.lpush(a, "x")
    await client.aclose()
    assert moved(before, stats(cluster, "commandstats", names)) == {
        cluster.ports[0]: {"cmdstat_get": 2, "cmdstat_set": 0},
        cluster.ports[1]: {"cmdstat_get": 0, "cmdstat_set": 1},
        cluster.ports[2]: {"cmdstat_get": 2, "cmdstat_set": 0},
    }
    p0, p1, p2 = (target(p) for p in cluster.ports)
    listed = whats(trace)
    assert listed[:2] == [(p0, f"Cache HIT, keys: {a}"), (p2, f"Cache MISS, keys: {c}")]
    assert sorted(listed[2:5]) == sorted(
        [
            (p0, f"PIPELINE 1 command: GET {a}; reads HIT 1/1"),
            (p1, f"PIPELINE 1 command: SET {b}"),
            (p2, f"PIPELINE 1 command: GET {c}; reads MISS 0/1 (missed: {c})"),
        ]
    )
    assert listed[5] == (p0, f"Cache LPUSH, keys: {a} [ERROR ResponseError]")
    assert (trace.cache_hits(), trace.cache_misses()) == (2, 2)


def test_sentinel_clients_name_the_server_that_answered(sentinel_setup):
    setup = sentinel_setup
    sentinel = Sentinel([(HOST, setup.sentinel.port)], socket_timeout=3)
    key = f"k{uuid.uuid4().hex[:10]}"
    with ioprofiler.profile() as trace:
        master = sentinel.master_for(setup.NAME)
        master.set(key, "v")
        assert master.get(key) == b"v"
        replica = sentinel.slave_for(setup.NAME)
        replica.get(key + "x")
    at_sentinel = target(setup.sentinel.port)
    at_master, at_replica = target(setup.master.port), target(setup.replica.port)
    assert whats(trace) == [
        (at_sentinel, "CONNECT"),
        (at_sentinel, "Cache SENTINEL MASTERS"),  # how redis-py finds the master
        (at_master, "CONNECT"),
        (at_master, f"Cache SET, keys: {key}"),
        (at_master, f"Cache HIT, keys: {key}"),
        (at_sentinel, "Cache SENTINEL SLAVES"),
        (at_replica, "CONNECT"),
        (at_replica, f"Cache MISS, keys: {key}x"),
    ]
    master.close()
    replica.close()
    for client in sentinel.sentinels:
        client.close()


async def test_asyncio_sentinel_clients_name_the_server_that_answered(sentinel_setup):
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel

    setup = sentinel_setup
    sentinel = AsyncSentinel([(HOST, setup.sentinel.port)], socket_timeout=3)
    key = f"k{uuid.uuid4().hex[:10]}"
    with ioprofiler.profile() as trace:
        master = sentinel.master_for(setup.NAME)
        await master.set(key, "v")
    targets = [e.target for e in trace.events]
    assert targets[-2:] == [target(setup.master.port)] * 2
    assert target(setup.sentinel.port) in targets
    await master.aclose()
    for client in sentinel.sentinels:
        await client.aclose()


def test_plain_clients_pay_nothing_for_the_cluster_and_uninstall_takes_every_hook_off(cluster):
    ioprofiler.uninstall()
    try:
        client = RedisCluster(HOST, cluster.ports[0])  # made before install(): hooked when used
        ioprofiler.install()
        # plain clients' replies go through redis-py's own method, unwrapped
        assert isinstance(vars(redis.Redis)["parse_response"], types.FunctionType)
        with ioprofiler.profile() as trace:
            client.set("plain-or-cluster", 1)
        assert [e.op for e in trace.events if e.op != "connect"] == ["set"]
        nodes = [node.redis_connection for node in client.get_nodes()]
        assert any("parse_response" in vars(node) for node in nodes)
        ioprofiler.uninstall()
        assert not any("parse_response" in vars(node) for node in nodes)
        client.close()
    finally:
        ioprofiler.install()
