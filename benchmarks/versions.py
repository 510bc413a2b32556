"""Instructions ioprofiler adds per call on every CPython here, idle and recording (callgrind).

    make bench                          # prints the table at its end
    python benchmarks/versions.py       # the same; --versions 3.11 3.13, --calls, --seeds

Per Python version (3.10 to 3.13: the one running this script, and pyenv's builds as
``.ci/other-pythons`` finds them, each in its venv ``.venv-py3.X``, made here when missing),
one process per hash seed runs under ``valgrind --tool=callgrind`` and counts, for a
SQLAlchemy statement on SQLite and a pymemcache get (hit) from a private memcached:

1. raw: ioprofiler imported, not installed;
2. idle: ``ioprofiler.install()``, no trace open;
3. recording: a trace open (every call kept, with its callsite);

then ``ioprofiler.uninstall()`` and again, ``--rounds`` times, all in the same process, each
phase inside a ``functools.reduce`` call that callgrind counts alone and dumps after
(``--toggle-collect``, ``--dump-after``). Measuring raw and installed in separate processes
(as ``instructions.py`` does) also measures where the type attribute cache and the dicts
happen to lay out in each (about 1,000 instructions a statement either way; on 3.10 the
first raw phase of a process counted 2,700 more than a later one). Here each phase is paired
with the raw phase of its own round, and the table shows the median over rounds and seeds
[min..max]; the raw counts' spread says how much the layout alone moves them.

Instructions are not time; they are the figure the machine's load does not move. Needs
valgrind; takes a few minutes (``--jobs`` processes at a time).
"""

from __future__ import annotations

import argparse
import functools
import gc
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")
PHASES = ("raw", "idle", "recording")
SCENARIOS = ("SQL statement", "memcache get (hit)")
SQL = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :x"
WARM = 200
GOAL_IDLE = 2000  # instructions added per call, idle, on every version (issue 26)


# -- in the measured process -------------------------------------------------------------


def child(calls: int, memcached: str, rounds: int) -> None:
    """Set up, then per phase and scenario: warm, and ``calls`` calls in one reduce."""
    import sqlalchemy as sa
    from favorites import favorites_engine
    from pymemcache.client.base import Client

    import ioprofiler

    with tempfile.TemporaryDirectory() as directory:
        engine = favorites_engine(f"{directory}/dbshard01.db")
        host, port = memcached.rsplit(":", 1)
        client = Client((host, int(port)))
        client.set("hit", b"x" * 100)
        statement = sa.text(SQL)
        with engine.connect() as conn:
            scenarios = {
                "SQL statement": lambda: conn.execute(statement, {"x": 5773453}).scalar(),
                "memcache get (hit)": lambda: client.get("hit"),
            }

            def counted() -> None:
                for call in scenarios.values():
                    for _ in range(WARM):
                        call()
                    gc.collect()
                    gc.disable()  # a collection lands where the allocation count says
                    functools.reduce(lambda _, __: call(), range(calls), None)  # dumped after
                    gc.enable()

            for _ in range(rounds):  # install()/uninstall() between: layouts vary by round
                counted()  # raw
                ioprofiler.install()
                counted()  # idle
                with ioprofiler.profile(max_events=sys.maxsize):
                    counted()  # recording
                ioprofiler.uninstall()
        client.close()
        engine.dispose()


# -- the parent --------------------------------------------------------------------------


