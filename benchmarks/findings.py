"""What the findings add to rendering a trace: ``find(trace)`` on 10,000 recorded events.

    make bench            # or: python benchmarks/findings.py

Traces of real calls (SQLite shard files, a private memcached), each 10,000 events:

- ``n+1``: one statement shape with 5,000 different values and 5,000 single-key cache misses
  (an N+1 finding and a low hit ratio: the detectors' work is largest when they find);
- ``mixed``: pages of a sharded shop: cache miss, index query, per-shard queries in series,
  the fill, a duplicate read (most finding kinds at once);
- ``inline``: 10,000 statements with their values inline in the text, so every statement is
  a distinct string to fold into its shape (the worst case: nothing is cached);
- ``module``: 10,000 statements from a loop at the end of a 1,500-line script, at module
  level: every callsite is that script's one large code object (hashing a code object
  hashes its constants, so a count keyed by it grows with the script).

For each, CPU time of this thread (the machine is shared: wall time there measures the
neighbours), the median over rounds of the fastest of three calls:

- ``cold``: ``find`` on a trace no one has rendered, in a process that has folded none of
  its statements into shapes yet;
- ``in render``: ``find`` as a render calls it, after the panel's own analysis has folded the
  statements (what findings add to showing a trace);
- ``panel``: rendering the whole panel, findings included, for scale.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
from collections.abc import Callable
from time import thread_time_ns

import sqlalchemy as sa
from pymemcache.client.base import Client

import ioprofiler
from ioprofiler import findings
from ioprofiler.findings import find
from ioprofiler.memcached import MemcachedProcess
from ioprofiler.render.html import render_panel
from ioprofiler.sql_text import _shape

EVENTS = 10_000
TARGET_MS = 30.0
SHARDS = ("dbshard01", "dbshard02", "dbshard03", "dbshard04")


def fastest_ms(call: Callable[[], object], before: Callable[[], object], times: int = 3) -> float:
    """CPU milliseconds of the fastest of ``times`` calls, ``before()`` run before each."""
    gc.collect()
    best = float("inf")
    for _ in range(times):
        before()
        start = thread_time_ns()
        call()
        best = min(best, (thread_time_ns() - start) / 1e6)
    return best


def forget_all() -> None:
    _shape.cache_clear()
    findings._found.clear()


def engines(directory: str) -> dict[str, sa.Engine]:
    made = {}
    for name in ("index", *SHARDS):
        engine = sa.create_engine(f"sqlite:///{directory}/{name}.db")
        ioprofiler.label(engine, name)
        made[name] = engine
    return made


def n_plus_one(db: dict[str, sa.Engine], cache: Client) -> ioprofiler.Trace:
    statement = sa.text("SELECT :a AS listing, :b AS shop")
    with ioprofiler.profile(max_events=EVENTS) as trace, db["dbshard01"].connect() as conn:
        for i in range(EVENTS // 2):
            conn.execute(statement, {"a": i, "b": f"shop {i}"})
            cache.get(f"Etsy_Cache_Results:c812331f123321:{i}")
    return trace


def mixed(db: dict[str, sa.Engine], cache: Client) -> ioprofiler.Trace:
    index = sa.text("SELECT :id AS shard")
    per_shard = sa.text("SELECT :id AS listing, :shard AS shard")
    with ioprofiler.profile(max_events=EVENTS) as trace:
        page = 0
        while len(trace) < EVENTS - 8:
            key = f"page:{page}"
            if cache.get(key) is None:
                with db["index"].connect() as conn:
                    conn.execute(index, {"id": page})
                for shard in SHARDS:
                    with db[shard].connect() as conn:
                        conn.execute(per_shard, {"id": page, "shard": shard})
                cache.set(key, b"x", expire=60)
            cache.get(key)  # read again: a duplicate
            page += 1
    return trace


def inline(db: dict[str, sa.Engine], cache: Client) -> ioprofiler.Trace:
    with ioprofiler.profile(max_events=EVENTS) as trace, db["dbshard02"].connect() as conn:
        for i in range(EVENTS):
            conn.exec_driver_sql(f"SELECT {i} AS listing, 'shop {i}' AS shop")
    return trace


MODULE_LINES = 1_500


def module(db: dict[str, sa.Engine], cache: Client) -> ioprofiler.Trace:
    settings = [
        f"SETTING_{i} = {{'name': 'setting {i}', 'value': {i}}}" for i in range(MODULE_LINES)
    ]
    loop = [
        "with profile(max_events=EVENTS) as trace, engine.connect() as conn:",
        "    for i in range(EVENTS):",
        "        conn.execute(statement, {'a': i})",
    ]
    with tempfile.NamedTemporaryFile("w", suffix="_script.py", delete=False) as script:
        script.write("\n".join(settings + loop) + "\n")
    names = {
        "profile": ioprofiler.profile,
        "EVENTS": EVENTS,
        "engine": db["dbshard03"],
        "statement": sa.text("SELECT :a AS listing"),
    }
    with open(script.name) as source:
        exec(compile(source.read(), script.name, "exec"), names)
    return names["trace"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    ioprofiler.install()
    print(
        f"ioprofiler {ioprofiler.__version__}, SQLAlchemy {sa.__version__}, "
        f"Python {sys.version.split()[0]}; {args.rounds} rounds, medians of the fastest of 3"
    )
    print(f"\n{'trace':<8}{'events':>8}{'cold ms':>9}{'in render ms':>14}{'panel ms':>10}  found")
    with tempfile.TemporaryDirectory() as directory, MemcachedProcess() as server:
        db = engines(directory)
        cache = Client(server.address)
        for name, make in (
            ("n+1", n_plus_one),
            ("mixed", mixed),
            ("inline", inline),
            ("module", module),
        ):
            cache.flush_all()
            trace = make(db, cache)
            cold, warm, panel = [], [], []
            for _ in range(args.rounds):
                cold.append(fastest_ms(lambda t=trace: find(t), forget_all))
                render_panel(trace)  # the statements are folded now, as in a render
                warm.append(fastest_ms(lambda t=trace: find(t), findings._found.clear))
                panel.append(fastest_ms(lambda t=trace: render_panel(t), findings._found.clear))
            found = ", ".join(sorted({f.kind for f in find(trace)}))
            added = statistics.median(warm)
            verdict = "met" if added < TARGET_MS else "MISSED"
            print(
                f"{name:<8}{len(trace):>8}{statistics.median(cold):>9.2f}{added:>14.2f}"
                f"{statistics.median(panel):>10.2f}  {found}"
            )
            print(f"{'':<8}added to a render: target < {TARGET_MS:g} ms: {verdict}")
        cache.close()
        for engine in db.values():
            engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
