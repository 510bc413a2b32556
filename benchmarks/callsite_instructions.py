"""The callsite lookup compiled and pure, in instructions per recorded call (callgrind).

    make bench-callsite                                   # needs valgrind
    python benchmarks/callsite_instructions.py --calls 4000

Wall and CPU time on a shared machine move with the neighbours' load; instruction counts do
not. Each (scenario, configuration) runs in a process of its own under callgrind, which
counts only what runs inside the measured loop: the loop runs inside ``functools.reduce``
and callgrind collects inside that function only (``--toggle-collect``). Address-space
randomisation is turned off (``setarch -R``) and the hash seed fixed (0, or PYTHONHASHSEED if
set), so reruns agree to a few instructions; another seed can move a count by a few thousand
(a hot attribute lookup missing the type cache). The garbage collector is paused during the
counted calls. Before the loop every path runs warm (imports, connections, callsite caches).
Instructions are not time (a cache miss costs more than an add): this compares the two
lookups, the paired timings in overhead.py say what they cost. Configurations:

- raw:                     ioprofiler not installed
- idle:                    ioprofiler installed, no trace open
- recording, no callsite:  a trace open, the callsite lookup replaced by a C call returning None
- recording, pure lookup:  the pure-Python callsite lookup
- recording, compiled:     the compiled lookup (ioprofiler._speedups), when built

Scenarios: a SQLAlchemy statement on SQLite, the same through SQLAlchemy's asyncio engine
(aiosqlite: the lookup crosses from the statement's greenlet to the awaiting coroutine), and
a pymemcache get against a private memcached.

Any CPython with valgrind: the compiled lookup's configuration is left out where it is not in
use (``ioprofiler doctor`` says why). ``--scenario`` picks scenarios, ``--jobs`` runs that many
callgrind processes at once (counts do not depend on it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

CONFIGS = (
    "raw",
    "idle",
    "recording, no callsite",
    "recording, pure lookup",
    "recording, compiled",
)
SCENARIOS = ("SQL statement", "SQL statement (asyncio)", "memcache get (hit)")
WARM = 50


def _scenario(name: str, directory: str, memcached: str) -> Callable[[int], object]:
    """A function running ``n`` calls of the scenario."""
    import sqlalchemy as sa

    if name == "memcache get (hit)":
        from pymemcache.client.base import Client

        host, port = memcached.rsplit(":", 1)
        client = Client((host, int(port)))
        client.set("hit", b"x" * 100)
        return lambda n: [client.get("hit") for _ in range(n)]
    statement = sa.text("SELECT :x")
    if name == "SQL statement":
        conn = sa.create_engine(f"sqlite:///{directory}/bench.db").connect()
        return lambda n: [conn.execute(statement, {"x": 1}).scalar() for _ in range(n)]
    from sqlalchemy.ext.asyncio import create_async_engine

    loop = asyncio.new_event_loop()
    engine = create_async_engine(f"sqlite+aiosqlite:///{directory}/bench.db")
    conn = loop.run_until_complete(engine.connect().start())

    async def statements(n: int) -> None:
        for _ in range(n):
            (await conn.execute(statement, {"x": 1})).scalar()

    return lambda n: loop.run_until_complete(statements(n))


def child(scenario: str, config: str, calls: int, memcached: str) -> None:
    """Runs under callgrind: set up, warm, then ``calls`` calls inside functools.reduce."""
    import ioprofiler
    from ioprofiler import callsite

    with tempfile.TemporaryDirectory() as directory:
        ioprofiler.install()
        run = _scenario(scenario, directory, memcached)
        with ioprofiler.profile():
            run(WARM)
        if config == "raw":
            ioprofiler.uninstall()
        elif config == "recording, no callsite":
            callsite.find = {}.get  # a C call that returns None
        elif config == "recording, pure lookup":
            callsite.find = callsite._find_pure
        elif config == "recording, compiled" and not callsite.accelerated:
            raise SystemExit("the compiled lookup is not in use")
        traced = config != "idle"
        with ioprofiler.profile(max_events=sys.maxsize) if traced else contextlib.nullcontext():
            if config != "raw":
                run(WARM)  # this configuration's own caches warm too
            gc.collect()
            gc.disable()  # a collection lands where the allocation count says: by chance
            functools.reduce(lambda _, n: run(n), [calls], None)


def count(scenario: str, config: str, calls: int, memcached: str) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=functools_reduce",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        scenario,
        config,
        "--calls",
        str(calls),
        "--memcached",
        memcached,
    ]
    if shutil.which("setarch"):
        command = ["setarch", os.uname().machine, "-R", *command]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={"PYTHONHASHSEED": "0", **os.environ},  # a seed given wins
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{scenario} / {config} failed:\n{result.stdout}\n{result.stderr}")
    print(f"# {scenario} / {config}: {int(found[1]) / calls:,.0f}", file=sys.stderr, flush=True)
    return int(found[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls counted per process")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--memcached", default="", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="(default: all)")
    parser.add_argument("--config", action="append", choices=CONFIGS, help="(default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="callgrind processes at a time")
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.calls, args.memcached)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)")
        return 1

    from ioprofiler import callsite
    from ioprofiler.memcached import MemcachedProcess

    configs = [c for c in CONFIGS if c != "recording, compiled" or callsite.accelerated]
    configs = [c for c in configs if c == "raw" or c in (args.config or configs)]
    print(
        f"instructions per call (callgrind, {args.calls} calls counted after warming; "
        f"Python {sys.version.split()[0]}, compiled lookup "
        f"{'in use' if callsite.accelerated else 'not in use'})"
    )
    with MemcachedProcess() as server:
        memcached = f"{server.address[0]}:{server.address[1]}"
        scenarios = args.scenario or SCENARIOS
        jobs = [(scenario, config) for scenario in scenarios for config in configs]
        with ThreadPoolExecutor(args.jobs) as pool:
            counts = pool.map(lambda job: count(*job, args.calls, memcached), jobs)
            counted = dict(zip(jobs, counts, strict=True))
        for scenario in scenarios:
            per_call = {c: counted[scenario, c] / args.calls for c in configs}
            raw, no_callsite = per_call["raw"], per_call.get("recording, no callsite")
            print(f"  {scenario}: raw {raw:,.0f}")
            for config in configs[1:]:
                line = f"    {config:<24}{per_call[config] - raw:>+9,.0f} over raw"
                if (
                    no_callsite is not None
                    and config.startswith("recording, ")
                    and (config != "recording, no callsite")
                ):
                    line += f", callsite lookup {per_call[config] - no_callsite:>+7,.0f}"
                print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
