"""What the ASGI middleware costs: a request without the parameter (target: under 5 µs
added), and a page of 1,000 SQLite queries profiled (?ioprofiler=1, panel rendered) against
the same page unprofiled (target: within 1.25×). Paired rounds (benchmarks/paired.py).

The applications never suspend, so each request is driven by sending into its coroutine:
no event loop, whose scheduling would only add noise to both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import sqlalchemy as sa
from favorites import favorites_engine
from paired import Scenario, paired, run_rounds

from ioprofiler.asgi import IOProfilerMiddleware


def drive(app, scope: dict) -> list[dict]:
    """Run one request through ``app`` to the end; the messages it sent."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    coroutine = app(dict(scope), receive, send)
    try:
        coroutine.send(None)
    except StopIteration:
        return sent
    raise RuntimeError("the benchmark's application suspended")


def scope_for(query: bytes) -> dict:
    return {
        "type": "http",
        "method": "GET",
        "path": "/page",
        "query_string": query,
        "headers": [(b"host", b"shop")],
        "client": ("127.0.0.1", 50000),
    }


async def hello(scope, receive, send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def shop_page(engine: sa.Engine, n: int):
    statement = sa.text("SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :x")

    async def app(scope, receive, send) -> None:
        parts = ["<!doctype html><html><body><ul>"]
        with engine.connect() as conn:
            for i in range(n):
                parts.append(
                    f"<li>{conn.execute(statement, {'x': 5773453 + i % 50}).scalar()}</li>"
                )
        parts.append("</ul></body></html>")
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": "".join(parts).encode()})

    return app


def using(chosen: dict, call) -> contextlib.AbstractContextManager:
    @contextlib.contextmanager
    def config():
        chosen["call"] = call
        yield

    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args(argv)

    idle: dict = {}
    wrapped = IOProfilerMiddleware(hello)
    plain = scope_for(b"id=5")
    idle_configs = {
        "raw": using(idle, lambda: drive(hello, plain)),
        "middleware": using(idle, lambda: drive(wrapped, plain)),
    }
    idle_scenario = Scenario("no parameter", lambda: idle["call"](), 20_000)
    run_rounds(idle_configs, [idle_scenario], args.rounds)
    added = paired(idle_scenario, "middleware").added
    print(
        f"ASGI middleware, request without the parameter: {added.median:+.2f} µs added "
        f"(quartiles {added.q1:+.2f}..{added.q3:+.2f}; target under 5 µs)"
    )

    with tempfile.TemporaryDirectory() as directory:
        engine = favorites_engine(Path(directory) / "dbshard01.db")
        page = IOProfilerMiddleware(shop_page(engine, args.queries))
        chosen: dict = {}
        configs = {
            "unprofiled": using(chosen, lambda: drive(page, scope_for(b""))),
            "profiled": using(chosen, lambda: drive(page, scope_for(b"ioprofiler=1"))),
        }
        scenario = Scenario("page", lambda: chosen["call"](), 1, collect=True)
        run_rounds(configs, [scenario], args.rounds)
        result = paired(scenario, "profiled", baseline="unprofiled")
        engine.dispose()
    print(
        f"ASGI page of {args.queries:,} queries, profiled vs unprofiled: "
        f"{result.ratio.median:.2f}× wall "
        f"(quartiles {result.ratio.q1:.2f}..{result.ratio.q3:.2f}), "
        f"{result.ratio_cpu.median:.2f}× CPU; target within 1.25×"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
