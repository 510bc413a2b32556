"""The `ioprofiler` command as ops run it: the installed entry point, on a log a real Recorder
wrote behind the WSGI middleware, with the command lines of docs/ops.md as printed, hostile data
in the log, damaged and foreign lines, rotated files, a terminal and a pipe."""

from __future__ import annotations

import gzip
import json
import os
import pty
import queue
import re
import shlex
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pymemcache.client.base import Client
from werkzeug.test import Client as BrowserLike

from ioprofiler.recorder import Recorder
from ioprofiler.render.console import SLOW_MS
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.cli import BIN, ioprofiler
from tests.test_readme import DOCS
from tests.test_recorder_failures import fill, small_fs  # noqa: F401 (a fixture)

LOG_IN_README = "/var/log/shop/ioprofiler.jsonl"
SLOW_STATEMENT = "SELECT sleep_ms(:ms), count(*) FROM FavoriteListingUser WHERE listing_id = :id"
# What a client may put in a path (or another tool in the log): erase the screen, set the
# window's title, ring the bell, a C1 CSI, a Unicode line separator.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b6n\u2028"
RAW_CONTROLS = ("\x1b[2J", "\x1b]0;", "\x07", "\x9b", "\u2028")


class Shop:
    """A small shop behind the middleware with a recorder, as the guide's Ops page sets it
    up: ``/listing/<id>`` (a cache read and counts), ``/one/<id>`` (a cache read, then 500),
    any other path (a slow statement and counts, then 500: kept), on a SQLite file and a real
    memcached."""

    def __init__(self, database: Path, cache: Client, log: Path, **options: Any) -> None:
        self.engine = sa.create_engine(f"sqlite:///{database}")
        sa.event.listen(self.engine, "connect", _with_sleep)
        self.cache = cache
        self.recorder = Recorder(log, slow_ms=100)  # the statement sleeps 120 ms
        middleware = IOProfilerMiddleware(self.app, record=self.recorder, **options)
        self.client = BrowserLike(middleware)

    def app(self, environ, start_response):
        kind, _, number = environ["PATH_INFO"][1:].partition("/")
        environ["ioprofiler.route"] = f"/{kind}/<int:id>" if number.isdigit() else None
        self.cache.get(f"listing:{number}"[:200])
        if kind == "one":  # one call, then 500
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"failed\n"]
        with self.engine.connect() as conn:
            if kind != "listing":
                conn.execute(sa.text(SLOW_STATEMENT), {"ms": 120, "id": 7}).all()
            for listing in range(3):
                conn.execute(
                    sa.text("SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :id"),
                    {"id": listing},
                ).all()
        status = "200 OK" if kind == "listing" else "500 Internal Server Error"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok\n"]

    def get(self, path: str, request_id: str | None = None) -> None:
        headers = {"X-Request-Id": request_id} if request_id else {}
        self.client.get(path, headers=headers).close()  # the body consumed: recorded
        self.recorder.flush()


def _with_sleep(connection, _record) -> None:
    connection.create_function("sleep_ms", 1, lambda ms: time.sleep(ms / 1000) or ms)


@pytest.fixture
def shop(sqlite_shards, memcached, tmp_path) -> Iterator[Shop]:
    host, port = memcached.address
    cache = Client((host, port), default_noreply=False)
    (tmp_path / "log").mkdir()
    shop = Shop(tmp_path / "dbshard03.db", cache, tmp_path / "log" / "ioprofiler.jsonl")
    yield shop
    shop.recorder.close()
    shop.engine.dispose()
    cache.close()


