"""Real servers for the tests: a private memcached per session, SQLite shard files,
MariaDB at 127.0.0.1:3306 when it answers (required when IOPROFILER_REQUIRE_MYSQL=1)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ioprofiler

SHARDS = ("dbshard01", "dbshard02", "dbshard03", "dbshard04")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Memcached:
    """One memcached process on a loopback port, started and stopped by the tests."""

    def __init__(self, *extra_args: str) -> None:
        self.extra_args = list(extra_args)
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        if not os.path.exists(binary):
            pytest.fail(
                "memcached is not installed: run `make test` (it installs it with apt-get), "
                "or `sudo apt-get install -y memcached`"
            )
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> Memcached:
        for _ in range(5):
            self.port = free_port()
            command = [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
            command += self.extra_args
            if os.geteuid() == 0:
                command += ["-u", "root"]
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            if self._wait_until_listening():
                return self
            self.stop()
        raise RuntimeError("could not start memcached on a free loopback port")

    def _wait_until_listening(self) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(self.address, timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def memcached() -> Iterator[Memcached]:
    server = Memcached().start()
    yield server
    server.stop()


@pytest.fixture
def start_memcached() -> Iterator[object]:
    """Start more memcached servers for one test; all are stopped after it."""
    started: list[Memcached] = []

    def start(*extra_args: str) -> Memcached:
        server = Memcached(*extra_args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def _installed() -> Iterator[None]:
    from ioprofiler.event import forget_cache_servers

    ioprofiler.install()
    forget_cache_servers()
    yield
    ioprofiler.configure(redact=False)


@pytest.fixture
def sqlite_shards(tmp_path: Path):
    """Four SQLite shard files with a FavoriteListingUser table each."""
    import sqlalchemy as sa

    engines = {}
    for number, name in enumerate(SHARDS, start=1):
        engine = sa.create_engine(f"sqlite:///{tmp_path / name}.db")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE FavoriteListingUser (id INTEGER PRIMARY KEY, "
                "listing_id INTEGER NOT NULL, user_id INTEGER NOT NULL)"
            )
            conn.exec_driver_sql(
                "INSERT INTO FavoriteListingUser (listing_id, user_id) VALUES (?, ?)",
                [(5773453, number * 10 + i) for i in range(number)],
            )
        engines[name] = engine
    yield engines
    for engine in engines.values():
        engine.dispose()


def mysql_or_skip():
    """A PyMySQL connection factory for 127.0.0.1:3306, or skip (fail under CI's flag)."""
    try:
        import pymysql

        connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=3)
    except Exception as exc:
        reason = f"MariaDB/MySQL at 127.0.0.1:3306 (user root, no password) is not answering: {exc}"
        if os.environ.get("IOPROFILER_REQUIRE_MYSQL") == "1":
            pytest.fail(reason + " (IOPROFILER_REQUIRE_MYSQL=1 makes this a failure)")
        pytest.skip(reason)
    return connection
