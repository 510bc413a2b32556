"""The StatsD exporter's parts: safe names, bounded cardinality, datagram packing, the
lines it sends (Graphite names and DogStatsD tags) to a real UDP socket, and drops."""

from __future__ import annotations

import logging
import socket

import pytest
from pymemcache.client.base import Client as PymemcacheClient
from werkzeug.test import Client

import ioprofiler
from ioprofiler.export import StatsD
from ioprofiler.export.names import NameBudget, check_prefix, safe_part
from ioprofiler.export.udp import UDPSender, pack
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.fleetapp import FleetShop


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def datagrams(sock: socket.socket) -> list[bytes]:
    received = []
    sock.settimeout(0.2)
    try:
        while True:
            received.append(sock.recv(65536))
    except TimeoutError:
        return received


@pytest.fixture
def shop(sqlite_shards, memcached):
    app = FleetShop(sqlite_shards, memcached.address)
    app.cache.flush_all()
    return app


def run(shop, exporter: StatsD, *urls: str) -> None:
    client = Client(IOProfilerMiddleware(shop, export=[exporter]))
    for url in urls:
        client.get(url).close()
    exporter.flush()


# -- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, name",
    [
        ("listing_show", "listing_show"),
        ("/listing/<int:listing_id>", "listing_int_listing_id"),
        ("memcache 10.0.0.5:11211", "memcache_10_0_0_5_11211"),
        ("SELECT * FROM users; --", "SELECT_FROM_users"),
        ("shop.api.v2", "shop_api_v2"),
        ("", "unknown"),
        ("/", "unknown"),
        ("é" * 10, "unknown"),
        ("x" * 100, "x" * 64),
    ],
)
def test_name_parts_keep_only_letters_digits_and_underscores(raw, name):
    assert safe_part(raw) == name


@pytest.mark.parametrize("bad", ["", ".io", "io.", "io..x", "io profiler", "io:x", 7])
def test_a_bad_prefix_is_refused_at_construction(bad):
    with pytest.raises(ValueError, match="prefix"):
        check_prefix(bad)
    with pytest.raises(ValueError, match="prefix"):
        StatsD(prefix=bad)


