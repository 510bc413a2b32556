"""Every request counted: the histograms' error and exact merging, and the recorder's
summary records (per route, at the interval and at close, bounded), written by a real
Recorder behind the middleware into a real log."""

from __future__ import annotations

import json
import logging
import math
import random
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from werkzeug.test import Client

from ioprofiler.recorder import Recorder
from ioprofiler.summary import ACCURACY, Histogram, RouteTotals, merge_routes
from ioprofiler.wsgi import IOProfilerMiddleware
from tests import test_recorder_failures
from tests.fleetapp import FleetShop
from tests.gunicorn import gunicorn, stop

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def exact_quantile(values: list[float], q: float) -> float:
    """The value of rank ceil(q * n): what the histogram's quantile approximates."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def summaries(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [record for record in records if record.get("type") == "summary"]


def kept(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [record for record in records if "type" not in record]


@pytest.mark.parametrize("seed", range(20))
def test_histograms_merge_exactly_and_percentiles_stay_within_the_stated_error(seed):
    rng = random.Random(seed)
    durations = [rng.lognormvariate(2, 1.5) for _ in range(rng.randrange(1, 3000))]
    durations += [0.0, 1e-6, 0.001, 1.0, 250.0][: rng.randrange(6)]  # edges, sometimes
    whole = Histogram()
    parts = [Histogram() for _ in range(rng.randrange(1, 6))]  # processes, hosts, files
    for ms in durations:
        whole.add(ms)
        rng.choice(parts).add(ms)
    rng.shuffle(parts)
    merged = Histogram()
    for part in parts:
        merged.merge(Histogram.from_json(json.loads(json.dumps(part.to_json()))))
    assert merged == whole  # bucket for bucket, whatever the order and the split
    assert merged.total == len(durations)
    for q in (0.5, 0.9, 0.95, 0.99, 1.0):
        exact = max(exact_quantile(durations, q), 0.001)  # below 1 µs counts as 1 µs
        assert abs(merged.quantile(q) - exact) <= ACCURACY * exact * (1 + 1e-9)


def test_a_damaged_histogram_or_route_is_refused_not_guessed():
    for damaged in ({"3": -1}, {"x": 2}, {"3": 1.5}, [1, 2], {"3": True}):
        with pytest.raises(ValueError):
            Histogram.from_json(damaged)
    good = {"requests": 2, "duration_ms": {"10": 2}, "status": {"2xx": 2}}
    assert RouteTotals.from_json(good).requests == 2
    for field, value in (("requests", 3), ("status", {"2xx": "2"}), ("targets", [])):
        with pytest.raises(ValueError):
            RouteTotals.from_json({**good, field: value})


@pytest.fixture
def shop(sqlite_shards, memcached):
    return FleetShop(sqlite_shards, memcached.address)


def load(app, urls: list[str]) -> None:
    client = Client(app)
    for url in urls:
        client.get(url).close()  # the body's close() finishes the request


def test_every_request_is_counted_per_route_with_its_io(shop, tmp_path):
    log = tmp_path / "io.jsonl"
    recorder = Recorder(log, slow_ms=10_000)
    load(IOProfilerMiddleware(shop, record=recorder), ["/listing/7"] * 30 + ["/cart"] * 12)
    recorder.close()
    # only the carts are kept (their failing statement); every request is counted
    assert {(r["route"], r["reason"]) for r in kept(log)} == {("cart", "io_error")}
    (summary,) = summaries(log)
    assert summary["accuracy"] == ACCURACY and summary["from_ts"] <= summary["ts"]
    routes = merge_routes([summary])
    listing, cart = routes["listing_show"], routes["cart"]
    assert (listing.requests, listing.detailed, listing.status) == (30, 30, {"2xx": 30})
    assert listing.duration.total == listing.io.total == 30
    assert listing.targets["dbshard01"][0] == 3 * 30  # calls per request per target: 3
    assert listing.targets["dbshard02"][0] == 30
    shapes = summary["routes"]["listing_show"]["shapes"]
    by_target = {(s["target"], s["shape"]): s["calls"] for s in shapes}
    count = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?"
    assert by_target == {("dbshard01", count): 90, ("dbshard02", count): 30}
    assert cart.requests == 12 and cart.targets["dbshard03"][0] == 3 * 12
    assert cart.examined == 12  # findings looked for in each (up to 20 per summary)
    assert "5773453" not in json.dumps(summary)  # shapes, never values


def test_summaries_come_every_interval_and_at_close_and_add_up(shop, tmp_path):
    log = tmp_path / "io.jsonl"
    recorder = Recorder(log, slow_ms=10_000, summary_every=0.2)
    app = IOProfilerMiddleware(shop, record=recorder)
    load(app, ["/listing/1"] * 5)
    deadline = time.monotonic() + 30
    while not (log.stat().st_size and summaries(log)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(summaries(log)) == 1  # written by the interval, before close
    load(app, ["/listing/2"] * 7 + ["/cart"] * 2)
    recorder.close()
    records = summaries(log)
    assert len(records) >= 2
    assert sum(r["routes"].get("listing_show", {}).get("requests", 0) for r in records) == 12
    assert merge_routes(records)["cart"].requests == 2
    for earlier, later in zip(records, records[1:]):  # noqa: B905
        assert earlier["ts"] == later["from_ts"]  # intervals meet, nothing counted twice


def test_the_last_summary_is_written_at_exit(tmp_path):
    script = f"""
