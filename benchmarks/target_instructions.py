"""Issue 26's four speed targets in instructions (callgrind): figures load does not move.

    python benchmarks/target_instructions.py                 # this checkout
    python benchmarks/target_instructions.py --source ../main --source .   # before, after

Each target runs in one process under callgrind, its baseline and its configuration
counted in turns (``--dump-after``: one count per ``functools.reduce``), so both see the
same process:

- recorder: the demo's six pages through WSGI, bare (ioprofiler installed, no middleware)
  and through the middleware with a Recorder that keeps nothing; the throughput ratio is
  bare / recorder. The recorder's writer thread (folding the summaries every second) is
  counted where it runs inside the counted stretch.
- asgi: a page of 1,000 SQLite queries through the ASGI middleware, unprofiled and with
  ``?ioprofiler=1`` (the panel); ratio profiled / unprofiled.
- otel: a request's 30 events handed to a sink that does nothing and to the OpenTelemetry
  exporter (attributes, SDK span); instructions added per request.
- text: the listing of a 10,000-event trace (first render, then again: findings and the
  summary of a closed trace are remembered).

``--source`` puts another checkout first on ``sys.path`` (its compiled modules must be
built, or copied when the C files are the same): the same targets, before and after.
Instructions are not time: µs figures come from the paired timings (recorder.py, asgi.py,
export.py, middleware.py).
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import gc
import glob
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {
    "recorder": ("bare", "recorder"),
    "asgi": ("unprofiled", "profiled"),
    "otel": ("nothing", "otel"),
    "text": ("first render", "again"),
}


def _counted(call, n: int) -> None:
    for _ in range(2):
        call()
    gc.collect()
    functools.reduce(lambda _, __: call(), range(n), None)


def child(target: str) -> None:
    sys.path.insert(0, str(HERE))
    import ioprofiler

    ioprofiler.install()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        if target == "recorder":
            _recorder(directory)
        elif target == "asgi":
            _asgi(directory)
        elif target == "otel":
            _otel(directory)
        else:
            _text(directory)


def _recorder(directory: Path) -> None:
    from middleware import environ, run_wsgi
    from pymemcache.client.base import Client
    from recorder import PAGES

    from demo_app.app import ShopApp
    from demo_app.shop import Shop
    from ioprofiler.memcached import MemcachedProcess
    from ioprofiler.recorder import Recorder
    from ioprofiler.wsgi import IOProfilerMiddleware

    with MemcachedProcess() as server:
        cache = Client(server.address, default_noreply=False)
        shop = Shop.from_urls(f"sqlite:///{directory}/{{shard}}.db", cache)
        bare = ShopApp(shop)
        recorded = IOProfilerMiddleware(bare, record=Recorder(directory / "r.jsonl", slow_ms=500))
        envs = [environ(url) for url in PAGES]
        for app in (bare, recorded):
            _counted(lambda app=app: [run_wsgi(app, env) for env in envs], 5)
        shop.close()


def _asgi(directory: Path) -> None:
    from asgi import drive, scope_for, shop_page
    from favorites import favorites_engine

    from ioprofiler.asgi import IOProfilerMiddleware

    engine = favorites_engine(directory / "dbshard01.db")
    page = IOProfilerMiddleware(shop_page(engine, 1000))
    for query in (b"", b"ioprofiler=1"):
        _counted(lambda query=query: drive(page, scope_for(query)), 2)
    engine.dispose()


def _otel(directory: Path) -> None:
    from export import Nothing, finished, request_trace
    from opentelemetry import context as otel_context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import set_span_in_context
    from pymemcache.client.base import Client

    from ioprofiler.export import OpenTelemetry
    from ioprofiler.memcached import MemcachedProcess

    provider = TracerProvider()
    with MemcachedProcess() as server:
        trace = request_trace(str(directory), Client(server.address))
    span = provider.get_tracer("bench").start_span("GET /listing/<id>")
    token = otel_context.attach(set_span_in_context(span))
    request = finished(trace, contextvars.copy_context())
    otel_context.detach(token)
    for sink in (Nothing(), OpenTelemetry(tracer_provider=provider)):
        _counted(lambda sink=sink: sink.handle(request), 1000)


def _text(directory: Path) -> None:
    from middleware import synthetic_trace

    from ioprofiler.render.text import listing

    trace = synthetic_trace(10_000, str(directory))
    gc.collect()
    functools.reduce(lambda _, __: listing(trace), range(1), None)  # the first render
    functools.reduce(lambda _, __: listing(trace), range(1), None)


def count(target: str, source: str | None) -> list[int]:
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "callgrind.out")
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        if source:
            env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")])
        else:
            env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=functools_reduce",
                "--dump-after=functools_reduce",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                target,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        dumps = sorted(glob.glob(out + ".*"), key=lambda name: int(name.rsplit(".", 1)[1]))
        if result.returncode != 0 or len(dumps) != 2:
            raise RuntimeError(f"{target}: {len(dumps)} dumps\n{result.stderr[-3000:]}")
        totals = []
        for dump in dumps:
            found = re.search(r"^(?:summary|totals): (\d+)", Path(dump).read_text(), re.M)
            totals.append(int(found[1]) if found else 0)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", action="append", help="a checkout to measure (default: this)")
    parser.add_argument("--target", action="append", choices=list(TARGETS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    sources = args.source or [None]
    for source in sources:
        print(f"{source or 'this checkout'}:")
        for target in args.target or list(TARGETS):
            base, other = count(target, source)
            names = TARGETS[target]
            if target == "recorder":
                figure = f"throughput {base / other:.3f}x ({base / 5 / 6:,.0f} -> "
                figure += f"{other / 5 / 6:,.0f} instructions per page)"
            elif target == "asgi":
                figure = f"{other / base:.3f}x ({base / 2:,.0f} -> {other / 2:,.0f} per page)"
            elif target == "otel":
                figure = f"+{(other - base) / 1000:,.0f} instructions per request"
            else:
                figure = f"{base:,} instructions, {names[1]} {other:,}"
            print(f"  {target:<9} {figure}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