@pytest.mark.parametrize(
    "options, word",
    [
        ({"port": 0}, "port"),
        ({"port": "8125"}, "port"),
        ({"tags": "influx"}, "tags"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"max_names": 0}, "max_names"),
        ({"max_packet": 10}, "max_packet"),
        ({"flush_interval": 0}, "flush_interval"),
        ({"host": "no-such-host.invalid"}, "cannot resolve"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(options, word):
    with pytest.raises(ValueError, match=word):
        StatsD(**options)


def test_past_the_budget_new_names_fold_into_other_and_one_warning_is_logged(caplog):
    budget = NameBudget("route", limit=3)
    with caplog.at_level(logging.WARNING, logger="ioprofiler"):
        names = [budget.name(f"route{n}") for n in range(10)]
        again = budget.name("route1")
    assert names == ["route0", "route1", "route2"] + ["other"] * 7
    assert again == "route1"
    warnings = [r for r in caplog.records if "distinct route names" in r.getMessage()]
    assert len(warnings) == 1
    assert "route3" in warnings[0].getMessage()


def test_raw_spellings_of_one_safe_name_share_its_place():
    budget = NameBudget("target", limit=2)
    assert budget.name("a b") == budget.name("a:b") == "a_b"
    assert budget.name("c") == "c"
    assert budget.name("d") == "other"


# -- packing ----------------------------------------------------------------------------


def test_lines_are_packed_whole_into_datagrams_no_larger_than_the_limit():
    lines = [f"ioprofiler.route{n}.db.dbshard0{n % 4}.queries:{n}|c" for n in range(200)]
    packets = pack(lines, max_bytes=300)
    assert all(len(p) <= 300 for p in packets)
    assert b"\n".join(packets).decode().split("\n") == lines  # nothing cut, lost or moved
    # full datagrams: each one could not have taken the next line
    for packet, following in zip(packets, packets[1:], strict=False):
        assert len(packet) + 1 + len(following.split(b"\n")[0]) > 300


def test_a_line_longer_than_a_datagram_is_dropped_not_cut():
    assert pack(["a:1|c", "b" * 50 + ":1|c", "c:1|c"], max_bytes=20) == [b"a:1|c\nc:1|c"]
    assert pack([], max_bytes=20) == []


def test_a_datagram_the_socket_refuses_is_counted_and_nothing_raises():
    sender = UDPSender("127.0.0.1", 9)
    try:
        assert sender.send(b"x" * 70000) is False  # over UDP's own limit: EMSGSIZE
        assert sender.dropped == 1 and sender.sent == 0
    finally:
        sender.close()


# -- what is sent -----------------------------------------------------------------------


def memcache_name(memcached) -> str:
    """A memcached server's part of a metric name: its service and address, always."""
    host, port = memcached.address
    return safe_part(f"memcache {host}:{port}")


def test_graphite_names_per_route_and_target(shop, receiver, memcached):
    cache = memcache_name(memcached)
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1], prefix="shop.web")
    run(shop, exporter, "/listing/7", "/cart")
    packets = datagrams(receiver)
    lines = [line for packet in packets for line in packet.decode().split("\n")]
    values = {line.split(":")[0]: line.split(":", 1)[1] for line in lines}
    assert values["shop.web.listing_show.requests"] == "1|c"
    assert values["shop.web.listing_show.db.dbshard01.queries"] == "3|c"
    assert values["shop.web.listing_show.db.dbshard02.queries"] == "1|c"
    assert values[f"shop.web.listing_show.cache.{cache}.calls"] == "3|c"
    assert values[f"shop.web.listing_show.cache.{cache}.hits"] == "1|c"
    assert values[f"shop.web.listing_show.cache.{cache}.misses"] == "1|c"
    assert values["shop.web.cart.db.dbshard03.queries"] == "3|c"
    assert values["shop.web.cart.db.dbshard03.errors"] == "1|c"
    for timer in (
        "shop.web.listing_show.request_time",
        "shop.web.listing_show.io_time",
        "shop.web.listing_show.db.dbshard01.io_time",
        f"shop.web.listing_show.cache.{cache}.io_time",
        "shop.web.cart.db.dbshard03.io_time",
    ):
        assert values[timer].endswith("|ms") and float(values[timer][:-3]) > 0
    assert f"shop.web.cart.cache.{cache}.io_time" not in values  # the cart uses no cache
    assert all(len(p) <= 1432 for p in packets)
    assert all(set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789_.") for name in values)
    assert not any("SELECT" in line or "listing:7" in line for line in lines)


def test_dogstatsd_tags_carry_the_route_and_target(shop, receiver, memcached):
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1], tags="dogstatsd")
    run(shop, exporter, "/listing/7")
    lines = b"\n".join(datagrams(receiver)).decode().split("\n")
    assert "ioprofiler.requests:1|c|#route:listing_show" in lines
    assert "ioprofiler.db.queries:3|c|#route:listing_show,target:dbshard01" in lines
    cache = memcache_name(memcached)
    assert f"ioprofiler.cache.hits:1|c|#route:listing_show,target:{cache}" in lines
    assert any(line.startswith("ioprofiler.request_time:") for line in lines)


def test_sampled_requests_are_marked_with_their_rate(shop, receiver):
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1], sample_rate=0.5)
    run(shop, exporter, *["/cart"] * 40)
    lines = b"\n".join(datagrams(receiver)).decode().split("\n")
    sent = [line for line in lines if line.startswith("ioprofiler.cart.requests:")]
    assert sent and all(line == "ioprofiler.cart.requests:1|c|@0.5" for line in sent)
    assert 5 <= len(sent) <= 35  # about half of 40; odds of falling outside: ~1e-5


