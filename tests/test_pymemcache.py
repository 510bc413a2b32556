"""pymemcache against real memcached processes: one event per server round trip."""

from __future__ import annotations

import inspect
import socket

import pytest
from ioprofiler.integrations import pymemcache as integration
from pymemcache import serde
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.client.retrying import RetryingClient
from pymemcache.exceptions import MemcacheClientError, MemcacheUnexpectedCloseError

import ioprofiler
from ioprofiler.patching import is_ours


def cache_calls(trace) -> list:
    """The cache calls, without the connects made inside them."""
    return [event for event in trace.events if event.is_call]


def lines(trace) -> list[str]:
    return [event.line().split(" ms ", 1)[1] for event in cache_calls(trace)]


def test_get_hit_and_miss_in_the_listing_form(client, key):
    client.set(key, b"value")
    with ioprofiler.profile() as trace:
        assert client.get(key) == b"value"
        assert client.get(key + "-missing") is None
    assert lines(trace) == [f"Cache HIT, keys: {key}", f"Cache MISS, keys: {key}-missing"]
    hit, miss = cache_calls(trace)
    assert (hit.kind, hit.target, hit.op, hit.hit, hit.keys) == (
        "cache",
        "memcache",
        "get",
        True,
        (key,),
    )
    assert miss.hit is False and miss.missed_keys == (key + "-missing",)
    assert trace.cache_hits() == 1 and trace.cache_misses() == 1
    assert cache_calls(trace)[0].line().startswith("[memcache] ")


@pytest.mark.parametrize("stored", [b"", b"0"])
def test_a_stored_falsy_value_is_a_hit(client, key, stored):
    client.set(key, stored)
    with ioprofiler.profile() as trace:
        assert client.get(key, default="fallback") == stored
    assert cache_calls(trace)[0].hit is True


def test_a_pickled_zero_is_a_hit(memcached, key):
    client = Client(memcached.address, serde=serde.pickle_serde)
    client.set(key, 0)
    with ioprofiler.profile() as trace:
        value = client.get(key)
    assert value == 0 and type(value) is int
    assert cache_calls(trace)[0].hit is True


def test_the_callers_default_comes_back_on_a_miss(client, key):
    marker = object()
    with ioprofiler.profile() as trace:
        assert client.get(key, marker) is marker
        assert client.get(key, default=marker) is marker
        assert client.gets(key, default="d", cas_default="c") == ("d", "c")
    assert [e.hit for e in cache_calls(trace)] == [False, False, False]


def test_gets_reports_hit_and_returns_value_and_cas(client, key):
    client.set(key, b"v")
    with ioprofiler.profile() as trace:
        value, cas = client.gets(key)
    assert value == b"v" and cas.isdigit()
    assert lines(trace) == [f"Cache GETS HIT, keys: {key}"]


def test_get_many_reports_hits_out_of_keys_and_names_the_misses(client, key):
    client.set_many({key + "a": b"1", key + "b": b"2"})
    wanted = [key + "a", key + "b", key + "c"]
    with ioprofiler.profile() as trace:
        found = client.get_many(wanted)
        client.get_multi([key + "a"])
        client.get_many([key + "x"])
    assert found == {key + "a": b"1", key + "b": b"2"}
    assert lines(trace) == [
        f"Cache HIT 2/3, keys: {key}a, {key}b, {key}c (missed: {key}c)",
        f"Cache HIT 1/1, keys: {key}a",
        f"Cache MISS 0/1, keys: {key}x",
    ]
    assert trace.cache_hits() == 3 and trace.cache_misses() == 2
    assert cache_calls(trace)[1].op == "get_many"  # the alias is reported by its real name


def test_an_events_names_say_what_they_hold(client, key):
    client.set(key + "a", b"1")
    with ioprofiler.profile() as trace:
        client.get_many([key + "a", key + "b", key + "c"])
        client.set(key, b"1", noreply=False)
    read, write = cache_calls(trace)
    assert (read.hit, read.hit_count, read.miss_count) == (False, 1, 2)
    assert read.missed_keys == (key + "b", key + "c")
    assert (write.hit, write.hit_count, write.miss_count, write.missed_keys) == (
        None,
        None,
        None,
        None,
    )
    with pytest.warns(DeprecationWarning, match="hit_count"):
        assert read.hits == 1
    with pytest.warns(DeprecationWarning, match="missed_keys"):
        assert read.misses == read.missed_keys


def outcome(call):
    try:
        return ("returned", call())
    except Exception as exc:
        return ("raised", type(exc), str(exc))