def pythons(wanted: list[str]) -> dict[str, str | None]:
    """Version -> its venv's python (None: that CPython is not on this machine)."""
    found: dict[str, str | None] = {}
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    pyenv = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    for version in wanted:
        if version == here:
            found[version] = sys.executable
            continue
        venv = ROOT / f".venv-py{version}"
        if (venv / "bin" / "python").exists():
            found[version] = str(venv / "bin" / "python")
            continue
        builds = sorted(
            glob.glob(str(pyenv / f"{version}.*" / "bin" / "python3")),
            key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).parent.parent.name)],
        )
        if not builds:
            found[version] = None
            continue
        print(f"# making {venv.name} with {builds[-1]} (as .ci/other-pythons does)", flush=True)
        subprocess.run([builds[-1], "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True, cwd=ROOT)
        found[version] = str(venv / "bin" / "python")
    return found


def describe(python: str) -> str:
    """``3.11.7, SQLAlchemy 2.0.59, compiled: begin, callsite, recorders, patches``."""
    code = (
        "import sys, sqlalchemy, ioprofiler\n"
        "from ioprofiler import callsite, recording, recorders, patching\n"
        "parts = [n for n, on in (('callsite', callsite.accelerated), "
        "('begin', recording.compiled_begin), ('recorders', recorders.compiled_recorders), "
        "('patches', patching.compiled_patches)) if on]\n"
        'print(f"{sys.version.split()[0]}, SQLAlchemy {sqlalchemy.__version__}, compiled: '
        "{', '.join(parts) or 'none'}\")"
    )
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return result.stdout.strip() or result.stderr.strip().splitlines()[-1]


def count(
    python: str, calls: int, seed: int, memcached: str, rounds: int
) -> list[dict[tuple[str, str], float]]:
    """Per round: (phase, scenario) -> instructions per call, from one callgrind process."""
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "callgrind.out")
        command = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=functools_reduce",
            "--dump-after=functools_reduce",
            f"--callgrind-out-file={out}",
            python,
            __file__,
            "--child",
            str(calls),
            memcached,
            str(rounds),
        ]
        if shutil.which("setarch"):
            command = ["setarch", os.uname().machine, "-R", *command]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        )
        dumps = sorted(glob.glob(out + ".*"), key=lambda name: int(name.rsplit(".", 1)[1]))
        expected = rounds * len(PHASES) * len(SCENARIOS)
        if result.returncode != 0 or len(dumps) != expected:
            raise RuntimeError(
                f"{python}: {len(dumps)} dumps (expected {expected}):\n{result.stderr[-3000:]}"
            )
        totals = []
        for dump in dumps:
            text = Path(dump).read_text()
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
            totals.append(int(found[1]) if found else 0)
    keys = [(phase, scenario) for phase in PHASES for scenario in SCENARIOS]
    per_round = len(keys)
    return [
        {key: total / calls for key, total in zip(keys, totals[i : i + per_round], strict=True)}
        for i in range(0, len(totals), per_round)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", nargs="*", default=list(VERSIONS))
    parser.add_argument("--calls", type=int, default=400, help="calls counted per phase")
    parser.add_argument("--seeds", type=int, default=3, help="hash seeds (PYTHONHASHSEED)")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind processes at a time")
    parser.add_argument("--rounds", type=int, default=3, help="raw/idle/recording rounds")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(int(args.child[0]), args.child[1], int(args.child[2]))
        return 0
    if shutil.which("valgrind") is None:
        print("per-version instructions: valgrind is not installed (apt-get install valgrind)")
        return 0

    from ioprofiler.memcached import MemcachedProcess

    found = pythons(args.versions)
    present = {v: p for v, p in found.items() if p is not None}
    with MemcachedProcess() as server:
        memcached = f"{server.address[0]}:{server.address[1]}"
        jobs = [(v, seed) for v in present for seed in range(args.seeds)]
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(
                pool.map(
                    lambda job: count(present[job[0]], args.calls, job[1], memcached, args.rounds),
                    jobs,
                )
            )
    counted = dict(zip(jobs, results, strict=True))
    print(
        f"\ninstructions added per call, by Python version (callgrind; {args.rounds} rounds of "
        f"raw, idle and recording in one process, install()/uninstall() between, {args.calls} "
        f"calls each; {args.seeds} hash seeds; added = phase less the same round's raw, median "
        "over rounds and seeds [min..max]; raw spread: max-min of the raw counts, the layout "
        "noise)"
    )
    print(f"  {'Python':<8}{'call':<20}{'raw':>9}  {'idle':<30}{'recording':<32}{'raw spread':>10}")
    worst_idle = 0.0
    for version, python in found.items():
        if python is None:
            print(f"  {version:<8}not installed here (pyenv), skipped")
            continue
        print(f"  {version:<8}{describe(python)}")
        for scenario in SCENARIOS:
            runs = [r for seed in range(args.seeds) for r in counted[version, seed]]
            raw = [run["raw", scenario] for run in runs]
            cells = []
            for phase in ("idle", "recording"):
                added = [run[phase, scenario] - r for run, r in zip(runs, raw, strict=True)]
                median = statistics.median(added)
                ratio = statistics.median(
                    run[phase, scenario] / r for run, r in zip(runs, raw, strict=True)
                )
                if phase == "idle":
                    worst_idle = max(worst_idle, median)
                cells.append(
                    f"{median:+,.0f} [{min(added):+,.0f}..{max(added):+,.0f}] {ratio:.3f}x"
                )
            print(
                f"  {'':<8}{scenario:<20}{statistics.median(raw):>9,.0f}  {cells[0]:<30}"
                f"{cells[1]:<32}{max(raw) - min(raw):>10,.0f}"
            )
    verdict = "met" if worst_idle <= GOAL_IDLE else "MISSED"
    print(f"  idle goal: at most {GOAL_IDLE:,} added per call on every version: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