import time, ioprofiler
from ioprofiler.recorder import Recorder
from ioprofiler.sinks import FinishedRequest
recorder = Recorder({str(tmp_path / "io.jsonl")!r}, slow_ms=10_000)
for n in range(250):
    with ioprofiler.profile() as trace:
        pass
    recorder.handle(FinishedRequest(trace, "GET", "/", "", "/home", 200, time.time(),
                                    1.0 + n, f"id{{n}}", "h", 1))
"""  # no close(): the process just ends
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    (summary,) = summaries(tmp_path / "io.jsonl")
    home = merge_routes([summary])["/home"]
    assert home.requests == home.detailed == 250
    assert home.duration.quantile(0.5) == pytest.approx(125.0, rel=ACCURACY)


def test_a_request_kept_for_a_reason_is_counted_as_well(shop, tmp_path):
    log = tmp_path / "io.jsonl"
    recorder = Recorder(log, slow_ms=10_000, sample=1.0)
    load(IOProfilerMiddleware(shop, record=recorder), ["/listing/3"] * 4)
    recorder.close()
    assert [r["reasons"] for r in kept(log)] == [["sample"]] * 4
    assert merge_routes(summaries(log))["listing_show"].requests == 4


def test_routes_past_the_limit_are_counted_as_other(tmp_path, caplog):
    def app(environ, start_response):
        environ["ioprofiler.route"] = environ["PATH_INFO"]  # a route per path: a mistake
        status = "404 Not Found" if environ["PATH_INFO"].endswith("9") else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    log = tmp_path / "io.jsonl"
    recorder = Recorder(log, max_routes=3)
    load(IOProfilerMiddleware(app, record=recorder), [f"/item/{n}" for n in range(10)])
    recorder.close()
    (summary,) = summaries(log)
    assert set(summary["routes"]) == {"/item/0", "/item/1", "/item/2", "other"}
    other = summary["routes"]["other"]
    assert other["requests"] == 7 and other["status"] == {"2xx": 6, "4xx": 1}
    assert "raise max_routes" in caplog.text


def test_counting_can_be_turned_off(shop, tmp_path):
    log = tmp_path / "io.jsonl"
    recorder = Recorder(log, summary_every=None)
    load(IOProfilerMiddleware(shop, record=recorder), ["/listing/4"])
    recorder.close()
    assert log.read_text() == ""
    with pytest.raises(ValueError, match="summary_every"):
        Recorder(log, summary_every=0)


# -- under gunicorn ------------------------------------------------------------------------

REQUESTS = 600


def sleep_ms(n: int) -> tuple[str, int]:
    """Request n's URL kind and sleep: fast ones of 2..41 ms, every 7th slow of 50..149 ms."""
    return ("slow", 50 + (n * 37) % 100) if n % 7 == 0 else ("fast", 2 + (n * 13) % 40)


@pytest.fixture
def timed_gunicorn(tmp_path):
    timings = tmp_path / "timings"
    timings.mkdir()
    log = tmp_path / "logs" / "io.jsonl"
    env = {
        "IOP_LOG": str(log),
        "IOP_DB": str(tmp_path / "timed.db"),
        "IOP_TIMINGS": str(timings),
        "IOP_SUMMARY_EVERY": "1",
    }
    with gunicorn("tests.timed_app:app", env, workers=3) as (base, server):
        yield base, log, timings, server


def timed(timings, name: str) -> dict[str, list[float]]:
    """Every request's duration per route, as the timer ``name`` of each worker measured it."""
    measured: dict[str, list[float]] = {}
    for file in timings.glob(f"*.{name}"):
        for line in file.read_text().splitlines():
            route, ms = line.split()
            measured.setdefault(route, []).append(float(ms))
    return measured


