"""The recorder: keep rules, what a kept line holds (and hides), the queue bound, rotation
across processes, and flushing at exit."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from pymemcache.client.base import Client as MemcacheClient
from werkzeug.test import Client

import ioprofiler
from ioprofiler.event import CONNECTION_OPS
from ioprofiler.logfile import SharedLog
from ioprofiler.recorder import Recorder
from ioprofiler.sinks import FinishedRequest
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.webapp import ShopApp

SELECT = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :id"


def finished(trace, duration_ms=5.0, status=200, query="", route="/listing/<id>", rid="r1"):
    return FinishedRequest(
        trace=trace,
        method="GET",
        path="/listing/5773453",
        query=query,
        route=route,
        status=status,
        started_at=time.time(),
        duration_ms=duration_ms,
        request_id=rid,
        host="web1",
        pid=os.getpid(),
    )


@pytest.fixture
def io_trace(sqlite_shards, memcached):
    """A real trace: one query with a bound value, one cache miss."""
    cache = MemcacheClient(memcached.address)
    cache.delete("user:secret-key")
    with ioprofiler.profile() as trace:
        with sqlite_shards["dbshard01"].connect() as conn:
            conn.execute(sa.text(SELECT), {"id": 5773453}).scalar_one()
        cache.get("user:secret-key")
    return trace


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def calls_in(record: dict) -> list[dict]:
    """The record's statements and cache calls, without the transaction ends around them."""
    return [e for e in record["events"] if e["op"] not in CONNECTION_OPS]


def test_each_keep_rule_keeps_and_says_why(io_trace, tmp_path):
    recorder = Recorder(tmp_path / "io.jsonl", slow_ms=100, max_calls=1)
    assert recorder.reasons(finished(io_trace, duration_ms=150)) == ["slow", "max_calls"]
    assert recorder.reasons(finished(io_trace, status=503))[0] == "status"
    plain = Recorder(tmp_path / "io.jsonl", slow_ms=100)
    assert plain.reasons(finished(io_trace, duration_ms=99, status=404)) == []
    picky = Recorder(tmp_path / "io.jsonl", keep=lambda trace, request, status: status == 404)
    assert picky.reasons(finished(io_trace, status=404)) == ["keep"]
    everyone = Recorder(tmp_path / "io.jsonl", sample=1.0)
    assert everyone.reasons(finished(io_trace)) == ["sample"]
    nobody = Recorder(tmp_path / "io.jsonl", sample=0.0)
    assert nobody.reasons(finished(io_trace)) == []


def test_an_io_error_keeps_the_request(sqlite_shards, tmp_path):
    with ioprofiler.profile() as trace:
        with sqlite_shards["dbshard02"].connect() as conn, pytest.raises(sa.exc.OperationalError):
            conn.execute(sa.text("SELECT * FROM no_such_table WHERE id = :id"), {"id": 1})
    assert Recorder(tmp_path / "io.jsonl").reasons(finished(trace)) == ["io_error"]


def test_a_failing_keep_rule_is_logged_and_keeps_nothing(io_trace, tmp_path, caplog):
    recorder = Recorder(tmp_path / "io.jsonl", keep=lambda *a: 1 / 0)
    assert recorder.reasons(finished(io_trace)) == []
    assert "keep rule failed" in caplog.text


def test_a_kept_line_holds_the_schema_and_the_request_without_values(io_trace, tmp_path):
    recorder = Recorder(tmp_path / "io.jsonl", slow_ms=1)
    recorder.handle(finished(io_trace, duration_ms=7.5, query="q=shoes&token=abc", rid="req-7"))
    recorder.handle(finished(io_trace, duration_ms=0.5))  # fast: not kept
    recorder.handle(finished(io_trace, duration_ms=9, rid="no-query"))
    recorder.flush()
    record, plain = lines(recorder.path)
    assert plain["query"] == "" and plain["request"]["path"] == "/listing/5773453"
    assert (record["schema"], record["version"], record["record_version"]) == (
        "ioprofiler.trace",
        2,
        1,
    )
    assert record["id"] == "req-7" and record["reason"] == "slow" and record["reasons"] == ["slow"]
    assert (record["method"], record["path"], record["route"]) == (
        "GET",
        "/listing/5773453",
        "/listing/<id>",
    )
    assert (
        record["query"] == "q=?&token=?"
        and record["request"]["path"] == "/listing/5773453?q=?&token=?"
    )
    assert (record["status"], record["duration_ms"], record["host"]) == (200, 7.5, "web1")
    assert record["pid"] == os.getpid() and record["time"].startswith(
        time.strftime("%Y-", time.gmtime())
    )
    assert record["calls"] == 2 and record["io_ms"] == pytest.approx(
        sum(e.duration_ms for e in io_trace.events),
        abs=0.01,  # the ROLLBACK's time too
    )
    db, cache = calls_in(record)
    assert db["sql"] == "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?"
    assert db["params"] is None and "5773453" not in db["line"]
    assert cache["keys"] == ["user:secret-key"] and "user:secret-key" in cache["line"]
    text = recorder.path.read_text()
    assert "5773453" not in text.replace("/listing/5773453", "") and "shoes" not in text
    assert "abc" not in text


