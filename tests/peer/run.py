"""``make peer``: SQLAlchemy's own test suite, bare and with ioprofiler recording every test.

Fetches the sdist of the SQLAlchemy installed here into ``build/peer/``, runs a subset of
its suite on SQLite twice against the installed library, once bare and once with a trace
open around every test (``tests/peer/ioprofiler_peer.py``), and compares the outcomes test by
test. Any difference fails the run and is listed with the recording run's failure::

    python tests/peer/run.py                 # the subset below, two pytest-xdist workers
    python tests/peer/run.py --jobs 0 test/ext/test_horizontal_shard.py

Ids in ``tests/peer/flaky.txt`` (one per line, ``# reason`` after it) are reported, not failed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

PEER = Path(__file__).resolve().parent
BUILD = PEER.parents[1] / "build" / "peer"

# What runs, and against which database (SQLAlchemy's setup.cfg names them): the core
# and ORM suites and the SQLite dialect on the sync driver; asyncio on the async one.
SUBSET = {
    "sqlite": [
        "test/engine",
        "test/sql",
        "test/orm",
        "test/dialect/sqlite",
        "test/ext/test_horizontal_shard.py",
    ],
    "aiosqlite": ["test/ext/asyncio"],
}


@dataclass
class Run:
    """One pass over the subset: bare, or recording."""

    name: str
    outcomes: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=lambda: {"tests": 0, "events": 0})
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="2", help="pytest-xdist workers (0: none)")
    parser.add_argument("paths", nargs="*", help="run only these (with the sqlite database)")
    args = parser.parse_args(argv)

    source = fetch_sdist(version("sqlalchemy"))
    subset = {"sqlite": args.paths} if args.paths else SUBSET
    bare = run_suite("bare", source, subset, args.jobs)
    recording = run_suite("recording", source, subset, args.jobs, "--peer-record")
    return report(bare, recording, load_flaky(PEER / "flaky.txt"))


def fetch_sdist(sqlalchemy_version: str) -> Path:
    """The unpacked sdist of this SQLAlchemy version, downloaded once."""
    source = BUILD / f"sqlalchemy-{sqlalchemy_version}"
    if (source / "test" / "conftest.py").exists():
        return source
    BUILD.mkdir(parents=True, exist_ok=True)
    archive = BUILD / f"sqlalchemy-{sqlalchemy_version}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:"]
            + ["--no-deps", "--dest", str(BUILD), f"sqlalchemy=={sqlalchemy_version}"],
            check=True,
        )
    with tarfile.open(archive) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(BUILD, **safe)
    return source


def run_suite(name: str, source: Path, subset: dict[str, list[str]], jobs: str, *extra: str):
    run = Run(name)
    started, cpu_started = time.monotonic(), _children_cpu()
    for database, paths in subset.items():
        outcomes_file = BUILD / f"{name}-{database}.json"
        log_file = BUILD / f"{name}-{database}.log"
        command = [
            sys.executable,
            "-m",
            "pytest",
            *paths,
            f"--db={database}",
            "-p",
            "ioprofiler_peer",
            f"--peer-outcomes={outcomes_file}",
            *extra,
            # Only SQLAlchemy's own plugins: not ours, nor pytest-asyncio.
            "-p",
            "no:ioprofiler",
            "-p",
            "no:asyncio",
            "-p",
            "no:cacheprovider",
            "-q",
            "--maxfail=1000000",
            *(["-n", jobs] if jobs != "0" else []),
        ]
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [str(PEER), os.environ.get("PYTHONPATH")])),
            PYTHONNOUSERSITE="1",  # the suite's conftest then uses the installed SQLAlchemy
        )
        print(f"== {name}: {' '.join(paths)} on {database} (log: {log_file})", flush=True)
        with open(log_file, "w") as log:
            subprocess.run(command, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT)
        print("   " + last_line(log_file), flush=True)
        if not outcomes_file.exists():
            raise SystemExit(f"pytest did not finish the {name} run; see {log_file}")
        result = json.loads(outcomes_file.read_text())
        run.outcomes.update(result["outcomes"])
        run.reasons.update(result["reasons"])
        for key, value in (result["recorded"] or {}).items():
            run.recorded[key] += value
    run.seconds = time.monotonic() - started
    run.cpu_seconds = _children_cpu() - cpu_started
    return run


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1].strip("= ") if lines else "(no output)"


def load_flaky(path: Path) -> dict[str, str]:
    """{test id: reason} from lines like ``test/x.py::T::t  # why``."""
    flaky = {}
    if path.exists():
        for line in path.read_text().splitlines():
            test_id, _, reason = line.partition("#")
            if test_id.strip():
                flaky[test_id.strip()] = reason.strip()
    return flaky


def differences(bare: Run, recording: Run) -> dict[str, tuple[str, str]]:
    """{test id: (bare outcome, recording outcome)} where they differ or one lacks it."""
    ids = sorted(set(bare.outcomes) | set(recording.outcomes))
    missing = "not run"
    return {
        test_id: (bare.outcomes.get(test_id, missing), recording.outcomes.get(test_id, missing))
        for test_id in ids
        if bare.outcomes.get(test_id) != recording.outcomes.get(test_id)
    }


def report(bare: Run, recording: Run, flaky: dict[str, str]) -> int:
    for run in (bare, recording):
        counts: dict[str, int] = {}
        for outcome in run.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        print(
            f"{run.name}: {len(run.outcomes)} tests in {run.seconds:.0f} s "
            f"({run.cpu_seconds:.0f} s of CPU): {summary}"
        )
    print(
        f"recording: ioprofiler recorded {recording.recorded['events']} statements "
        f"in traces around {recording.recorded['tests']} tests"
    )
    if not bare.outcomes or recording.recorded["events"] == 0:
        print("FAIL: nothing ran, or nothing was recorded")
        return 1
    found = differences(bare, recording)
    failing = {test_id: pair for test_id, pair in found.items() if test_id not in flaky}
    for test_id, (was, became) in found.items():
        known = f"  (known flaky: {flaky[test_id]})" if test_id in flaky else ""
        print(f"\n{test_id}: bare {was}, recording {became}{known}")
        if test_id in recording.reasons and not known:
            print("    " + recording.reasons[test_id].replace("\n", "\n    "))
    if failing:
        print(f"\nFAIL: {len(failing)} tests end differently while ioprofiler records")
        return 1
    print(
        f"\nOK: every test ends the same with and without ioprofiler recording ({len(found)} flaky)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
