"""StatsD end to end: the middleware's exporter, Etsy's statsd daemon and Graphite's
carbon-cache, read back from whisper files. What Graphite stored for each route and shard
adds up to what the profiler recorded."""

from __future__ import annotations

import collections
import os
import time

import pytest
from werkzeug.test import Client

from ioprofiler.export import StatsD
from ioprofiler.export.names import safe_part, target_name
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.fleet import Graphite, StatsdDaemon, stack_or_skip
from tests.fleetapp import Collect, FleetShop


@pytest.fixture(scope="module")
def statsd_daemon(tmp_path_factory):
    stack_or_skip()
    folder = tmp_path_factory.mktemp("graphite")
    graphite = Graphite(folder / "carbon").start()
    try:
        daemon = StatsdDaemon(folder, graphite).start()
    except BaseException:
        graphite.stop()
        raise
    yield daemon
    daemon.stop()
    graphite.stop()


def expected_metrics(requests, prefix: str):
    """What Graphite should hold: counter totals and timer sums, from the recorded traces."""
    counters: dict[str, float] = collections.Counter()
    timers: dict[str, list[float]] = collections.defaultdict(list)
    for request in requests:
        trace, base = request.trace, f"{prefix}.{request.route}"
        counters[f"{base}.requests"] += 1
        timers[f"{base}.request_time"].append(request.duration_ms)
        counters[f"{base}.connects"] += trace.count(op="connect")
        counters[f"{base}.pool_waits"] += trace.count(op="pool_wait")
        round_trips = [e for e in trace.events if e.op != "pool_wait"]
        timers[f"{base}.io_time"].append(sum(_ms(e) for e in round_trips))
        for target in {e.target for e in round_trips}:
            kind, raw = next((e.kind, e._target) for e in round_trips if e.target == target)
            where = f"{base}.{kind}.{safe_part(target_name(raw))}"
            timers[f"{where}.io_time"].append(
                sum(_ms(e) for e in round_trips if e.target == target)
            )
            if kind == "db":
                counters[f"{where}.queries"] += trace.count(kind="db", target=target)
            else:
                counters[f"{where}.calls"] += trace.count(kind=kind, target=target)
                counters[f"{where}.hits"] += trace.cache_hits(target)
                counters[f"{where}.misses"] += trace.cache_misses(target)
            counters[f"{where}.errors"] += sum(
                1 for e in round_trips if e.target == target and e.error
            )
    return {k: v for k, v in counters.items() if v}, timers


def _ms(event) -> float:
    return (event.end_ns - event.start_ns) / 1e6


def stored(graphite: Graphite, counters, timers):
    found = {name: graphite.total(f"stats.counters.{name}.count") for name in counters}
    for name in timers:
        found[name + " (count)"] = graphite.total(f"stats.timers.{name}.count")
        found[name + " (sum)"] = graphite.total(f"stats.timers.{name}.sum")
    return found


def test_graphite_holds_what_the_profiler_recorded_per_route_and_shard(
    statsd_daemon, sqlite_shards, memcached
):
    shop = FleetShop(sqlite_shards, memcached.address)
    shop.cache.flush_all()
    for engine in sqlite_shards.values():
        engine.dispose()  # the first request to each shard connects
    prefix = f"e2e{os.getpid()}"
    exporter = StatsD("127.0.0.1", statsd_daemon.port, prefix=prefix)
    collect = Collect()
    client = Client(IOProfilerMiddleware(shop, export=[exporter, collect]))
    for url in [f"/listing/{n}" for n in range(5)] + ["/cart"] * 3 + ["/listing/1"]:
        response = client.get(url)
        assert response.status_code == 200
        response.close()
    exporter.close()
    assert exporter.dropped == 0 and exporter.sent >= 1

    counters, timers = expected_metrics(collect.requests, prefix)
    # the workload as the app was written: what the exporter must see, per route and shard
    assert counters[f"{prefix}.listing_show.db.dbshard01.queries"] == 18
    assert counters[f"{prefix}.listing_show.db.dbshard02.queries"] == 6
    cache = safe_part(f"memcache {memcached.address[0]}:{memcached.address[1]}")
    assert counters[f"{prefix}.listing_show.cache.{cache}.misses"] == 5
    assert counters[f"{prefix}.listing_show.cache.{cache}.hits"] == 7
    assert counters[f"{prefix}.cart.db.dbshard03.queries"] == 9
    assert counters[f"{prefix}.cart.db.dbshard03.errors"] == 3
    assert counters[f"{prefix}.listing_show.connects"] >= 2  # each shard's first connection

    graphite = statsd_daemon.graphite
    want = {name: float(value) for name, value in counters.items()}
    for name, values in timers.items():
        want[name + " (count)"] = float(len(values))
        want[name + " (sum)"] = sum(values)
    deadline = time.monotonic() + 30
    while True:
        found = stored(graphite, counters, timers)
        if all(found[k] == pytest.approx(v, abs=0.001 * 20) for k, v in want.items()):
            break
        if time.monotonic() > deadline:
            wrong = {k: (found[k], v) for k, v in want.items() if found[k] != pytest.approx(v)}
            pytest.fail(f"Graphite (stored, recorded) differ after 30 s: {wrong}")
        time.sleep(0.25)
    # each timer value was sent to the microsecond: the sums agree to within the rounding
    for name, values in timers.items():
        assert found[name + " (sum)"] == pytest.approx(sum(values), abs=0.0005 * len(values))
