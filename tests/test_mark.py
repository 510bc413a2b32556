"""Releases and deploy markers: every record the recorder writes carries its release, and
``ioprofiler mark`` (the installed command, run as a subprocess) appends a marker under the
log's lock, shows it among the requests, and sends the deploy counter to StatsD."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from werkzeug.test import Client

from ioprofiler.recorder import Recorder
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.cli import BIN, ioprofiler
from tests.fleetapp import FleetShop


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def shop(sqlite_shards, memcached):
    return FleetShop(sqlite_shards, memcached.address)


def serve(app, *urls: str) -> None:
    client = Client(app)
    for url in urls:
        client.get(url).close()


def test_every_record_carries_the_release_from_the_environment(shop, tmp_path, monkeypatch):
    monkeypatch.setenv("IOPROFILER_RELEASE", "4f2a1c")
    log = tmp_path / "io.jsonl"
    recorder = Recorder(log)
    serve(IOProfilerMiddleware(shop, record=recorder), "/listing/1", "/cart")
    recorder.close()
    written = records(log)
    assert {r.get("type", "request") for r in written} == {"request", "summary"}
    assert [r["release"] for r in written] == ["4f2a1c"] * len(written)

    named = Recorder(tmp_path / "named.jsonl", release="v2.1", slow_ms=0)
    serve(IOProfilerMiddleware(shop, record=named), "/listing/1")
    named.close()
    assert {r["release"] for r in records(tmp_path / "named.jsonl")} == {"v2.1"}


def test_a_release_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    for bad in ("", "  ", "v1\nSet-Cookie: x", "x" * 201, 42):
        with pytest.raises(ValueError, match="release"):
            Recorder(tmp_path / "io.jsonl", release=bad)
    monkeypatch.delenv("IOPROFILER_RELEASE", raising=False)
    assert Recorder(tmp_path / "io.jsonl").release is None


def test_mark_appends_under_the_logs_lock_and_shows_among_the_requests(shop, tmp_path):
    log = tmp_path / "io.jsonl"
    before = Recorder(log, slow_ms=0, release="4f2a1b")
    serve(IOProfilerMiddleware(shop, record=before), "/listing/1")
    before.flush()
    holder = os.open(f"{log}.lock", os.O_WRONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a writer is appending (or rotating) right now
    done: list[subprocess.CompletedProcess[str]] = []
    marking = threading.Thread(
        target=lambda: done.append(
            ioprofiler("mark", "deploy 4f2a1c", "--log", str(log), IOPROFILER_RELEASE="4f2a1c")
        )
    )
    marking.start()
    time.sleep(0.5)
    assert not done and "marker" not in log.read_text()  # it waits for the lock
    fcntl.flock(holder, fcntl.LOCK_UN)
    os.close(holder)
    marking.join(60)
    assert done[0].returncode == 0, done[0].stderr
    after = Recorder(log, slow_ms=0, release="4f2a1c", summary_every=None)
    serve(IOProfilerMiddleware(shop, record=after), "/listing/2")
    after.flush()

    kinds = [(r.get("type", "request"), r.get("release")) for r in records(log)]
    assert kinds == [("request", "4f2a1b"), ("marker", "4f2a1c"), ("request", "4f2a1c")]
    marker = records(log)[1]
    assert marker["text"] == "deploy 4f2a1c" and marker["ts"] <= time.time()

    listed = ioprofiler("show", str(log), "--list").stdout.splitlines()
    assert "GET /listing/1 " in listed[0] and "GET /listing/2 " in listed[2]
    assert listed[1].startswith(f"marker {marker['time'][:19]}: deploy 4f2a1c (release 4f2a1c")
    tail = subprocess.Popen(
        [str(BIN), "tail", str(log), "--from-start", "--list"], stdout=subprocess.PIPE, text=True
    )
    try:
        lines = [tail.stdout.readline() for _ in range(3)]
    finally:
        tail.terminate()
        tail.wait(10)
    assert lines[1].startswith("marker ") and "deploy 4f2a1c" in lines[1]
    before.close()


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


def test_mark_sends_the_deploy_counter_graphite_draws_as_a_line(tmp_path, receiver):
    port = receiver.getsockname()[1]
    logs = [tmp_path / "web1.jsonl", tmp_path / "web2.jsonl"]
    done = ioprofiler(
        "mark", "deploy 4f2a1c", "--log", str(logs[0]), "--log", str(logs[1]),
        "--statsd", f"127.0.0.1:{port}", "--prefix", "shop",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert receiver.recv(1500) == b"shop.deploys:1|c"
    assert [records(log)[0]["text"] for log in logs] == ["deploy 4f2a1c"] * 2

    from_env = ioprofiler(
        "mark", "rollback", "--log", str(logs[0]), IOPROFILER_STATSD=f"127.0.0.1:{port}"
    )
    assert from_env.returncode == 0, from_env.stderr
    assert receiver.recv(1500) == b"ioprofiler.deploys:1|c"


def test_mark_refuses_what_it_cannot_write(tmp_path):
    log = tmp_path / "io.jsonl"
    for args in (["\x1b[2J"], [""], ["ok", "--statsd", "nowhere"], ["ok", "--prefix", "a b"]):
        done = ioprofiler("mark", *args, "--log", str(log))
        assert done.returncode == 2 and done.stderr.startswith("ioprofiler: ")
        assert "\x1b" not in done.stderr
    assert not log.exists() or log.read_text() == ""
