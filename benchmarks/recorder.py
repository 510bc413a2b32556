"""What the always-on recorder costs: throughput of the demo's pages, cost per request and
per event, and whether the writer keeps up.

    make bench            # or: PYTHONPATH=. python benchmarks/recorder.py

1. The demo shop's pages (home, listings, a shop page) called through WSGI in one process,
   paired rounds (benchmarks/paired.py): the bare application, the middleware with a
   Recorder (slow_ms=500: nothing is slow here, so every request is traced and dropped),
   and with every request kept (``sample=1.0``: the writer thread encodes and writes
   each one). Requests per second as a ratio to the bare application, per round.
2. A page making N SQLite queries (N = 0 and 100), bare and recorded: the added time at
   N = 0 is the cost per request, the growth from 0 to 100 over 100 the cost per event.
3. The writer alone: 5,000 kept requests of 30 events each (20 SQLite queries, 10 memcached
   gets) handed to a Recorder at once; kept requests per second until all are on disk.
4. Every request counted: a request without I/O, paired, through a Recorder that keeps
   nothing, counting (summary records, the default) against today's recorder that does
   not (``summary_every=None``): µs added per request on the request's thread (target:
   within 1 µs). Then the writer's share, which the request's thread does not wait for:
   CPU per request to add up a demo page's I/O (calls per target, shapes, findings).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from middleware import environ, run_wsgi
from paired import Scenario, paired, run_rounds
from pymemcache.client.base import Client

import ioprofiler
from demo_app.app import ShopApp
from demo_app.data import FIRST_LISTING_ID
from demo_app.shop import Shop
from ioprofiler.memcached import MemcachedProcess
from ioprofiler.recorder import Recorder
from ioprofiler.sinks import FinishedRequest
from ioprofiler.summary import Summary
from ioprofiler.wsgi import IOProfilerMiddleware

TARGETS = {"throughput ratio": 0.95, "writer kept/s": 1000.0, "counting µs": 1.0}
PAGES = ["/", *(f"/listing/{FIRST_LISTING_ID + n}" for n in (1, 7, 30)), "/shop/3", "/shop/8"]


class Switch:
    """The application the scenarios call, swapped by each configuration."""

    def __init__(self, app) -> None:
        self.app = app

    def serving(self, app):
        @contextlib.contextmanager
        def config() -> Iterator[None]:
            before, self.app = self.app, app
            try:
                yield
            finally:
                self.app = before

        return config


def report_pages(rounds: int, directory: Path, cache: Client) -> None:
    shop = Shop.from_urls(f"sqlite:///{directory}/{{shard}}.db", cache)
    bare = ShopApp(shop)
    dropped = Recorder(directory / "dropped.jsonl", slow_ms=500)
    kept = Recorder(directory / "kept.jsonl", slow_ms=500, sample=1.0, max_bytes=2**30)
    switch = Switch(bare)
    configs = {
        "raw": switch.serving(bare),
        "recorder": switch.serving(IOProfilerMiddleware(bare, record=dropped)),
        "recorder, all kept": switch.serving(IOProfilerMiddleware(bare, record=kept)),
    }
    envs = [environ(url) for url in PAGES]

    def pages() -> None:
        for env in envs:
            run_wsgi(switch.app, env)

    with ioprofiler.profile() as trace:
        pages()
    scenario = Scenario("demo pages", pages, calls=20)
    run_rounds(configs, [scenario], rounds)
    kept.flush()
    print("1. Demo pages (6 per call), paired rounds, median [q1 .. q3] over rounds")
    base = paired(scenario, "raw").us.median / len(PAGES)
    base_cpu = sorted(cpu for _, cpu in scenario.rounds["raw"])[len(scenario.rounds["raw"]) // 2]
    print(f"   raw: {base:.0f} µs per page, {len(trace) / len(PAGES):.0f} events per page")
    for name in ("recorder", "recorder, all kept"):
        result = paired(scenario, name)
        throughput = 1 / result.ratio.median
        print(
            f"   {name:<20} throughput {throughput:.3f}x of raw "
            f"[{1 / result.ratio.q3:.3f} .. {1 / result.ratio.q1:.3f}], "
            f"+{result.added.median / len(PAGES):.1f} µs per page "
            f"(CPU +{result.added_cpu.median / len(PAGES):.1f} µs)"
        )
        print(
            f"   {'':<20} by CPU time (steadier when the cores are shared): throughput "
            f"{base_cpu / (base_cpu + result.added_cpu.median):.3f}x of raw"
        )
    print(f"   kept requests written: {kept.written}, dropped (queue full): {kept.dropped}")
    dropped.close()
    kept.close()
    shop.close()


def query_page(engine: sa.Engine, n: int):
    def app(environ, start_response):
        with engine.connect() as conn:
            for i in range(n):
                conn.exec_driver_sql("SELECT ?", (i,)).scalar()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def report_per_event(rounds: int, directory: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{directory}/events.db")
    recorder = Recorder(directory / "events.jsonl", slow_ms=10_000)
    bare = {n: query_page(engine, n) for n in (0, 100)}
    switch = Switch(bare[0])
    scenarios = []
    configs = {}
    for n, app in bare.items():
        env = environ(f"/q{n}")
        recorded = IOProfilerMiddleware(app, record=recorder)
        configs[f"raw {n}"] = switch.serving(app)
        configs[f"recorder {n}"] = switch.serving(recorded)
        calls = 2000 if n == 0 else 40
        scenarios.append(Scenario(f"{n}", lambda env=env: run_wsgi(switch.app, env), calls))
    run_rounds(configs, scenarios, rounds)
    added = {}
    for scenario in scenarios:
        n = int(scenario.name)
        # each configuration ran every scenario: pair the matching ones only
        mine = scenario.rounds[f"recorder {n}"]
        base = scenario.rounds[f"raw {n}"]
        added[n] = sorted(m[0] - b[0] for m, b in zip(mine, base, strict=True))[len(mine) // 2]
    per_event = (added[100] - added[0]) / 100
    print("2. Cost of recording, wall µs (median over rounds)")
    print(f"   per request (no I/O):     +{added[0]:.1f} µs")
    print(f"   per event (SQLite query): +{per_event:.2f} µs")
    recorder.close()
    engine.dispose()


def report_writer(directory: Path, cache: Client) -> None:
    engine = sa.create_engine(f"sqlite:///{directory}/writer.db")
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            for i in range(20):
                conn.exec_driver_sql("SELECT ? + 1", (i,)).scalar()
        for i in range(10):
            cache.get(f"listing:{i}")
    assert len(trace) >= 30  # and the connect, when the pool opened one
    count = 5000
    recorder = Recorder(directory / "writer.jsonl", slow_ms=0, queue_size=count, max_bytes=2**30)
    now = time.time()
    requests = [
        FinishedRequest(trace, "GET", "/l/1", "", "/l/<id>", 200, now, 600.0, f"r{n}", "h", 1)
        for n in range(count)
    ]
    start = time.perf_counter()
    for request in requests:
        recorder.handle(request)
    handed = time.perf_counter() - start
    recorder.flush(timeout=120)
    elapsed = time.perf_counter() - start
    size = (directory / "writer.jsonl").stat().st_size
    print("3. Writer: 5,000 kept requests of 30 events each")
    print(f"   handed over in {handed * 1000:.0f} ms ({handed / count * 1e6:.1f} µs each)")
    print(
        f"   on disk after {elapsed:.2f} s: {recorder.written / elapsed:.0f} kept requests/s "
        f"({size / recorder.written / 1024:.1f} KiB per line; target "
        f"{TARGETS['writer kept/s']:.0f}/s), dropped {recorder.dropped}"
    )
    cpu = time.thread_time()
    for request in requests[:300]:
        recorder.encode(request, ["slow"])
    per_line = (time.thread_time() - cpu) / 300
    print(
        f"   encoding alone: {per_line * 1000:.2f} ms CPU per line, "
        f"{1 / per_line:.0f} lines/s on one free core"
    )
    recorder.close()  # before its folder goes: its writer's last summary goes in it
    engine.dispose()


def report_counting(rounds: int, directory: Path, cache: Client) -> None:
    engine = sa.create_engine(f"sqlite:///{directory}/counting.db")
    bare = query_page(engine, 0)  # the request alone: what counting adds stands out
    today = Recorder(directory / "today.jsonl", slow_ms=500, summary_every=None)
    counting = Recorder(directory / "counting.jsonl", slow_ms=500)
    switch = Switch(bare)
    configs = {
        "today": switch.serving(IOProfilerMiddleware(bare, record=today)),
        "counting": switch.serving(IOProfilerMiddleware(bare, record=counting)),
    }
    env = environ("/q0")
    scenario = Scenario("no I/O", lambda: run_wsgi(switch.app, env), calls=2000)
    run_rounds(configs, [scenario], rounds)
    result = paired(scenario, "counting", baseline="today")
    added, cpu = result.added, result.added_cpu
    print("4. Every request counted (summaries) vs today's recorder, nothing kept, paired")
    print(
        f"   a request without I/O: {added.median:+.2f} µs wall [{added.q1:+.2f} .. "
        f"{added.q3:+.2f}], CPU {cpu.median:+.2f} µs [{cpu.q1:+.2f} .. {cpu.q3:+.2f}] on the "
        f"request's thread (target {TARGETS['counting µs']:.0f} µs)"
    )
    shop = Shop.from_urls(f"sqlite:///{directory}/{{shard}}.db", cache)
    pages = ShopApp(shop)
    envs = [environ(url) for url in PAGES]
    summary = Summary()
    requests = []
    for env in envs:
        with ioprofiler.profile() as trace:
            run_wsgi(pages, env)
        requests.append(
            FinishedRequest(trace, "GET", env["PATH_INFO"], "", env["PATH_INFO"], 200,
                            time.time(), 12.5, "r", "h", 1)
        )  # fmt: skip
    count = 3000
    start = time.thread_time()
    for n in range(count):
        summary.count(requests[n % len(requests)])
    counted = (time.thread_time() - start) / count
    start = time.thread_time()
    summary.take()
    folded = (time.thread_time() - start) / count
    print(
        f"   Summary.count alone: {counted * 1e6:.2f} µs CPU per request; the writer adds "
        f"up a page's I/O in {folded * 1e6:.1f} µs CPU per request"
    )
    today.close()
    counting.close()
    shop.close()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    ioprofiler.install()
    with tempfile.TemporaryDirectory() as name, MemcachedProcess() as server:
        directory = Path(name)
        cache = Client(server.address, default_noreply=False)
        report_pages(args.rounds, directory, cache)
        report_per_event(args.rounds, directory)
        report_writer(directory, cache)
        report_counting(args.rounds, directory, cache)


if __name__ == "__main__":
    main()
