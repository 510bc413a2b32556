"""``ioprofiler timeline`` (the installed command, as a subprocess) over a log a real Recorder
wrote, summaries every 0.2 s, with a deploy marked by ``ioprofiler mark`` between two phases:
per bucket and route, the rate, the slow rate and the p95 of every request, the marker in its
place, each line within the terminal's width."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import ioprofiler
from ioprofiler.recorder import Recorder
from ioprofiler.sinks import FinishedRequest
from ioprofiler.summary import ACCURACY
from ioprofiler.timeline import bucket_seconds
from tests.cli import ioprofiler as installed_command


def command(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    return installed_command(*args, columns=columns)


def serve(recorder: Recorder, route: str, durations: list[float]) -> None:
    for ms in durations:
        with ioprofiler.profile() as trace:
            pass
        recorder.handle(
            FinishedRequest(trace, "GET", "/", "", route, 200, time.time(), ms, "r", "h", 1)
        )


def counted(log: Path) -> int:
    """The requests the log's summary records have counted so far."""
    if not log.exists():
        return 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return sum(
        totals["requests"]
        for record in records
        if record.get("type") == "summary"
        for totals in record["routes"].values()
    )


def wait_for_next_second() -> None:
    time.sleep(1.05 - time.time() % 1)


@pytest.fixture
def deployed_log(tmp_path) -> tuple[Path, float]:
    """Before the deploy, /listing takes 10..29 ms; after it, 600..619 ms. /cart, 5 ms, is
    quieter. Each phase is in a second of its own, the marker in the second between."""
    log = tmp_path / "io.jsonl"
    recorder = Recorder(log, slow_ms=10_000, summary_every=0.2)
    wait_for_next_second()
    serve(recorder, "/listing/<int:id>", [10.0 + n % 20 for n in range(40)])
    serve(recorder, "/cart", [5.0] * 10)
    deadline = time.monotonic() + 60
    while counted(log) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first phase is in the log's summaries
    wait_for_next_second()  # and the deploy in a second of its own
    done = command("mark", "deploy 4f2a1c", "--log", str(log))
    assert done.returncode == 0, done.stderr
    marked = json.loads(log.read_text().splitlines()[-1])["ts"]
    wait_for_next_second()
    serve(recorder, "/listing/<int:id>", [600.0 + n % 20 for n in range(40)])
    recorder.close()
    return log, marked


def test_timeline_shows_rate_slow_rate_and_p95_per_bucket_with_the_marker(deployed_log):
    log, marked = deployed_log
    done = command("timeline", str(log), "--bucket", "1s", "--slow-ms", "500", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    rows = [line for line in lines if "route" in line]
    (marker,) = [line for line in lines if line.get("type") == "marker"]
    assert marker["ts"] == marked and marker["text"] == "deploy 4f2a1c"
    listing = [r for r in rows if r["route"] == "/listing/<int:id>" and r["requests"]]
    assert sum(r["requests"] for r in listing) == 80  # every request, once
    before = [r for r in listing if r["start"] + 1 <= marked]
    after = [r for r in listing if r["start"] > marked]
    assert sum(r["requests"] for r in before) == sum(r["requests"] for r in after) == 40
    for row in before:
        assert row["slow_per_s"] == 0 and row["p95_ms"] <= 29 * (1 + ACCURACY)
    for row in after:
        assert row["slow_per_s"] == row["per_s"] == row["requests"]  # 1 s buckets: all slow
        assert row["p95_ms"] >= 600 * (1 - ACCURACY)
    cart = [r for r in rows if r["route"] == "/cart"]
    assert sum(r["requests"] for r in cart) == 10
    assert [r["route"] for r in rows][0] == "/listing/<int:id>"  # the busiest first


def test_timeline_fits_the_terminal_and_puts_the_marker_between_its_buckets(deployed_log):
    log, _ = deployed_log
    for columns in (50, 100):
        done = command("timeline", str(log), "--bucket", "1s", "--routes", "1", columns=columns)
        assert done.returncode == 0, done.stderr
        out = done.stdout.splitlines()
        assert all(len(line) <= columns for line in out)
        assert "/cart" not in done.stdout  # the busiest route alone
        rows = {n: line for n, line in enumerate(out) if line[:2].isdigit()}
        p95 = {n: line.split()[3] for n, line in rows.items()}
        (mark,) = [n for n, line in enumerate(out) if line.startswith("── marker ")]
        slow = [n for n, ms in p95.items() if ms != "-" and float(ms) >= 600 * (1 - ACCURACY)]
        fast = [n for n, ms in p95.items() if ms != "-" and float(ms) < 30]
        assert slow and fast and max(fast) < mark < min(slow)
        assert all(len(rows[n]) == columns for n in slow)  # the slowest p95's bar fills it
        assert all(len(rows[n]) < columns for n in fast)


def test_a_tampered_log_puts_no_control_character_on_the_terminal(deployed_log, tmp_path):
    # a marker's text and a route's name with terminal controls, as another tool (or a
    # tampered log) may write them: mark refuses them, the recorder never writes them
    log, _ = deployed_log
    hostile = "\x1b[2J\x1b]0;pwned\x07\x9b6n\u2028"
    lines = log.read_text().splitlines()
    tampered = []
    for line in lines:
        record = json.loads(line)
        if record.get("type") == "marker":
            record["text"] = f"deploy {hostile}"
        elif record.get("type") == "summary" and "/cart" in record["routes"]:
            record["routes"][f"/cart{hostile}"] = record["routes"].pop("/cart")
        tampered.append(json.dumps(record, ensure_ascii=False))
    log.write_text("\n".join(tampered) + "\n")
    for extra in ([], ["--json"]):
        done = command("timeline", str(log), "--bucket", "1s", *extra, columns=200)
        assert done.returncode == 0, done.stderr
        raw = ("\x1b[2J", "\x1b]0;", "\x07", "\x9b", "\u2028")
        assert not [c for c in raw if c in done.stdout + done.stderr]
        if not extra:
            assert "deploy \\x1b[2J" in done.stdout and "/cart\\x1b[2J" in done.stdout


def test_a_bucket_is_a_length():
    assert [bucket_seconds(text) for text in ("30s", "1m", "5m", "1h")] == [30, 60, 300, 3600]
    for bad in ("0m", "1w", "m", "-1m"):
        with pytest.raises(ValueError):
            bucket_seconds(bad)
