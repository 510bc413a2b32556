"""The incident, end to end: gunicorn with 4 workers serves the shop of
``tests/incident_app.py`` in release 1a2b3c, then, after ``ioprofiler mark "deploy 4f2a1c"``,
in release 4f2a1c, which adds an N+1 on ``/listing/<int:id>`` and a slow statement on
``/search`` and leaves ``/home`` alone, while two CPU burners load the machine. Then:

- ``ioprofiler diff`` (by release, and at the marker) names exactly those two regressions,
  with their statements and callsites, and nothing else: ``/home``, whose latency the
  load moved, is not named;
- ``ioprofiler top``'s p95 per route, from the summaries of every request, is the p95 of
  the durations a timer around the application measured inside the workers, within the
  histogram's error (the recorder's clock runs between that timer and one around the
  middleware, so its figure lies between theirs); the load generator's own figures, which
  include queueing, are printed beside them, not compared;
- ``ioprofiler timeline`` shows the marker.

Nothing here depends on an idle machine: the slow statement sleeps inside a SQLite function,
the N+1 is a count of calls, and no assertion is a wall-clock threshold.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from ioprofiler.summary import ACCURACY
from tests import incident_app as shop
from tests.cli import ioprofiler
from tests.gunicorn import gunicorn as served
from tests.gunicorn import stop

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
URLS = [f"/listing/{n % 100 + 1}" for n in range(150)] + ["/home"] * 150 + ["/search"] * 40


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def command(*args: str) -> subprocess.CompletedProcess[str]:
    return ioprofiler(*args, columns=160)


@contextmanager
def gunicorn(tmp_path: Path, release: str) -> Iterator[str]:
    """gunicorn -w 4 serving the shop in ``release``; stopped gracefully (SIGTERM: each
    worker writes its last summary and its timings) when the block ends."""
    env = {
        "IOP_LOG": str(tmp_path / "logs" / "io.jsonl"),
        "IOP_DB": str(tmp_path / "shop.db"),
        "IOP_TIMINGS": str(tmp_path / "timings"),
        "IOP_SUMMARY_EVERY": "1",
        "IOPROFILER_RELEASE": release,
    }
    with served("tests.incident_app:app", env, options=("--timeout", "60")) as (base, server):
        yield base
        assert stop(server) == 0


def load(base: str) -> dict[str, list[float]]:
    """Every URL once, 8 at a time; the load generator's own durations per route."""

    def get(url: str) -> tuple[str, float]:
        start = time.perf_counter()
        with urllib.request.urlopen(base + url, timeout=60) as response:
            response.read()
        route = "/listing/<int:id>" if url.startswith("/listing/") else url
        return route, (time.perf_counter() - start) * 1000

    measured: dict[str, list[float]] = {}
    with ThreadPoolExecutor(8) as pool:
        for route, ms in pool.map(get, URLS[0::3] + URLS[1::3] + URLS[2::3]):
            measured.setdefault(route, []).append(ms)
    return measured


@contextmanager
def burners(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU: the machine's load moves every latency."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait()


def timed(folder: Path, name: str) -> dict[str, list[float]]:
    measured: dict[str, list[float]] = {}
    for file in folder.glob(f"*.{name}"):
        for line in file.read_text().splitlines():
            route, ms = line.rsplit(" ", 1)
            measured.setdefault(route, []).append(float(ms))
    return measured


def test_the_incident_from_timeline_to_diff(tmp_path):
    (tmp_path / "timings").mkdir()
    shop.create(tmp_path / "shop.db")
    log = tmp_path / "logs" / "io.jsonl"
    with gunicorn(tmp_path, shop.BEFORE) as base:
        client_before = load(base)
    marked = command("mark", "deploy 4f2a1c", "--log", str(log), "--release", shop.AFTER)
    assert marked.returncode == 0, marked.stderr
    with burners(2), gunicorn(tmp_path, shop.AFTER) as base:
        client_after = load(base)

    # diff, by release (the two in the log) and at the marker: exactly the two regressions
    for options in ([], ["--at-marker", "deploy 4f2a1c"]):
        done = command("diff", str(log), "--json", *options)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        regressions = [line for line in lines if line["type"] == "regression"]
        print("\n".join(r["line"] for r in regressions))
        assert [(r["route"], r["kind"], r["shape"]) for r in regressions] == [
            ("/search", "slower", shop.SEARCH),
            ("/listing/<int:id>", "calls", shop.FAVORITES),
        ]
        search, listing = regressions
        assert search["callsite"].startswith("tests/incident_app.py:")
        assert search["callsite"].endswith(" in search")
        assert search["ms_after"] >= shop.SLOW_MS
        assert listing["callsite"].startswith("tests/incident_app.py:")
        assert listing["callsite"].endswith(" in favorites")
        assert listing["new"] and listing["calls_after"] == shop.RELATED
        assert " +12 queries/request on " in listing["line"]
        assert "SELECT … FROM FavoriteListingUser WHERE listing_id = ?" in listing["line"]
        routes = {line["route"]: line for line in lines if line["type"] == "route"}
        home = routes["/home"]
        assert home["regressions"] == [] and home["changes"] == []
        print(
            f"/home, unchanged: p95 {home['before']['p95_ms']} → {home['after']['p95_ms']} ms "
            f"(burners on after); {home['moved'] or 'within what load explains'}"
        )
    failing = command("diff", str(log), "--fail-on", "regression")
    assert failing.returncode == 1 and "2 regressions" in failing.stdout

    # top: every request's p95 per route, as the workers' own timers measured it
    top = command("top", str(log), "--json")
    assert top.returncode == 0, top.stderr
    every = {
        row["route"]: row
        for row in map(json.loads, top.stdout.splitlines())
        if row["from"] == "summaries"
    }
    inner, outer = timed(tmp_path / "timings", "app"), timed(tmp_path / "timings", "outer")
    for route in shop.ROUTES:
        sent = len(client_before[route]) + len(client_after[route])
        assert every[route]["requests"] == len(inner[route]) == len(outer[route]) == sent
        low, high = exact_quantile(inner[route], 0.95), exact_quantile(outer[route], 0.95)
        client = exact_quantile(client_before[route] + client_after[route], 0.95)
        print(
            f"{route}: top p95 {every[route]['p95_ms']:.2f} ms; the app's timer {low:.2f} ms, "
            f"around the middleware {high:.2f} ms; the load generator {client:.2f} ms"
        )
        assert low * (1 - ACCURACY) <= every[route]["p95_ms"] <= high * (1 + ACCURACY)

    # timeline: the marker in its place
    timeline = command("timeline", str(log), "--bucket", "1s")
    assert timeline.returncode == 0, timeline.stderr
    marks = [line for line in timeline.stdout.splitlines() if line.startswith("── marker ")]
    assert marks and all("deploy 4f2a1c" in line for line in marks)
    assert f"release {shop.AFTER}" in marks[0]