def test_many_routes_fold_into_other_on_the_wire(shop, receiver, caplog):
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1], max_names=1)
    with caplog.at_level(logging.WARNING, logger="ioprofiler"):
        run(shop, exporter, "/listing/1", "/cart", "/cart")
    names = {line.split(":")[0] for line in b"\n".join(datagrams(receiver)).decode().split("\n")}
    assert "ioprofiler.listing_show.requests" in names
    assert "ioprofiler.other.requests" in names
    assert "ioprofiler.cart.requests" not in names
    # one target allowed too: dbshard01 came first, the rest are "other"
    assert "ioprofiler.listing_show.db.other.queries" in names
    assert "ioprofiler.other.db.other.errors" in names
    assert sum("distinct" in r.getMessage() for r in caplog.records) == 2  # routes, targets


def test_a_full_queue_drops_and_counts_instead_of_growing(shop, receiver):
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1], max_queue=2, flush_interval=3600)
    client = Client(IOProfilerMiddleware(shop, export=[exporter]))
    for _ in range(5):
        client.get("/cart").close()
    assert exporter.dropped == 3
    exporter.close()
    lines = b"\n".join(datagrams(receiver)).decode().split("\n")
    assert lines.count("ioprofiler.cart.requests:1|c") == 2


def test_the_sender_thread_sends_without_being_asked(shop, receiver):
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1], flush_interval=0.05)
    client = Client(IOProfilerMiddleware(shop, export=[exporter]))
    client.get("/cart").close()
    receiver.settimeout(5)
    assert b"ioprofiler.cart.requests:1|c" in receiver.recv(65536)
    exporter.close()


def test_pool_waits_and_connects_are_counted_per_route(tmp_path, receiver):
    import threading

    import sqlalchemy as sa

    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'dbshard09.db'}", pool_size=1, max_overflow=0, pool_timeout=10
    )
    holding, release = threading.Event(), threading.Event()

    def hold_the_only_connection():
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            holding.set()
            release.wait(10)

    def app(environ, start_response):
        environ["ioprofiler.route"] = "report"
        threading.Timer(0.05, release.set).start()
        with engine.connect() as conn:  # waits for the holder, on the pool's one connection
            conn.exec_driver_sql("SELECT 2")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    assert holding.wait(10)
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1])
    Client(IOProfilerMiddleware(app, export=[exporter])).get("/report").close()
    holder.join(10)
    engine.dispose()
    exporter.flush()
    lines = b"\n".join(datagrams(receiver)).decode().split("\n")
    values = {line.split(":")[0]: line.split(":", 1)[1] for line in lines}
    assert values["ioprofiler.report.pool_waits"] == "1|c"
    waited = float(values["ioprofiler.report.pool_wait_time"].split("|")[0])
    assert waited >= 40  # the holder let go after 50 ms
    assert float(values["ioprofiler.report.io_time"].split("|")[0]) < waited  # not I/O
    assert values["ioprofiler.report.db.dbshard09.queries"] == "1|c"
    assert "ioprofiler.report.connects" not in values  # the holder opened the connection


def test_a_servers_series_keeps_its_name_when_the_process_meets_a_second_server(
    shop, receiver, memcached, start_memcached
):
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1], flush_interval=3600)
    client = Client(IOProfilerMiddleware(shop, export=[exporter]))

    def cache_series(url: str) -> set[str]:
        client.get(url).close()
        exporter.flush()
        lines = b"\n".join(datagrams(receiver)).decode().split("\n")
        return {line.split(":")[0] for line in lines if ".cache." in line}

    before = cache_series("/listing/7")
    second = start_memcached()
    with ioprofiler.profile():  # the process now talks to two memcached servers
        PymemcacheClient(second.address).get("elsewhere")
    after = cache_series("/listing/8")
    metrics = ("calls", "hits", "misses", "io_time")
    cache = memcache_name(memcached)
    assert before == after == {f"ioprofiler.listing_show.cache.{cache}.{m}" for m in metrics}
    exporter.close()