def test_values_and_keys_are_opt_in_and_opt_out(io_trace, tmp_path):
    recorder = Recorder(tmp_path / "io.jsonl", slow_ms=0, values=True, keys=False)
    recorder.handle(finished(io_trace, query="q=shoes"))
    recorder.flush()
    (record,) = lines(recorder.path)
    db, cache = calls_in(record)
    assert db["sql"].endswith("listing_id = 5773453") and db["params"] == [5773453]
    assert record["query"] == "q=shoes"
    assert cache["keys"] == ["?"] and "secret" not in recorder.path.read_text()
    assert cache["line"].endswith("Cache MISS, keys: ?")


def test_cache_keys_are_redacted_where_a_pattern_matches(memcached, tmp_path):
    session = "5f1c0a9e3b7d4c2e8a6f0b1d9c3e7a5f"

    def app(environ, start_response):  # keys its cache by the visitor's session id
        cache = MemcacheClient(memcached.address)
        cache.get(f"session:{session}")
        cache.get(f"session:{session}")  # the same key twice: a finding names it
        cache.get_many([f"cart:{session}:items", "listing:42"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    patterns = [r"(?<=^session:)[0-9a-f]+", re.compile(r"(?<=^cart:)[^:]+")]
    recorder = Recorder(tmp_path / "io.jsonl", slow_ms=0, redact_keys=patterns)
    Client(IOProfilerMiddleware(app, record=recorder)).get("/").close()
    recorder.flush()
    (record,) = lines(recorder.path)
    session_reads, many = calls_in(record)[0:2], calls_in(record)[2]
    assert [e["keys"] for e in session_reads] == [["session:?"]] * 2
    assert session_reads[0]["line"].endswith("Cache MISS, keys: session:?")
    assert many["keys"] == ["cart:?:items", "listing:42"]
    assert many["missed_keys"] == ["cart:?:items", "listing:42"]
    assert record["findings"] and session not in recorder.path.read_text()


def test_redact_keys_takes_regular_expressions(tmp_path):
    with pytest.raises(ValueError, match=r"redact_keys: '\(' is not a regular expression"):
        Recorder(tmp_path / "a", redact_keys=["("])
    with pytest.raises(TypeError, match="redact_keys must be a list"):
        Recorder(tmp_path / "a", redact_keys="session:.*")


def test_the_middleware_records_what_the_rules_keep(sqlite_shards, memcached, tmp_path):
    shop = ShopApp(sqlite_shards, memcached.address)
    recorder = Recorder(tmp_path / "io.jsonl", slow_ms=10_000, max_calls=1)
    client = Client(IOProfilerMiddleware(shop, record=recorder))
    for url in ("/page", "/plain", "/api"):  # /page makes 2 calls: kept; the others 1
        client.get(url, headers={"X-Request-Id": url}).close()
    with pytest.raises(ZeroDivisionError):
        client.get("/boom", headers={"X-Request-Id": "boom"})
    recorder.flush()
    kept = {r["id"]: r["reasons"] for r in lines(recorder.path)}
    assert kept == {"/page": ["max_calls"], "boom": ["status"]}


def test_a_full_queue_drops_and_counts_and_never_blocks(io_trace, tmp_path):
    recorder = Recorder(tmp_path / "io.jsonl", slow_ms=0, queue_size=2)
    holder = os.open(f"{recorder.path}.lock", os.O_WRONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process is rotating: the writer waits
    try:
        recorder.handle(finished(io_trace, rid="first"))
        deadline = time.monotonic() + 5
        while recorder._queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.005)  # until the writer holds the first line and waits for the lock
        started = time.perf_counter()
        for n in range(9):
            recorder.handle(finished(io_trace, rid=f"r{n}"))
        assert time.perf_counter() - started < 2  # dropping, not waiting for the lock
        assert recorder.dropped == 7
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    recorder.flush()
    written = lines(recorder.path)
    assert [r["id"] for r in written if "type" not in r] == ["first", "r0", "r1"]
    assert [r["lost"] for r in written if r.get("type") == "gap"] == [7]  # said in the log
    assert recorder.written == 3


def _append_many(path: str, worker: int, count: int) -> None:
    log = SharedLog(path, max_bytes=20_000, backups=1000)
    for n in range(0, count, 7):
        batch = [
            json.dumps({"w": worker, "n": m, "pad": "x" * (m % 200)}).encode() + b"\n"
            for m in range(n, min(n + 7, count))
        ]
        log.append(batch)
    log.close()


def test_rotation_across_processes_loses_and_splits_nothing(tmp_path):
    path = tmp_path / "io.jsonl"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(path), w, 1500)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    files = [path, *sorted(tmp_path.glob("io.jsonl.*[0-9]"), key=lambda p: int(p.suffix[1:]))]
    assert len(files) > 10  # it rotated, many times
    seen = set()
    for file in files:
        assert file.stat().st_size <= 20_000
        for line in file.read_text().splitlines():
            record = json.loads(line)  # a torn or interleaved line would not parse
            seen.add((record["w"], record["n"]))
    assert seen == {(w, n) for w in range(4) for n in range(1500)}


def test_rotation_keeps_only_the_backups_asked_for(tmp_path):
    log = SharedLog(tmp_path / "io.jsonl", max_bytes=1000, backups=2)
    for n in range(100):
        log.append([json.dumps({"n": n, "pad": "y" * 80}).encode() + b"\n"])
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert names == ["io.jsonl", "io.jsonl.1", "io.jsonl.2"]
    newest = [json.loads(x)["n"] for x in (tmp_path / "io.jsonl").read_text().splitlines()]
    older = [json.loads(x)["n"] for x in (tmp_path / "io.jsonl.1").read_text().splitlines()]
    assert newest[-1] == 99 and older[-1] == newest[0] - 1


def test_queued_lines_are_written_at_exit(tmp_path, sqlite_shards):
    script = textwrap.dedent(
        f"""
        import time, sqlalchemy as sa, ioprofiler
        from ioprofiler.recorder import Recorder
        from ioprofiler.sinks import FinishedRequest
        ioprofiler.install()
        engine = sa.create_engine("sqlite:///{tmp_path / "exit.db"}")
        recorder = Recorder("{tmp_path / "exit.jsonl"}", slow_ms=0)
        for n in range(500):
            with ioprofiler.profile() as trace:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
            recorder.handle(FinishedRequest(trace, "GET", "/", "", None, 200, time.time(),
                                            1.0, f"id{{n}}", "h", 1))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    ids = [r["id"] for r in lines(tmp_path / "exit.jsonl")]
    assert ids == [f"id{n}" for n in range(500)]


def test_bad_settings_are_refused_at_construction(tmp_path):
    with pytest.raises(ValueError, match="slow_ms"):
        Recorder(tmp_path / "a", slow_ms=-1)
    with pytest.raises(ValueError, match="sample"):
        Recorder(tmp_path / "a", sample=2)
    with pytest.raises(ValueError, match="max_bytes"):
        Recorder(tmp_path / "a", max_bytes=10)
    with pytest.raises(TypeError, match="keep"):
        Recorder(tmp_path / "a", keep="yes")
    with pytest.raises(TypeError, match="values"):
        Recorder(tmp_path / "a", values="no")
    with pytest.raises(ValueError, match="directory"):
        Recorder(tmp_path)


def _handle_in_child(recorder: Recorder, trace) -> None:
    recorder.handle(finished(trace, duration_ms=900, rid="child"))
    recorder.flush()  # multiprocessing's children leave by os._exit: no atexit


def test_a_forked_worker_starts_its_own_writer(io_trace, tmp_path):
    recorder = Recorder(tmp_path / "io.jsonl", slow_ms=100)
    recorder.handle(finished(io_trace, duration_ms=900, rid="parent"))
    recorder.flush()  # the parent's writer thread is running now: the child has none
    child = multiprocessing.get_context("fork").Process(
        target=_handle_in_child, args=(recorder, io_trace)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert [r["id"] for r in lines(recorder.path)] == ["parent", "child"]
    assert len({r["pid"] for r in lines(recorder.path)}) == 2