def test_gunicorn_workers_count_every_request_and_the_merged_p95_is_the_apps(timed_gunicorn):
    base, log, timings, server = timed_gunicorn

    def get(n: int) -> float:
        kind, ms = sleep_ms(n)
        start = time.perf_counter()
        with urllib.request.urlopen(f"{base}/{kind}/{ms}", timeout=60) as response:
            assert response.read() == b"ok"
        return (time.perf_counter() - start) * 1000

    with ThreadPoolExecutor(8) as pool:
        client_ms = list(pool.map(get, range(1, REQUESTS + 1)))
    assert stop(server) == 0  # graceful: each worker writes its last summary

    records = summaries(log)
    assert len({r["pid"] for r in records}) > 1, "every worker counts its own requests"
    routes = merge_routes(records)
    # the app's own timer, and one around the middleware: the recorder's clock starts and
    # stops between the two, so its percentiles lie between theirs (order statistics keep
    # the order of durations that are each in between), within the histogram's error
    measured = timed(timings, "app")
    outer = timed(timings, "outer")
    sent = [sleep_ms(n)[0] for n in range(1, REQUESTS + 1)]
    for kind in ("fast", "slow"):
        route = f"/{kind}/<int:ms>"
        totals = routes[route]
        assert totals.requests == sent.count(kind) == len(measured[route]) == len(outer[route])
        assert totals.detailed == totals.requests and totals.targets["timed"][0] == totals.requests
        for q in (0.5, 0.95, 0.99):
            low, high = exact_quantile(measured[route], q), exact_quantile(outer[route], q)
            estimate = totals.duration.quantile(q)
            print(f"{route} p{q * 100:g}: summaries {estimate:.2f} ms, the app {low:.2f} ms")
            assert low * (1 - ACCURACY) <= estimate <= high * (1 + ACCURACY)
    top = subprocess.run(
        [str(BIN / "ioprofiler"), "top", str(log), "--json"], capture_output=True, text=True
    )
    assert top.returncode == 0, top.stderr
    rows = [json.loads(line) for line in top.stdout.splitlines()]
    every = {row["route"]: row for row in rows if row["from"] == "summaries"}
    for route, durations in measured.items():
        assert every[route]["requests"] == len(durations)
        low, high = exact_quantile(durations, 0.95), exact_quantile(outer[route], 0.95)
        assert low * (1 - ACCURACY) <= every[route]["p95_ms"] <= high * (1 + ACCURACY)
    assert all(row["from"] == "kept" for row in rows[: len(rows) - len(every)])
    client_p95 = exact_quantile(client_ms, 0.95)
    print(f"the load generator's own p95, queueing included: {client_p95:.1f} ms")


def test_top_gives_each_routes_rate_and_percentiles_from_every_request(shop, tmp_path):
    log = tmp_path / "io.jsonl"
    recorder = Recorder(log, slow_ms=10_000)
    load(IOProfilerMiddleware(shop, record=recorder), ["/listing/7"] * 30 + ["/cart"] * 12)
    recorder.close()
    with log.open("a") as damaged:
        damaged.write('{"type":"summary","from_ts":1,"ts":2,"routes":{"cart":{"requests":"9"}}}\n')
    done = subprocess.run(
        [str(BIN / "ioprofiler"), "top", str(log)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("12 kept requests (slow, failing or sampled: not every request)")
    start = lines.index(
        "every request, 42 requests counted by the recorders' summaries; percentiles within 1%"
    )
    rows = {line.split()[0]: line.split() for line in lines[start + 2 :]}
    assert rows["listing_show"][1] == "30" and rows["cart"][1] == "12"
    assert rows["cart"][-1] == "0"  # no 5xx: the cart catches its failing statement
    assert "skipped 1 line" in done.stderr  # the damaged summary, counted, not merged


small_fs = test_recorder_failures.small_fs  # a real 1 MiB tmpfs, to fill


def test_a_summary_the_full_disk_refused_is_counted_in_the_next(small_fs, shop, caplog):
    log = small_fs / "io.jsonl"
    recorder = Recorder(log, slow_ms=10_000, summary_every=0.2)
    app = IOProfilerMiddleware(shop, record=recorder)
    filler = test_recorder_failures.fill(small_fs)
    with caplog.at_level(logging.WARNING, logger="ioprofiler"):
        load(app, ["/listing/1"] * 6)
        deadline = time.monotonic() + 30
        while "could not write" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "No space left on device" in caplog.text and log.read_text() == ""
        filler.unlink()
        while not log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # the next summary holds the six
        assert "works again" in caplog.text
        load(app, ["/listing/2"] * 4)  # and the writer goes on
        recorder.close()
    assert [r["routes"]["listing_show"]["requests"] for r in summaries(log)][0] == 6
    assert merge_routes(summaries(log))["listing_show"].requests == 10  # none lost
