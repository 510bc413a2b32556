"""A real StatsD daemon flushing to a real Graphite carbon-cache, on free loopback ports.

Etsy's ``statsd`` is installed by ``make test`` into ``.node/`` and run with the machine's
Node.js; ``carbon-cache`` comes from Debian's ``graphite-carbon``. Each runs from its own
configuration in a temporary folder; whisper files are read back with ``whisper``.
Missing pieces skip the tests with the reason, or fail them under
``IOPROFILER_REQUIRE_STATSD=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ioprofiler.memcached import _die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[1]
STATSD_JS = ROOT / ".node" / "node_modules" / "statsd" / "stats.js"
CARBON_CACHE = "/usr/bin/carbon-cache"
FLUSH_SECONDS = 1


def missing() -> str | None:
    """Why the StatsD stack cannot run here, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed (Debian: apt-get install nodejs npm), so statsd cannot run"
    if not STATSD_JS.exists():
        return f"statsd is not installed in {STATSD_JS.parent} (`make test` installs it with npm)"
    if not os.path.exists(CARBON_CACHE):
        return "carbon-cache is not installed (`make test` installs Debian's graphite-carbon)"
    return None


def stack_or_skip() -> None:
    reason = missing()
    if reason is not None:
        if os.environ.get("IOPROFILER_REQUIRE_STATSD") == "1":
            pytest.fail(reason + " (IOPROFILER_REQUIRE_STATSD=1 makes this a failure)")
        pytest.skip(reason)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_tcp(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    _stop(process)
    output = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port}:\n{output}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Graphite:
    """carbon-cache storing every metric at one-second resolution under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.whisper_dir = folder / "storage" / "whisper"
        self.line_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Graphite:
        self.line_port = free_port()
        pickle_port, query_port = free_port(), free_port()
        (self.folder / "log").mkdir(parents=True, exist_ok=True)
        self.whisper_dir.mkdir(parents=True, exist_ok=True)
        (self.folder / "storage-schemas.conf").write_text(
            "[everything]\npattern = .*\nretentions = 1s:1h\n"
        )
        (self.folder / "carbon.conf").write_text(
            "[cache]\n"
            f"STORAGE_DIR = {self.folder / 'storage'}/\n"
            f"LOCAL_DATA_DIR = {self.whisper_dir}/\n"
            f"CONF_DIR = {self.folder}/\n"
            f"LOG_DIR = {self.folder / 'log'}/\n"
            f"PID_DIR = {self.folder}/\n"
            "USER =\n"
            "MAX_CACHE_SIZE = inf\n"
            "MAX_UPDATES_PER_SECOND = 100000\n"
            "MAX_CREATES_PER_MINUTE = 100000\n"
            "LINE_RECEIVER_INTERFACE = 127.0.0.1\n"
            f"LINE_RECEIVER_PORT = {self.line_port}\n"
            "ENABLE_UDP_LISTENER = False\n"
            "PICKLE_RECEIVER_INTERFACE = 127.0.0.1\n"
            f"PICKLE_RECEIVER_PORT = {pickle_port}\n"
            "CACHE_QUERY_INTERFACE = 127.0.0.1\n"
            f"CACHE_QUERY_PORT = {query_port}\n"
            "WHISPER_AUTOFLUSH = True\n"
            "LOG_LISTENER_CONNECTIONS = False\n"
        )
        log = self.folder / "log" / "console.log"
        command = [
            CARBON_CACHE,  # Debian's, on Debian's /usr/bin/python3
            f"--config={self.folder / 'carbon.conf'}",
            f"--pidfile={self.folder / 'carbon.pid'}",
            f"--logdir={self.folder / 'log'}",
            "--nodaemon",
            "start",
        ]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                preexec_fn=_die_with_parent,
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            )
        _wait_for_tcp(self.line_port, self.process, "carbon-cache", log)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def series(self, name: str) -> Path:
        return self.whisper_dir.joinpath(*name.split(".")).with_suffix(".wsp")

    def total(self, name: str) -> float:
        """The sum of every datapoint stored for ``name`` in the last hour (0 if none)."""
        import whisper

        path = self.series(name)
        if not path.exists():
            return 0.0
        now = int(time.time())
        _, values = whisper.fetch(str(path), now - 3500, now + 1)
        return sum(v for v in values if v is not None)


class StatsdDaemon:
    """Etsy's statsd on a free UDP port, flushing every second to ``graphite``."""

    def __init__(self, folder: Path, graphite: Graphite) -> None:
        self.folder = folder
        self.graphite = graphite
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> StatsdDaemon:
        self.port = free_udp_port()
        admin_port = free_port()
        config = {
            "graphiteHost": "127.0.0.1",
            "graphitePort": self.graphite.line_port,
            "address": "127.0.0.1",
            "port": self.port,
            "mgmt_address": "127.0.0.1",
            "mgmt_port": admin_port,
            "flushInterval": FLUSH_SECONDS * 1000,
            "deleteIdleStats": True,
            "backends": ["./backends/graphite"],
            "graphite": {"legacyNamespace": False, "globalPrefix": "stats"},
        }
        path = self.folder / "statsd-config.js"
        path.write_text(json.dumps(config, indent=2))
        log = self.folder / "statsd.log"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                ["node", str(STATSD_JS), str(path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=STATSD_JS.parent,
                preexec_fn=_die_with_parent,
            )
        _wait_for_tcp(admin_port, self.process, "statsd", log)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
