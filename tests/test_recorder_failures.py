"""The recorder on the worst day: a full disk, a log the server may not write, a last line a
crash left without its newline. On a real small filesystem (a tmpfs this test mounts, so it
runs as root) and under a real gunicorn.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioprofiler.recorder import Recorder
from tests import test_recorder
from tests.gunicorn import gunicorn as served
from tests.gunicorn import stop
from tests.test_recorder import finished

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
io_trace = test_recorder.io_trace  # a real trace: a query and a cache miss


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 1 MiB tmpfs, writable by everyone (as /tmp), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    where = Path(tempfile.mkdtemp(prefix="ioprofiler-fs-"))
    where.chmod(0o755)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=1777", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"could not mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=True)
        where.rmdir()


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; remove it to free the space."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def make_immutable(path: Path) -> None:
    """Make ``path`` a file no process may write, root's included (``chattr +i``)."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {done.stderr.strip()}")


def records(path: Path) -> tuple[list[dict], list[dict]]:
    """The log's requests and its gap records; every line must be one whole record."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    parsed = [json.loads(line) for line in data.split(b"\n")[:-1]]
    return [r for r in parsed if "type" not in r], [r for r in parsed if r.get("type") == "gap"]


def test_a_full_disk_is_said_twice_counted_and_leaves_only_whole_lines(small_fs, io_trace, caplog):
    recorder = Recorder(small_fs / "io.jsonl", slow_ms=0)
    with caplog.at_level(logging.WARNING, logger="ioprofiler"):
        for n in range(10):
            recorder.handle(finished(io_trace, rid=f"before-{n}"))
        recorder.flush()
        filler = fill(small_fs)
        for n in range(200):
            recorder.handle(finished(io_trace, rid=f"full-{n}"))
            if n % 20 == 0:
                recorder.flush()  # batches of different sizes meet the full disk
        recorder.flush()
        lost = recorder.dropped
        assert recorder.written + lost == 210 and lost >= 190  # a page's end may still fit
        filler.unlink()
        for n in range(10):
            recorder.handle(finished(io_trace, rid=f"after-{n}"))
        recorder.flush()
    assert recorder.dropped == lost
    assert recorder.written == 220 - lost
    requests, gaps = records(recorder.path)
    ids = [r["id"] for r in requests]
    assert len(ids) == len(set(ids)) == recorder.written
    assert ids[:10] == [f"before-{n}" for n in range(10)]
    assert ids[-10:] == [f"after-{n}" for n in range(10)]
    assert [g["lost"] for g in gaps] == [lost]
    assert gaps[0]["from"] <= gaps[0]["until"] <= gaps[0]["time"]
    assert {"host", "pid", "ts", "record_version"} <= set(gaps[0])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "could not write to" in warnings[0] and "No space left" in warnings[0]
    assert f"works again; {lost} kept requests were not recorded between" in warnings[1]
    assert all(r.exc_info is None for r in caplog.records)  # no tracebacks
    recorder.close()


def test_a_log_the_server_may_not_write_is_refused_at_construction(tmp_path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv, to run a server that may not write the log")
    log = tmp_path / "io.jsonl"
    log.write_text("")
    os.chown(log, NOBODY, NOBODY)  # another user's file, as a server not run as root sees it
    script = f"from ioprofiler.recorder import Recorder; Recorder({str(log)!r})"
    refused = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--",
         sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert last == (
        f"PermissionError: [Errno 13] the recorder cannot write its log '{log}': Permission denied"
    )


def test_a_last_line_without_its_newline_is_not_glued_to_the_next(io_trace, tmp_path):
    path = tmp_path / "io.jsonl"
    path.write_bytes(b'{"id":"whole"}\n{"id":"cut short by a cra')
    recorder = Recorder(path, slow_ms=0)
    for n in range(3):
        recorder.handle(finished(io_trace, rid=f"after-crash-{n}"))
    recorder.flush()
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == b'{"id":"cut short by a cra'  # left as it was, on its own line
    assert [json.loads(line)["id"] for line in lines[2:-1]] == [
        f"after-crash-{n}" for n in range(3)
    ]
    recorder.close()


# -- under gunicorn -----------------------------------------------------------------------


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], stderr: Path, workers: int = 2, options: tuple[str, ...] = ()
) -> Iterator[str]:
    """tests.recorded_app under gunicorn (with more command-line ``options``), its error log
    in ``stderr``; stopped gracefully."""
    with (
        stderr.open("w") as errors,
        served("tests.recorded_app:app", env, workers, options, stderr=errors) as (base, server),
    ):
        yield base
        assert stop(server) == 0  # graceful: each worker writes what it holds


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def app_env(log: Path, shards: dict, memcached) -> dict[str, str]:
    return {
        "IOP_LOG": str(log),
        "IOP_SHARDS": str(Path(shards["dbshard01"].url.database).parent),
        "IOP_MEMCACHED": f"{memcached.address[0]}:{memcached.address[1]}",
        "IOP_SLOW_MS": "10000",
    }


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def test_gunicorn_on_a_full_disk_warns_per_worker_and_counts_every_lost_request(
    small_fs, sqlite_shards, memcached, tmp_path
):
    log = small_fs / "io.jsonl"
    stderr = tmp_path / "gunicorn.err"
    with gunicorn(app_env(log, sqlite_shards, memcached), stderr) as base:
        for n in range(10):  # /fail answers 500: every one is kept
            assert get(f"{base}/fail/{n}")[0] == 500
        wait_for(lambda: log.exists() and log.read_bytes().count(b"\n") == 10, "10 lines")
        filler = fill(small_fs)
        for n in range(10, 210):
            assert get(f"{base}/fail/{n}")[0] == 500
        wait_for(lambda: "could not write" in stderr.read_text(), "the warning")
        filler.unlink()
        for n in range(210, 220):
            assert get(f"{base}/fail/{n}")[0] == 500
    requests, gaps = records(log)
    ids = [r["path"] for r in requests]
    assert len(ids) == len(set(ids))
    lost = sum(g["lost"] for g in gaps)
    assert len(requests) + lost == 220 and lost > 0
    errors = stderr.read_text()
    assert "Traceback" not in errors
    assert 1 <= errors.count("could not write to") == errors.count("works again;") <= 2
    said = re.findall(r"works again; (\d+) kept requests were not recorded", errors)
    assert sum(map(int, said)) == lost


def test_a_log_replaced_by_one_the_server_may_not_write_is_a_gap_until_it_may(
    small_fs, io_trace, caplog
):
    caplog.set_level(logging.WARNING, logger="ioprofiler")
    path = small_fs / "io.jsonl"
    recorder = Recorder(path, slow_ms=0)
    recorder.handle(finished(io_trace, rid="before"))
    recorder.flush()
    path.rename(small_fs / "io.jsonl-20261206")  # rotated by another tool, which made
    path.touch()  # a new log this process may not write
    make_immutable(path)
    try:
        for n in range(5):
            recorder.handle(finished(io_trace, rid=f"refused-{n}"))
            recorder.flush()
        assert recorder.dropped == 5
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)  # writable again
    recorder.handle(finished(io_trace, rid="after"))
    recorder.flush()
    requests, gaps = records(path)
    assert [r["id"] for r in requests] == ["after"]
    assert [g["lost"] for g in gaps] == [5]
    failing, recovered = [r.getMessage() for r in caplog.records]
    assert "could not write to" in failing and "Operation not permitted" in failing
    assert "works again; 5 kept requests were not recorded" in recovered
    recorder.close()


def test_a_log_not_writable_when_the_writer_starts_is_a_gap_until_it_is(small_fs, io_trace, caplog):
    caplog.set_level(logging.WARNING, logger="ioprofiler")
    path = small_fs / "io.jsonl"
    recorder = Recorder(path, slow_ms=0)  # writable now; the writer starts with the first
    make_immutable(path)
    try:
        for n in range(3):
            recorder.handle(finished(io_trace, rid=f"refused-{n}"))
        recorder.flush()
        assert recorder.dropped == 3
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)  # writable again
    recorder.handle(finished(io_trace, rid="after"))
    recorder.flush()
    requests, gaps = records(path)
    assert ([r["id"] for r in requests], [g["lost"] for g in gaps]) == (["after"], [3])
    assert len(caplog.records) == 2 and all(r.exc_info is None for r in caplog.records)
    recorder.close()
