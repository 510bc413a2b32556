"""Instructions per recorded call, counted by callgrind: a figure that load does not move.

    python benchmarks/instructions.py                  # every scenario, raw and recording
    python benchmarks/instructions.py --calls 4000 --scenario "SQL statement"
    python benchmarks/instructions.py --scenario page --config unprofiled --config recorded

On a machine shared with other work, timings swing by more than a change to the recording
path is worth; instruction counts do not. Each (scenario, configuration) runs in a process
of its own under ``valgrind --tool=callgrind``, warms up, then makes ``--calls`` calls inside
one ``functools.reduce`` call, and only the instructions executed inside that call are
counted (``--toggle-collect=functools_reduce``). The figure is instructions per call, and
recording's cost is its count less raw's. Each runs under a few hash seeds: the type
attribute cache is a hash table shared by every type, and a new class can land where a hot
lookup then misses every time (30 lookups a call, seen here), so one seed can mislead. The
garbage collector is paused during the counted calls, as in overhead.py's per-call batches
(a collection lands where the allocation count says, which moves with anything else in the
process). Instructions are not time (a cache miss costs
more than an add), so this compares variants of the same code; the paired timings in
overhead.py remain the figure that counts. Needs valgrind and a libpython with symbols.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

CONFIGS = (
    "raw",
    "installed",
    "recording",
    "no callsite",
    "wrapper only",
    "pure begin",
    "python wrappers",
    "idle, wrapt patches",
    "wrapt patches",
    "unprofiled",  # the page's configurations (--scenario page)
    "recorded",
    "panel",
)
PAGE_WARM_UP = 3
PAGE_CALLS = 4  # pages counted, unless --calls says otherwise


def child(scenario_name: str, config_name: str, calls: int) -> int:
    from overhead import Bench

    with contextlib.ExitStack() as stack:
        bench = Bench(stack, otel=False)
        if scenario_name == "page":  # 1,000 statements and 1,000 gets through the middleware
            configs, scenario = bench.page()
            warm_up = PAGE_WARM_UP
        else:
            scenario = {s.name: s for s in bench.scenarios(calls)}[scenario_name]
            configs = {**bench.configs, **bench.ablations}
            warm_up = 200
        call = scenario.call
        with configs[config_name]():
            for _ in range(warm_up):
                call()
            gc.collect()
            gc.disable()  # as overhead.py's per-call batches: collections would land by chance
            functools.reduce(lambda _, __: call(), range(calls), None)
    return 0


def count(scenario: str, config: str, calls: int, seed: int = 0) -> int:
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "callgrind.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=functools_reduce",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                scenario,
                config,
                str(calls),
            ],
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(out) as f:
            text = f.read()
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if not found:
        raise RuntimeError("callgrind wrote no totals")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, help=f"calls counted (2000; pages: {PAGE_CALLS})")
    parser.add_argument("--scenario", action="append", help="SQL statement, memcache get (hit)…")
    parser.add_argument("--config", action="append", choices=CONFIGS)
    parser.add_argument("--seeds", type=int, default=3, help="hash seeds (PYTHONHASHSEED)")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind processes at a time")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, config, calls = args.child
        return child(name, config, int(calls))
    scenarios = args.scenario or ["SQL statement", "memcache get (hit)", "memcache get (miss)"]
    configs = args.config or ["raw", "recording"]
    calls = {s: args.calls or (PAGE_CALLS if s == "page" else 2000) for s in scenarios}
    jobs = [
        (s, c, calls[s], seed) for s in scenarios for c in configs for seed in range(args.seeds)
    ]
    with ThreadPoolExecutor(args.jobs) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: count(*job), jobs), strict=True))
    print(
        f"instructions per call (callgrind, {', '.join(f'{s}: {n}' for s, n in calls.items())} "
        f"calls after warming up; median of {args.seeds} hash seeds [min..max])"
    )
    for scenario in scenarios:
        n = calls[scenario]
        per_call = {
            c: [counts[scenario, c, n, seed] / n for seed in range(args.seeds)] for c in configs
        }
        for config, values in per_call.items():
            line = f"  {scenario:22} {config:12} {statistics.median(values):10,.0f}"
            base = "unprofiled" if scenario == "page" else "raw"
            if base in per_call and config != base:
                added = [v - r for v, r in zip(values, per_call[base], strict=True)]
                line += (
                    f"  +{statistics.median(added):,.0f} [{min(added):+,.0f}..{max(added):+,.0f}]"
                )
                if scenario == "page":
                    ratios = [v / r for v, r in zip(values, per_call[base], strict=True)]
                    line += f"  {statistics.median(ratios):.3f}x"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