def test_keys_from_a_generator_behave_exactly_as_without_a_trace(client, key):
    # pymemcache reads the keys twice, so a generator fails inside the library;
    # the profiler must neither fix nor change that.
    client.set(key, b"1")
    plain = outcome(lambda: client.get_many(k for k in (key, key + "-no")))
    with ioprofiler.profile() as trace:
        traced = outcome(lambda: client.get_many(k for k in (key, key + "-no")))
        empty = client.get_many([])
        deleted = client.delete_many(k for k in (key,))
    assert traced == plain
    assert empty == {} and deleted is True
    assert [e.keys for e in cache_calls(trace)] == [(key, key + "-no"), (key,)]
    assert [e.op for e in cache_calls(trace)] == ["get_many", "delete_many"]


def test_a_key_generator_that_fails_fails_the_same_way(client):
    def failing_keys():
        yield "a"
        raise ValueError("the application's generator failed")

    for method in ("get_many", "gets_many", "delete_many"):
        ioprofiler.uninstall()
        plain = outcome(lambda m=method: getattr(client, m)(failing_keys()))
        ioprofiler.install()
        with ioprofiler.profile():
            traced = outcome(lambda m=method: getattr(client, m)(failing_keys()))
        assert traced == plain == ("raised", ValueError, "the application's generator failed")


def test_empty_batches_make_no_round_trip_and_no_event(client):
    with ioprofiler.profile() as trace:
        assert client.delete_many([]) is True
        assert client.set_many({}) == []
        assert client.get_many([]) == {}
    assert cache_calls(trace) == []


def test_writes_report_their_verb_and_outcome(client, key):
    with ioprofiler.profile() as trace:
        client.set(key, b"1")
        client.add(key, b"2")
        client.delete(key + "-never-set")
        client.incr(key, 5)
        client.set_many({key + "x": b"1", key + "y": b"2"})
        client.delete_many([key + "x", key + "y"])
    assert lines(trace) == [
        f"Cache SET, keys: {key}",
        f"Cache ADD (not stored), keys: {key}",
        f"Cache DELETE (not found), keys: {key}-never-set",
        f"Cache INCR, keys: {key}",
        f"Cache SET, keys: {key}x, {key}y",
        f"Cache DELETE, keys: {key}x, {key}y",
    ]
    assert client.get(key) == b"6"


def test_every_public_io_method_and_alias_is_wrapped():
    io_methods = {
        name
        for name, value in vars(Client).items()
        if not name.startswith("_") and callable(value) or is_ours(value)
    } - {"check_key", "close", "disconnect_all"}
    assert io_methods - {"_connect"} == set(integration.READS) | set(integration.WRITES)
    for name in io_methods:
        assert is_ours(vars(Client)[name]), name


def test_every_method_records_one_event(memcached, start_memcached, key):
    client = Client(memcached.address, default_noreply=False)
    client.set(key + "cas", b"v")
    _, cas = client.gets(key + "cas")
    calls = [
        ("set", (key, b"1")),
        ("set_many", ({key + "m": b"1"},)),
        ("set_multi", ({key + "n": b"1"},)),
        ("add", (key + "add", b"1")),
        ("replace", (key, b"2")),
        ("append", (key, b"3")),
        ("prepend", (key, b"0")),
        ("cas", (key + "cas", b"w", cas)),
        ("get", (key,)),
        ("get_many", ([key],)),
        ("get_multi", ([key],)),
        ("gets", (key,)),
        ("gets_many", ([key],)),
        ("touch", (key, 100)),
        ("incr", (key + "counter", 1)),
        ("decr", (key + "counter", 1)),
        ("delete", (key + "m",)),
        ("delete_many", ([key + "n"],)),
        ("delete_multi", ([key + "add"],)),
        ("stats", ()),
        ("cache_memlimit", (64,)),
        ("version", ()),
        ("raw_command", ("mn",)),
        ("flush_all", ()),
        ("quit", ()),
    ]
    with ioprofiler.profile() as trace:
        for name, args in calls:
            getattr(client, name)(*args)
    assert [e.op for e in cache_calls(trace)] == [
        integration.CANONICAL_OP.get(n, n) for n, _ in calls
    ]
    assert all(e.error is None for e in cache_calls(trace)), [e.line() for e in cache_calls(trace)]
    described = dict(zip((n for n, _ in calls), lines(trace), strict=True))
    assert described["replace"] == f"Cache REPLACE, keys: {key}"
    assert described["cas"] == f"Cache CAS, keys: {key}cas"
    assert described["touch"] == f"Cache TOUCH, keys: {key}"
    assert described["incr"] == f"Cache INCR (not found), keys: {key}counter"
    assert described["stats"] == "Cache STATS"
    assert described["raw_command"] == "Cache RAW, command: mn"
    assert described["quit"] == "Cache QUIT"

    doomed = start_memcached("-A")  # -A enables the shutdown command
    with ioprofiler.profile() as trace:
        Client(doomed.address).shutdown()
    assert lines(trace) == ["Cache SHUTDOWN"]


