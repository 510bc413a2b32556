"""Reading the log: every file of it, filters, following across rotation, the aggregates, the
stored trace rendering like the live one, and the report's safety."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

import ioprofiler
from ioprofiler.aggregate import Top, percentile
from ioprofiler.cli import main
from ioprofiler.logfile import SharedLog
from ioprofiler.logread import Filter, follow, log_files, parse_time, records
from ioprofiler.recorder import Recorder
from ioprofiler.render.report import render_report
from ioprofiler.sinks import FinishedRequest
from ioprofiler.stored import load

HOSTILE = "<script>alert(1)</script>"


def kept(trace, rid, path="/listing/1", route="/listing/<id>", status=200, ms=600.0, ts=None):
    return FinishedRequest(
        trace, "GET", path, "q=1", route, status, ts or time.time(), ms, rid, "web1", 1234
    )


@pytest.fixture
def recorded(sqlite_shards, tmp_path):
    """A log written by a real Recorder from real traces: three requests."""
    recorder = Recorder(tmp_path / "io.jsonl", slow_ms=500)
    engine = sqlite_shards["dbshard02"]
    traces = []
    for n in range(3):
        with ioprofiler.profile() as trace:
            with engine.connect() as conn:
                for listing in range(n + 1):
                    conn.execute(
                        sa.text("SELECT * FROM FavoriteListingUser WHERE listing_id = :id"),
                        {"id": listing},
                    ).all()
        traces.append(trace)
    recorder.handle(kept(traces[0], "a1", ts=1_700_000_000))
    recorder.handle(
        kept(traces[1], "b2", path="/shop/9", route="/shop/<id>", ms=900, ts=1_700_000_100)
    )
    recorder.handle(
        kept(traces[2], "c3", path=f"/x/{HOSTILE}", status=503, ms=10, ts=1_700_000_200)
    )
    recorder.flush()
    return recorder.path, traces


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_a_stored_request_lists_as_the_live_trace_did(recorded):
    path, traces = recorded
    record = next(records(path, Filter(id="b2")))
    trace, request = load(record)
    live = traces[1]
    assert [e.line() for e in trace.events] == [
        line.replace("listing_id = 0", "listing_id = ?").replace("listing_id = 1", "listing_id = ?")
        for line in (e.line() for e in live.events)
    ]
    assert trace.count() == live.count() and trace.elapsed_ms == pytest.approx(live.elapsed_ms)
    assert request.path == "/shop/9?q=?" and request.status == "200"


def test_filters(recorded, capsys):
    path, _ = recorded
    assert run(capsys, "show", str(path), "--list", "--min-ms", "500")[1].count("\n") == 2
    code, out = run(capsys, "show", str(path), "--list", "--path", "/shop/*")
    assert code == 0 and out.split()[1] == "b2"
    assert " 503 " in run(capsys, "show", str(path), "--list", "--status", "5xx")[1]
    out = run(
        capsys,
        "show",
        str(path),
        "--json",
        "--since",
        "2023-11-14T22:14:00",
        "--until",
        "2023-11-14T22:16:00",
    )[1]
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["b2"]
    assert (
        run(capsys, "show", str(path), "--route", "/listing/<id>", "--list")[1].split()[1] == "a1"
    )
    assert run(capsys, "show", str(path), "--slowest", "1", "--list")[1].split()[1] == "b2"
    assert run(capsys, "show", str(path), "zz")[0] == 1
    assert parse_time("-1h") == pytest.approx(time.time() - 3600, abs=5)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


def test_show_prints_the_listing_in_the_seeds_format(recorded, capsys):
    path, _ = recorded
    out = run(capsys, "show", str(path), "b2")[1].splitlines()
    assert out[0].startswith("cause: ")  # then the headline and the listing
    assert out[1].split()[1:5] == ["b2", "GET", "/shop/9", "200"]
    assert "kept: slow" in out[1] and "route /shop/<id>" in out[1]
    assert out[2].startswith("[dbshard02] ") and out[2].endswith(
        " ms SELECT * FROM FavoriteListingUser WHERE listing_id = ?"
    )


def test_rotated_and_gzipped_files_are_read_oldest_first(tmp_path):
    path = tmp_path / "io.jsonl"
    for name, ident in (
        ("io.jsonl.3.gz", "oldest"),
        ("io.jsonl.2", "older"),
        ("io.jsonl.1.gz", "old"),
        ("io.jsonl", "new"),
    ):
        line = json.dumps({"id": ident, "duration_ms": 1}).encode() + b"\n"
        if name.endswith(".gz"):
            (tmp_path / name).write_bytes(gzip.compress(line))
        else:
            (tmp_path / name).write_bytes(line)
    (tmp_path / "io.jsonl.lock").touch()
    assert [r["id"] for r in records(path)] == ["oldest", "older", "old", "new"]
    assert log_files(tmp_path / "io.jsonl.3.gz") == [tmp_path / "io.jsonl.3.gz"]
    with pytest.raises(FileNotFoundError):
        log_files(tmp_path / "nothing.jsonl")


def test_follow_reads_across_rotation_without_losing_a_line(tmp_path):
    path = tmp_path / "io.jsonl"
    log = SharedLog(path, max_bytes=2000, backups=100)
    log.append([b'{"id": "before"}\n'])
    seen = []

    def read() -> None:
        for record in follow(path, poll=0.01, stop_after=timedelta(seconds=60)):
            seen.append(record["id"])
            if len(seen) == 300:
                return

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    for n in range(300):  # about 20 rotations
        log.append([json.dumps({"id": f"n{n}", "pad": "p" * 80}).encode() + b"\n"])
        if n % 50 == 0:
            time.sleep(0.02)
    reader.join(90)
    log.close()
    assert seen == [f"n{n}" for n in range(300)]  # not "before": it starts at the end
    assert len(list(tmp_path.glob("io.jsonl.*[0-9]"))) > 10


def test_top_adds_up_routes_statements_and_any_kind_of_wait(tmp_path, capsys):
    def event(op, target, ms, statement=None):
        return {
            "kind": "db",
            "op": op,
            "target": target,
            "duration_ms": ms,
            "statement": statement,
            "sql": statement,
        }

    lines = []
    for n in range(20):
        events = [
            event("execute", "dbshard01", 2.0 + n, "SELECT * FROM t WHERE id = ?"),
            event("pool_wait", "dbshard01", 30.0),
        ]
        if n % 2:
            events.append(event("connect", "dbshard02", 5.0))
        lines.append(
            {
                "id": f"r{n}",
                "method": "GET",
                "route": "/a" if n < 15 else "/b",
                "duration_ms": 100.0,
                "events": events,
            }
        )
    path = tmp_path / "io.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    top = Top("wait")
    for record in records(path):
        top.add(record)
    waits = {row.key: row for row in top.rows()}
    assert set(waits) == {"POOL WAIT  dbshard01", "CONNECT  dbshard02"}
    assert waits["POOL WAIT  dbshard01"].count == 20 and waits[
        "POOL WAIT  dbshard01"
    ].share == pytest.approx(0.3)
    out = run(capsys, "top", str(path), "--by", "statement", "--json")[1]
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert (row["count"], row["median_ms"], row["p95_ms"]) == (20, 11.0, 20.0)  # nearest rank
    out = run(capsys, "top", str(path))[1].splitlines()
    assert out[0] == (
        "20 kept requests (slow, failing or sampled: not every request), 2.0 s in all; "
        "by route, the most time first"
    )
    assert out[2].split() == ["GET", "/a", "15", "1500.0", "100.000", "100.000", "75.0%"]
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0 and percentile([], 0.95) == 0.0
    with pytest.raises(ValueError, match="--by"):
        Top("shard")


def test_the_report_escapes_what_the_log_holds_and_is_self_contained(recorded, tmp_path, capsys):
    path, _ = recorded
    out = tmp_path / "r.html"
    assert run(capsys, "report", str(path), "-o", str(out))[0] == 0
    html = out.read_text()
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count('<tr id="row-r') == 3 and html.count('<template id="r') == 3
    assert 'id="ioprofiler-panel"' not in html  # each request is opened in one dialog
    assert "http://" not in html and "https://" not in html and " src=" not in html
    assert render_report([], "empty").count("<tr") == 1


def test_python_dash_m_and_the_console_script_agree(recorded):
    import subprocess
    import sys

    path, _ = recorded
    bin_dir = os.path.dirname(sys.executable)
    via_module = subprocess.run(
        [sys.executable, "-m", "ioprofiler", "show", str(path), "--list"],
        capture_output=True,
        text=True,
    )
    via_script = subprocess.run(
        [os.path.join(bin_dir, "ioprofiler"), "show", str(path), "--list"],
        capture_output=True,
        text=True,
    )
    assert via_module.stdout == via_script.stdout and via_module.stdout.count("\n") == 3
    assert "\x1b[" not in via_module.stdout  # plain when piped
    missing = subprocess.run(
        [sys.executable, "-m", "ioprofiler", "top", str(path) + ".nope"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no log at" in missing.stderr
    assert shutil.which("ioprofiler", path=bin_dir)
