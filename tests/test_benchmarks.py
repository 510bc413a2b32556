"""`make bench` keeps working: each benchmark it runs, at the smallest size, in a process of its
own, prints the figures its docstring promises. The figures themselves are not checked here
(no timed assertion in the test suite: the machine is shared); what is checked is that a
benchmark still measures the code as it is now (one asked for a wrapper renamed a session
before, and make bench stopped there). The benchmarks that take a minute at any size
(findings.py, recorder.py, middleware.py: 10,000-event traces, the demo's pages) and the
callgrind counts (versions.py, which needs valgrind) are left to `make bench`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# benchmark -> (its smallest run's arguments, lines its output must hold)
SMALLEST = {
    "roundtrips.py": (
        ["--rounds", "1", "--calls", "20"],
        ["checkout + commit + check-in", "do_commit wrapper", "_do_get wrapper"],
    ),
    "integrations.py": (["--rounds", "1", "--calls", "20"], ["redis", "psycopg"]),
    "export.py": (
        ["--rounds", "1", "--n", "50"],
        ["statsd µs", "otel attributes µs", "statsd sender thread"],
    ),
    "asgi.py": (["--rounds", "1", "--queries", "20"], ["ASGI page of 20 queries"]),
    "overhead.py": (
        ["--rounds", "3", "--calls", "10"],
        ["SQL statement", "the recording path taken apart", "begin, compiled"],
    ),
    "top_log.py": (["--gib", "0.001"], ["--by route", "--by finding", "--by callsite"]),
}


@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_each_benchmark_runs_against_the_code_as_it_is(name, memcached):
    arguments, expected = SMALLEST[name]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *arguments],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    for text in expected:
        assert text in done.stdout, done.stdout