def test_constant_dogstatsd_tags_go_first_on_every_line(shop, receiver):
    tags = ["env:prod", "service:shop"]
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1], tags=tags)
    run(shop, exporter, "/listing/7")
    lines = b"\n".join(datagrams(receiver)).decode().split("\n")
    assert "ioprofiler.requests:1|c|#env:prod,service:shop,route:listing_show" in lines
    assert (
        "ioprofiler.db.queries:3|c|#env:prod,service:shop,route:listing_show,target:dbshard01"
        in lines
    )
    assert all("|#env:prod,service:shop,route:" in line for line in lines)


@pytest.mark.parametrize("bad", [["env prod"], ["a|b"], [""], ["x,y"], ["#x"], [7], "env:prod"])
def test_a_bad_constant_tag_is_refused(bad):
    with pytest.raises(ValueError, match="tag"):
        StatsD(tags=bad)


def test_a_graphite_prefix_can_name_the_host(shop, receiver):
    exporter = StatsD("127.0.0.1", receiver.getsockname()[1], prefix="shop.{host}")
    run(shop, exporter, "/cart")
    lines = b"\n".join(datagrams(receiver)).decode().split("\n")
    host = safe_part(socket.gethostname())
    assert f"shop.{host}.cart.requests:1|c" in lines
    assert all(line.startswith(f"shop.{host}.cart.") for line in lines)


@pytest.fixture
def daemon_moves(monkeypatch):
    """``statsd.test`` resolves to whatever address ``moves["to"]`` holds; lookups counted."""
    real = socket.getaddrinfo
    moves = {"to": "127.0.0.1", "lookups": 0}

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "statsd.test":
            return real(host, port, *args, **kwargs)
        moves["lookups"] += 1
        to = moves["to"] if isinstance(moves["to"], tuple) else (moves["to"], port)
        return real(*to, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return moves


@pytest.fixture
def two_receivers():
    """Receivers on 127.0.0.1 and 127.0.0.2 (both loopback), on one port."""
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    first.bind(("127.0.0.1", 0))
    second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    second.bind(("127.0.0.2", first.getsockname()[1]))
    yield first, second
    first.close()
    second.close()


def test_the_daemons_host_is_looked_up_again_where_metrics_are_sent(
    shop, daemon_moves, two_receivers
):
    first, second = two_receivers
    port = first.getsockname()[1]
    exporter = StatsD("statsd.test", port, resolve_every=0, flush_interval=3600)
    client = Client(IOProfilerMiddleware(shop, export=[exporter]))
    client.get("/cart").close()
    assert daemon_moves["lookups"] == 1  # at construction; never on the request's thread
    exporter.flush()
    assert b"ioprofiler.cart.requests:1|c" in b"\n".join(datagrams(first))
    daemon_moves["to"] = "127.0.0.2"  # the daemon moved (a new container, a DNS change)
    client.get("/cart").close()
    exporter.flush()
    assert b"ioprofiler.cart.requests:1|c" in b"\n".join(datagrams(second))
    assert datagrams(first) == []
    exporter.close()


def test_a_failed_send_has_the_host_looked_up_again(shop, daemon_moves, receiver):
    daemon_moves["to"] = ("127.0.0.1", 0)  # an address no datagram can be sent to
    exporter = StatsD("statsd.test", receiver.getsockname()[1], flush_interval=3600)
    client = Client(IOProfilerMiddleware(shop, export=[exporter]))
    client.get("/cart").close()
    exporter.flush()
    assert exporter.sent == 0 and exporter.dropped >= 1
    daemon_moves["to"] = "127.0.0.1"
    client.get("/cart").close()
    exporter.flush()  # long before resolve_every: the failure asked for the lookup
    assert daemon_moves["lookups"] == 2
    assert b"ioprofiler.cart.requests:1|c" in b"\n".join(datagrams(receiver))
    exporter.close()
