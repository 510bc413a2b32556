"""What the middleware costs a request that asks for nothing, and what rendering a trace costs.

The cost of a profiled page, paired against the same page unprofiled, is in overhead.py.

    make bench            # or: python benchmarks/middleware.py

1. The middleware's added time per request when the parameter is absent: a trivial
   WSGI app called directly, with and without the middleware.
2. Rendering a 1,000- and a 10,000-event trace as text, JSON and HTML, and the panel's size.

Rounds alternate the configurations; figures are medians over rounds of the fastest batch.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
from collections.abc import Callable
from time import perf_counter_ns

import sqlalchemy as sa
from pymemcache.client.base import Client
from werkzeug.test import EnvironBuilder

import ioprofiler
from ioprofiler.memcached import MemcachedProcess
from ioprofiler.render.html import render_panel
from ioprofiler.render.json import render_json
from ioprofiler.render.text import listing
from ioprofiler.wsgi import IOProfilerMiddleware

TARGETS = {
    "idle middleware µs": 5.0,
    "html 10k ms": 150.0,
    "text 10k ms": 50.0,
    "html 10k MB": 3.0,
}


def fastest_us(call: Callable[[], object], n: int, batches: int = 3) -> float:
    size = max(1, n // batches)
    best = float("inf")
    gc.collect()
    for _ in range(batches):
        start = perf_counter_ns()
        for _ in range(size):
            call()
        best = min(best, (perf_counter_ns() - start) / size / 1000)
    return best


def environ(url: str) -> dict:
    return EnvironBuilder(url, environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()


def run_wsgi(app, url: str | dict) -> bytes:
    """The body of ``app`` for ``url`` (or a ready environ, copied: apps may change it)."""
    status: list[str] = []
    env = environ(url) if isinstance(url, str) else dict(url)
    body = app(env, lambda s, h, exc_info=None: status.append(s))
    try:
        return b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def idle_overhead(rounds: int) -> tuple[float, float]:
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = IOProfilerMiddleware(app)
    env = environ("/page?id=5")
    noop = lambda s, h, e=None: None  # noqa: E731
    bare, through = [], []
    for _ in range(rounds):
        bare.append(fastest_us(lambda: app(env, noop), 100_000))
        through.append(fastest_us(lambda: wrapped(env, noop), 100_000))
    return statistics.median(bare), statistics.median(through)


def shop_page(engine: sa.Engine, cache: Client, n: int):
    statement = sa.text("SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :x")
    keys = [f"Etsy_Cache_Results:c812331f123321:{i}" for i in range(n)]

    def app(environ, start_response):
        parts = ["<!doctype html><html><body><ul>"]
        with engine.connect() as conn:
            for i in range(n):
                count = conn.execute(statement, {"x": 5773453 + i % 50}).scalar()
                cache.get(keys[i])
                parts.append(f"<li>{count}</li>")
        parts.append("</ul></body></html>")
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return ["".join(parts).encode()]

    return app


def synthetic_trace(events: int, directory: str) -> ioprofiler.Trace:
    """A trace of real recorded calls: SQLite queries and memcached gets, half each."""
    engine = sa.create_engine(f"sqlite:///{directory}/dbshard02.db")
    statement = sa.text("SELECT :a AS listing, :b AS shop")
    with MemcachedProcess() as server:
        cache = Client(server.address)
        with ioprofiler.profile(max_events=events) as trace, engine.connect() as conn:
            for i in range(events // 2):
                conn.execute(statement, {"a": i, "b": f"shop {i}"})
                cache.get(f"Etsy_Cache_Results:c812331f123321:{i}")
        cache.close()
    engine.dispose()
    return trace


def rendering(rounds: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        for size in (1_000, 10_000):
            trace = synthetic_trace(size, directory)
            label = "1k" if size == 1_000 else "10k"
            for name, render in (
                ("text", lambda t=trace: listing(t)),
                ("json", lambda t=trace: render_json(t)),
                ("html", lambda t=trace: render_panel(t)),
            ):
                times = [fastest_us(render, 3, batches=3) / 1000 for _ in range(rounds)]
                figures[f"{name} {label} ms"] = statistics.median(times)
            figures[f"html {label} MB"] = len(render_panel(trace).encode()) / 1e6
            figures[f"json {label} MB"] = len(render_json(trace).encode()) / 1e6
    return figures


def verdict(name: str, value: float) -> str:
    limit = TARGETS.get(name)
    if limit is None:
        return ""
    return f"(target < {limit:g}: {'met' if value < limit else 'MISSED'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    ioprofiler.install()
    print(
        f"ioprofiler {ioprofiler.__version__}, SQLAlchemy {sa.__version__}, "
        f"Python {sys.version.split()[0]}; {args.rounds} rounds, medians of fastest batches"
    )

    bare, through = idle_overhead(args.rounds)
    added = through - bare
    print(
        f"\nmiddleware, no parameter: {bare:.2f} µs bare app, {through:.2f} µs through it: "
        f"+{added:.2f} µs {verdict('idle middleware µs', added)}"
    )

    print("\nrendering a trace of real calls:")
    for name, value in rendering(args.rounds).items():
        print(f"  {name:<14}{value:>10.2f}  {verdict(name, value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