def in_terminal(*args: str, columns: int = 100, cwd: Path | None = None) -> str:
    """The installed command's output on a terminal ``columns`` wide (a pseudo-terminal)."""
    leader, follower = pty.openpty()
    env = dict(os.environ, COLUMNS=str(columns), LINES="40", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [str(BIN), *args], stdout=follower, stderr=follower, env=env, cwd=cwd
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the command has exited and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0, b"".join(chunks)
    return b"".join(chunks).decode()


class Following:
    """``ioprofiler tail ...`` running: its stdout and stderr lines, as they come."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [str(BIN), "tail", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        for name, stream in (("out", self.process.stdout), ("err", self.process.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream) -> None:
        for line in stream:
            self.lines.put((name, line))

    def wait_for(
        self, wanted: Callable[[str, str], bool], meanwhile: Callable[[], None] = lambda: None
    ) -> str:
        """The first line (``name``, ``line``) ``wanted`` accepts; ``meanwhile`` runs between
        looks (to write more until the command, starting up, reads)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            meanwhile()
            try:
                name, line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if wanted(name, line):
                return line
        raise AssertionError("tail printed no such line within a minute")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# -- defect 1: the guide's command lines, as printed -------------------------------------------


def ops_commands() -> list[tuple[str, list[str]]]:
    """Each ``$ ioprofiler ...`` line of the guide's Ops page and the lines it prints."""
    commands: list[tuple[str, list[str]]] = []
    for line in (DOCS / "ops.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("$ ioprofiler "):
            commands.append((line[2:], []))
        elif commands and line and not line.startswith(("```", "…")):
            commands[-1][1].append(line)
    return commands


def test_the_readme_shows_the_commands_this_test_runs():
    names = [shlex.split(command, comments=True)[1] for command, _ in ops_commands()]
    assert {"show", "tail", "top", "report"} <= set(names) and len(names) >= 6


@pytest.mark.parametrize("command", [c for c, _ in ops_commands()], ids=lambda c: c[11:60])
def test_each_ops_command_in_the_readme_runs_as_printed(command, shop, tmp_path):
    shop.get("/report/350", request_id="req-8812")
    shop.get("/listing/7", request_id="req-8813")  # fast: not kept
    log = str(shop.recorder.path)
    args = [
        log if arg in (LOG_IN_README, "LOG") else arg
        for arg in shlex.split(command, comments=True)[1:]
    ]
    printed = dict(ops_commands())[command]
    if args[0] == "tail":
        tail = Following(*args[1:])
        try:
            line = tail.wait_for(
                lambda name, line: name == "out" and "req-9" in line,
                meanwhile=lambda: shop.get("/report/9", request_id="req-9"),
            )
        finally:
            tail.stop()
        assert " GET /report/9 500 " in line
        return
    done = ioprofiler(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout.splitlines()
    if args[0] == "show" and "--list" in args:  # the guide's example line, values aside
        assert [line.split()[1:5] for line in out] == [printed[0].split()[1:5]]
        assert out[0].split("  ")[1:3] == printed[0].split("  ")[1:3]  # route, reasons
    elif args[0] == "show" and "req-8812" in args:  # the cause first, then the headline
        # the costliest finding: the 120 ms statement's; or, when a busy machine kept the
        # request out of I/O longer than that, the unexplained time (tests/test_cause.py
        # holds the rule itself)
        assert out[0].startswith(("cause: slow call: ", "cause: unexplained time"))
        assert out[1].split()[1:5] == ["req-8812", "GET", "/report/350", "500"]
        listed = [line.split(" ms ", 1)[-1] for line in out[2:]]
        assert printed[0].split(" ms ", 1)[-1] in listed  # Cache MISS, keys: listing:350
        assert any(line.startswith(printed[1].split(" ms ", 1)[-1]) for line in listed)
    elif args[0] == "top":
        assert out[0].split(";")[1:] == printed[0].split(";")[1:]
        assert out[1].split() == printed[1].split()
    elif args[0] == "report":
        assert (tmp_path / args[args.index("-o") + 1]).exists()


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["show", "--since", "-1h", "--list"], "req-1 GET /report/1 500"),
        (["show", "--since", "-30m", "--until", "-0.001s", "--list"], "req-1 GET /report/1 500"),
        (["show", "--until", "-1h", "--list"], ""),
        (["top", "--since", "-1h", "--until", "-0s"], "GET /report/<int:id>      1"),
        (["top", "--since", "-90m", "--by", "statement"], "SELECT sleep_ms(?)"),
        (["report", "--since", "-2d", "-o", "r.html"], "r.html: 1 kept request"),
        (["report", "--until", "-2d", "-o", "r.html"], "r.html: 0 kept requests"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_relative_times_are_taken_as_values_in_every_command(args, shown, shop, tmp_path):
    shop.get("/report/1", request_id="req-1")
    done = ioprofiler(args[0], str(shop.recorder.path), *args[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (shown in done.stdout) if shown else "req-1" not in done.stdout


def test_tail_takes_a_relative_time(shop):
    shop.get("/report/1", request_id="req-old")
    tail = Following(str(shop.recorder.path), "--since", "-1h", "--from-start", "--list")
    try:
        line = tail.wait_for(lambda name, line: name == "out" or "error" in line)
    finally:
        tail.stop()
    assert "req-old" in line


# -- defect 2: nothing recorded drives the terminal --------------------------------------------


@pytest.fixture
def hostile_log(shop) -> Path:
    """One request a client sent to a hostile path, through the middleware, and one line with
    hostile values where the client cannot put them (another tool, a tampered log)."""
    shop.get("/a%1b%5b2J%1b%5d0;pwned%07b", request_id="req-h1")
    path = Path(shop.recorder.path)
    record = json.loads(path.read_text().splitlines()[-1])
    assert HOSTILE[:4] in record["path"]  # the recorder keeps the path as it came
    record.update(
        id="req-h2",
        route=f"/r/{HOSTILE}",
        host=f"web{HOSTILE}",
        reasons=[f"slow{HOSTILE}"],
    )
    for total in record["targets"]:
        total["target"] = f"db{HOSTILE}"
    for event in record["events"]:
        event["target"] = f"db{HOSTILE}"
        statement = f"SELECT '{HOSTILE}' FROM t{HOSTILE}"  # its shape keeps the table's name
        event["sql"] = event["statement"] = statement if event["kind"] == "db" else None
        event["keys"] = [f"key{HOSTILE}"] if event["kind"] == "cache" else []
        event["callsite"] = f"app.py:1 in {HOSTILE}"
        event["line"] = f"[{event['target']}] 1.000 ms {HOSTILE}"
    with path.open("a") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


EVERY_COMMAND = [
    ["show"],
    ["show", "--list"],
    ["show", "--callsites"],
    ["show", "req-h2"],
    ["top"],
    ["top", "--by", "target"],
    ["top", "--by", "statement"],
    ["top", "--by", "wait"],
    ["top", "--by", "finding"],
    ["top", "--by", "callsite"],
    ["top", "--by", "shape"],
    ["report", "-o", "r.html"],
]


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=" ".join)
def test_no_command_puts_a_control_character_on_a_pipe(args, hostile_log, tmp_path):
    done = ioprofiler(args[0], str(hostile_log), *args[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not [c for c in RAW_CONTROLS if c in done.stdout + done.stderr]
    if args[0] != "report":
        assert "\\x1b[2J" in done.stdout  # shown, as an escape


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=" ".join)
def test_no_command_puts_a_control_character_on_a_terminal(args, hostile_log, tmp_path):
    out = in_terminal(args[0], str(hostile_log), *args[1:], cwd=tmp_path)
    assert not [c for c in RAW_CONTROLS if c in out]
    if args[0] != "report":
        assert "\\x1b[2J" in out


@pytest.mark.parametrize(
    "args",
    [
        ["show", "--json"],
        ["top", "--json"],
        ["top", "--by", "wait", "--json"],
        ["top", "--by", "finding", "--json"],
        ["top", "--by", "shape", "--json"],
    ],
)
def test_json_output_escapes_them_and_stays_the_same_json(args, hostile_log):
    done = ioprofiler(args[0], str(hostile_log), *args[1:])
    assert not [c for c in RAW_CONTROLS if c in done.stdout]
    documents = [json.loads(line) for line in done.stdout.splitlines()]
    if args[0] == "show":
        assert documents[-1]["route"] == f"/r/{HOSTILE}"  # the value itself, JSON-escaped


def test_tail_escapes_them(hostile_log):
    tail = Following(str(hostile_log), "--from-start")
    try:
        line = tail.wait_for(lambda name, line: "req-h2" in line)
        listing = tail.wait_for(lambda name, line: line.startswith("[db"))
    finally:
        tail.stop()
    assert not [c for c in RAW_CONTROLS if c in line + listing]
    assert "\\x1b[2J" in line and "\\x1b[2J" in listing


# -- defect 5: damaged and foreign lines are skipped, counted, and said once -------------------

FOREIGN = [
    b'{"id": "x", "duration_ms": "slow"}',
    b'{"level": "info", "msg": "another tool wrote here"}',
    b"[1, 2, 3]",
    b'"just a string"',
    b'{"id": 5}',
    b'{"id": "y", "events": [{"kind": 1}]}',
    b'{"id": "z", "ts": "yesterday"}',
    b'{"id": "w", "status": null, "calls": "many"}',
    b'{"id": "v", "targets": [{"kind": "db", "target": "d", "calls": 1, "ms": "1"}]}',
    b'{"id": "u", "reasons": "slow"}',
]


@pytest.fixture
def damaged_log(shop) -> tuple[Path, int]:
    """A log the Recorder wrote, two gzipped rotations (one cut short), and between the
    recorded lines everything a log can meet on a bad day. Returns it and how many of its
    lines are not requests and not other records."""
    shop.get("/report/1", request_id="req-a")
    log = Path(shop.recorder.path)
    good = log.read_bytes()
    record = json.loads(good)
    big = dict(record, id="req-big", pad="p" * 5 * 2**20)
    older = good.replace(b'"req-a"', b'"old-1"') + b"\x00\x01 not JSON at all\n"
    (log.parent / f"{log.name}.2.gz").write_bytes(gzip.compress(older))
    cut = gzip.compress(b"".join(good.replace(b'"req-a"', b'"old-%d"' % n) for n in range(50)))
    (log.parent / f"{log.name}.1.gz").write_bytes(cut[: len(cut) // 2])
    gap = {
        "type": "gap", "lost": 3, "from": "2026-12-06T03:00:00+00:00",
        "until": "2026-12-06T03:00:05+00:00", "time": record["time"], "ts": record["ts"],
        "host": "web1", "pid": 4121, "record_version": 1,
    }  # fmt: skip
    damage = [
        good[:50],  # torn
        b"",
        b"   ",
        b'{"id": "huge", "pad": "' + b"x" * 5 * 2**20,  # 5 MB, never ends
        json.dumps(big).encode(),  # 5 MB, whole
        b'{"id": "\xff\xfe not utf-8"}',
        *FOREIGN,
        json.dumps(gap).encode(),
        json.dumps({"type": "digest", "routes": {}}).encode(),  # a newer recorder's
        json.dumps({"type": "summary", "routes": {}}).encode(),  # no time: damaged
        json.dumps(
            {"type": "summary", "from_ts": 1, "ts": 2, "routes": {"/": {"requests": 2}}}
        ).encode(),  # its histogram does not hold its requests: damaged
        json.dumps({"type": "marker", "text": ["deploy"], "ts": 1}).encode(),  # damaged
    ]
    with log.open("ab") as handle:
        handle.write(b"\n".join(damage) + b"\n")
    shop.get("/report/2", request_id="req-after")
    # .2.gz's garbage, .1.gz's end, torn, huge, bytes, foreign, the summaries and the marker
    skipped = 2 + 1 + 1 + 1 + len(FOREIGN) + 3
    return log, skipped


READERS = [
    ["show"],
    ["show", "--list"],
    ["show", "--min-ms", "1", "--list"],
    ["show", "--since", "-1h", "--status", "5xx", "--list"],
    ["show", "--slowest", "2", "--list"],
    ["show", "--json"],
    ["show", "req-after"],
    ["top"],
    ["top", "--by", "target"],
    ["top", "--by", "statement"],
    ["top", "--by", "wait"],
    ["top", "--by", "finding"],
    ["top", "--by", "callsite"],
    ["top", "--by", "shape"],
    ["report", "-o", "r.html"],
]


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_every_reader_skips_what_it_cannot_read_and_says_so_once(args, damaged_log, tmp_path):
    log, skipped = damaged_log
    done = ioprofiler(args[0], str(log), *args[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first = f"{log}.2.gz line 2"
    assert done.stderr == (
        f"ioprofiler: skipped {skipped} lines that are not kept requests (the first: {first})\n"
    )
    if args == ["show", "--list"]:
        ids = [line.split()[1] for line in done.stdout.splitlines() if " GET " in line]
        assert ids[0] == "old-1" and ids[-3:] == ["req-a", "req-big", "req-after"]
        assert "3 requests not recorded between 2026-12-06T03:00:00+00:00 and " in done.stdout
    if args == ["top"]:
        assert "GET /report/<int:id>" in done.stdout
    if args[0] == "report":
        assert "req-after" in (tmp_path / "r.html").read_text()


def test_the_readers_count_what_the_log_holds(damaged_log):
    from ioprofiler.logread import Skipped, entries, records

    log, skipped = damaged_log
    counted_here = Skipped()
    found = [r["id"] for r in records(log, skipped=counted_here)]
    assert found[0] == "old-1" and found[-3:] == ["req-a", "req-big", "req-after"]
    assert counted_here.count == skipped
    gaps = [e for e in entries(log) if e.get("type") == "gap"]
    assert [g["lost"] for g in gaps] == [3]


def test_tail_skips_them_and_says_so_when_stopped(damaged_log):
    import signal

    log, skipped = damaged_log
    tail = Following(str(log), "--from-start", "--list")
    try:
        tail.wait_for(lambda name, line: "req-after" in line)
    finally:
        tail.process.send_signal(signal.SIGINT)  # Ctrl-C, as ops stop it
        tail.process.wait(timeout=30)
    said = tail.wait_for(lambda name, line: name == "err")
    assert said.startswith(f"ioprofiler: skipped {skipped - 2} lines")  # not the .gz files


# -- defect 8: the smaller ones ---------------------------------------------------------------


def test_tail_on_a_missing_log_says_so_then_follows_it_when_it_appears(shop, tmp_path):
    log = tmp_path / "log" / "later.jsonl"  # mistyped, or the app has not started yet
    tail = Following(str(log), "--list")
    later = None
    try:
        said = tail.wait_for(lambda name, line: name == "err")
        assert said == f"ioprofiler: {log}: no such file yet; waiting for it\n"
        later = Shop(tmp_path / "dbshard03.db", shop.cache, log)
        line = tail.wait_for(
            lambda name, line: name == "out",
            meanwhile=lambda: later.get("/report/1", request_id="req-first"),
        )
    finally:
        tail.stop()
        if later is not None:
            later.recorder.close()
            later.engine.dispose()
    assert "req-first" in line


def test_logrotates_date_named_files_are_read_in_order(shop):
    from ioprofiler.logread import log_files

    shop.get("/report/1", request_id="req-today")
    log = Path(shop.recorder.path)
    line = log.read_bytes()
    for suffix, ident in (
        ("-20261204.gz", "dec-4"),
        ("-20261205", "dec-5"),
        ("-20261130.gz", "nov-30"),
    ):
        data = line.replace(b'"req-today"', f'"{ident}"'.encode())
        rotated = log.parent / (log.name + suffix)
        rotated.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    done = ioprofiler("show", str(log), "--list")
    assert [row.split()[1] for row in done.stdout.splitlines()] == [
        "nov-30", "dec-4", "dec-5", "req-today"
    ]  # fmt: skip
    one = log.parent / (log.name + "-20261205")
    assert log_files(one) == [one]


def test_the_headline_counts_in_words_and_route_takes_a_glob(shop):
    shop.get("/one/1", request_id="req-one")
    shop.get("/report/2", request_id="req-two")
    out = ioprofiler("show", str(shop.recorder.path), "--route", "/one/*", "--list").stdout
    assert [line.split()[1] for line in out.splitlines()] == ["req-one"]
    assert ", 1 call  route /one/<int:id>" in out
    out = ioprofiler("show", str(shop.recorder.path), "--route", "/*/<int:id>", "--list").stdout
    assert out.count("\n") == 2


def test_top_by_wait_lines_up_its_columns(shop):
    shop.get("/report/1", request_id="req-1")  # connects (memcached, SQLite), the pool's ROLLBACK
    out = ioprofiler("top", str(shop.recorder.path), "--by", "wait").stdout.splitlines()
    header, rows = out[1], out[2:]
    assert {row.split()[0] for row in rows} == {"CONNECT", "ROLLBACK"} and len(rows) == 3
    column = header.index("target")
    assert all(row[column - 1] == " " and row[column] != " " for row in rows)


def test_an_id_prefix_that_matches_several_requests_is_ambiguous(shop):
    shop.get("/report/1", request_id="req-71")
    shop.get("/report/2", request_id="req-72")
    done = ioprofiler("show", str(shop.recorder.path), "req-7")
    assert done.returncode == 1 and done.stdout == ""
    said = done.stderr.splitlines()
    assert said[0] == (
        "ioprofiler: 2 kept requests have ids beginning with 'req-7'; give more of the id:"
    )
    assert [line.split()[1] for line in said[1:]] == ["req-71", "req-72"]
    one = ioprofiler("show", str(shop.recorder.path), "req-72")
    assert one.returncode == 0 and one.stdout.splitlines()[1].split()[1] == "req-72"


def test_the_report_has_the_logs_permissions(shop, tmp_path):
    shop.get("/report/1", request_id="req-1")
    os.chmod(shop.recorder.path, 0o640)
    (tmp_path / "old.html").write_text("from before")
    os.chmod(tmp_path / "old.html", 0o644)
    for name in ("new.html", "old.html"):
        done = ioprofiler("report", str(shop.recorder.path), "-o", name, cwd=tmp_path)
        assert done.returncode == 0
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640
    assert "req-1" in (tmp_path / "old.html").read_text()


def test_a_report_that_cannot_be_written_says_why_and_keeps_the_one_there(shop, small_fs):  # noqa: F811
    shop.get("/report/1", request_id="req-1")
    old = small_fs / "report.html"
    old.write_text("the report from before")
    filler = fill(small_fs)  # the disk is full: the new report cannot be written whole
    done = ioprofiler("report", str(shop.recorder.path), "-o", str(old))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"ioprofiler: cannot write {old}: No space left on device\n"
    assert old.read_text() == "the report from before"
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler", "report.html"]
    filler.unlink()
    for output, reason in (
        ("/dev/full", "No space left on device"),
        (str(small_fs / "gone" / "r.html"), "No such file or directory"),
    ):
        done = ioprofiler("report", str(shop.recorder.path), "-o", output)
        assert (done.returncode, done.stderr) == (
            1,
            f"ioprofiler: cannot write {output}: {reason}\n",
        )
    assert ioprofiler("report", str(shop.recorder.path), "-o", str(old)).returncode == 0
    assert "req-1" in old.read_text()


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_headlines_fit_the_terminal(shop):
    shop.get("/report/350", request_id="req-8812")
    out = ANSI.sub("", in_terminal("show", str(shop.recorder.path), "--list", columns=100))
    lines = out.replace("\r", "").splitlines()
    assert len(lines) >= 2 and max(len(line) for line in lines) <= 100
    assert lines[0].split()[1:5] == ["req-8812", "GET", "/report/350", "500"]
    assert "kept: slow, status" in out and "pid " in out
    piped = ioprofiler("show", str(shop.recorder.path), "--list").stdout
    assert piped.count("\n") == 1  # one line each, for grep


def milliseconds(call: str) -> float:
    """A listing line's duration: ``[dbshard03] 120.402 ms SELECT …`` -> 120.402."""
    return float(call.split("] ", 1)[1].split(" ms ", 1)[0])


def test_show_names_the_callsite_of_the_slow_call_and_of_every_call_on_request(shop):
    shop.get("/report/1", request_id="req-1")
    listing = ioprofiler("show", str(shop.recorder.path)).stdout.splitlines()[1:]
    calls = [line for line in listing if line.startswith("[")]
    marked = [line for line in calls if "  <- " in line]
    # the slow calls are marked, and only those: the statement that sleeps 120 ms, and any
    # other call a busy machine made as slow (a memcached get once took 108 ms at load 8)
    slow = [line for line in calls if milliseconds(line) >= SLOW_MS]
    assert marked == slow
    (statement,) = [line for line in marked if "SELECT sleep_ms(?)" in line]
    assert "test_cli_ops.py:" in statement and statement.endswith(" in app")
    every = ioprofiler("show", str(shop.recorder.path), "--callsites").stdout.splitlines()[1:]
    calls = [line for line in every if line.startswith("[")]
    assert len(calls) >= 5 and all("  <- " in line for line in calls)


def test_findings_read_back_as_the_live_listing_printed_them(tmp_path):
    from tests.conftest import mysql_or_skip

    mysql_or_skip().close()
    engine = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/")

    def app(environ, start_response):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT SLEEP(:s), :n"), {"s": 0.12, "n": 1}).all()
            for n in range(6):
                conn.execute(sa.text("SELECT :n + 1"), {"n": n}).all()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    recorder = Recorder(tmp_path / "io.jsonl", slow_ms=100)
    client = BrowserLike(IOProfilerMiddleware(app, record=recorder))
    response = client.get(
        "/?ioprofiler=text",
        headers={"X-Request-Id": "req-live"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    live = response.get_data(as_text=True).splitlines()
    response.close()
    recorder.close()
    engine.dispose()
    shown = ioprofiler("show", str(recorder.path), "req-live").stdout.splitlines()
    findings = [line for line in live if not line.startswith("[") and "SELECT" in line]
    assert findings and [line for line in shown if line in findings] == findings
    assert not [line for line in shown if "%(" in line]


def test_a_request_past_max_events_reads_back_with_all_its_calls(
    sqlite_shards, memcached, tmp_path
):
    host, port = memcached.address
    cache = Client((host, port), default_noreply=False)
    shop = Shop(tmp_path / "dbshard03.db", cache, tmp_path / "io.jsonl", max_events=3)
    shop.get("/report/1", request_id="req-1")
    shop.recorder.close()
    shop.engine.dispose()
    cache.close()
    record = json.loads(Path(shop.recorder.path).read_text().splitlines()[0])  # then its summary
    assert len(record["events"]) == 3 and record["calls"] > 3
    done = ioprofiler("show", str(shop.recorder.path))
    assert done.returncode == 0, done.stderr
    summary = [line for line in done.stdout.splitlines() if " ms of I/O in " in line]
    assert summary[0].startswith(f"{record['calls']} calls, ")