def test_pooled_client_records_each_round_trip(memcached, key):
    pool = PooledClient(memcached.address, max_pool_size=2)
    with ioprofiler.profile() as trace:
        pool.set(key, b"1")
        assert pool.get(key) == b"1"
        assert pool.get_many([key, key + "-no"]) == {key: b"1"}
    assert lines(trace) == [
        f"Cache SET, keys: {key}",
        f"Cache HIT, keys: {key}",
        f"Cache HIT 1/2, keys: {key}, {key}-no (missed: {key}-no)",
    ]


def test_hash_client_names_each_server(memcached, start_memcached):
    second = start_memcached()
    servers = [memcached.address, second.address]
    ring = HashClient(servers)
    keys = [f"user:{n}" for n in range(40)]
    with ioprofiler.profile() as trace:
        ring.set_many({k: b"x" for k in keys})
        assert len(ring.get_many(keys)) == 40
    names = {f"memcache 127.0.0.1:{port}" for _, port in servers}
    assert {e.target for e in cache_calls(trace)} == names
    reads = [e for e in cache_calls(trace) if e.op == "get_many"]
    assert len(reads) == 2  # one round trip per server
    assert sum(len(e.keys) for e in reads) == 40
    assert all(e.line().startswith("[memcache 127.0.0.1:") for e in cache_calls(trace))
    assert trace.count(target="memcache") == len(cache_calls(trace))
    for name in names:
        assert 0 < trace.count(kind="cache", target=name) < len(cache_calls(trace))


def test_retrying_client_records_the_underlying_calls(memcached, key):
    retrying = RetryingClient(Client(memcached.address), attempts=2, retry_delay=0)
    with ioprofiler.profile() as trace:
        retrying.set(key, b"1")
        assert retrying.get(key) == b"1"
    assert lines(trace) == [f"Cache SET, keys: {key}", f"Cache HIT, keys: {key}"]


def test_a_server_stopped_mid_test_is_recorded_and_the_error_reraised(start_memcached, key):
    server = start_memcached()
    client = Client(server.address)
    client.set(key, b"1")
    server.stop()
    with ioprofiler.profile() as trace:
        # Whether the kernel reports a reset or a clean close first is a race.
        with pytest.raises((ConnectionError, MemcacheUnexpectedCloseError)) as raised:
            client.get(key)
        with pytest.raises(ConnectionRefusedError):
            client.get(key)  # the client reconnects, and nobody listens
    first, second = cache_calls(trace)
    assert first.error == type(raised.value).__qualname__
    assert first.line().endswith(f"Cache GET, keys: {key} [ERROR {first.error}]")
    assert second.error == "ConnectionRefusedError"
    assert "3 errors" in trace.text()  # and the failed CONNECT inside the second GET


def test_ignore_exc_hides_the_error_from_the_app_but_not_from_the_listing(start_memcached, key):
    server = start_memcached()
    client = Client(server.address, ignore_exc=True)
    client.set(key, b"1")
    server.stop()
    with ioprofiler.profile() as trace:
        assert client.get(key, default="d") == "d"
    assert cache_calls(trace)[0].error == "error hidden by ignore_exc"
    assert (
        cache_calls(trace)[0]
        .line()
        .endswith(f"Cache MISS, keys: {key} [ERROR error hidden by ignore_exc]")
    )


def test_a_client_error_reply_is_recorded(client, key):
    client.set(key, b"not a number")
    with ioprofiler.profile() as trace:
        with pytest.raises(MemcacheClientError, match="non-numeric"):
            client.incr(key, 1)
    assert cache_calls(trace)[0].error == "MemcacheClientError"
    assert "non-numeric" in cache_calls(trace)[0].error_message


def test_hostile_keys_stay_on_one_line(client):
    hostile = "<script>\x1b[2J\nalert(1)"
    with ioprofiler.profile() as trace:
        client.get_many([hostile.encode("latin-1").replace(b"\n", b"_").replace(b" ", b"_")])
    line = cache_calls(trace)[0].line()
    assert "\x1b" not in line and "\n" not in line
    assert "\\x1b[2J" in line


def test_signatures_and_docs_are_the_librarys(monkeypatch):
    names = [*integration.READS, *integration.WRITES]
    ioprofiler.uninstall()
    plain = {n: (inspect.signature(getattr(Client, n)), getattr(Client, n).__doc__) for n in names}
    ioprofiler.install()
    for name, (signature, doc) in plain.items():
        assert inspect.signature(getattr(Client, name)) == signature
        assert getattr(Client, name).__doc__ == doc
        assert getattr(Client, name).__name__ in (name, integration.CANONICAL_OP.get(name, name))


def test_connection_refused_is_recorded_against_the_server(key):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(("127.0.0.1", port), connect_timeout=1)
    with ioprofiler.profile() as trace:
        with pytest.raises(ConnectionRefusedError):
            client.set(key, b"1")
    assert cache_calls(trace)[0].error == "ConnectionRefusedError"
