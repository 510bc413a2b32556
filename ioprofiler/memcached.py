"""A private memcached process on a free loopback port, for tests, demos and benchmarks.

>>> with MemcachedProcess() as server:
...     client = pymemcache.Client(server.address)

Only the process this object started is ever stopped, by its own handle.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

INSTALL_HINT = (
    "memcached is not installed: `make test` installs it with apt-get, "
    "or run `sudo apt-get install -y memcached` (macOS: `brew install memcached`)"
)


class MemcachedNotInstalled(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_binary() -> str:
    """The memcached program: ``$IOPROFILER_MEMCACHED`` if set, else the one on PATH."""
    chosen = os.environ.get("IOPROFILER_MEMCACHED")
    binary = chosen or shutil.which("memcached") or "/usr/bin/memcached"
    if not os.path.exists(binary):
        where = f" (IOPROFILER_MEMCACHED={chosen} does not exist)" if chosen else ""
        raise MemcachedNotInstalled(INSTALL_HINT + where)
    return binary


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, end memcached when its parent dies, however
    the parent dies (even by SIGKILL), so no memcached is ever left behind."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class MemcachedProcess:
    """memcached listening on 127.0.0.1 at a free port; ``extra_args`` go to its command line."""

    def __init__(self, *extra_args: str, memory_mb: int = 64) -> None:
        self.binary = find_binary()
        self.extra_args = list(extra_args)
        self.memory_mb = memory_mb
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, attempts: int = 5) -> MemcachedProcess:
        for _ in range(attempts):
            self._launch(free_port())
            if self._wait_until_listening():
                return self
            self.stop()
        raise RuntimeError(f"could not start memcached on a free loopback port ({attempts} tries)")

    def restart(self, attempts: int = 50) -> MemcachedProcess:
        """Stop the server and start a new one on the same port (the data is gone), as
        when a cache server restarts under a running application."""
        port = self.port
        self.stop()
        for _ in range(attempts):
            self._launch(port)
            if self._wait_until_listening():
                return self
            self.stop()
            time.sleep(0.1)
        raise RuntimeError(f"could not start memcached again on port {port} ({attempts} tries)")

    def _launch(self, port: int) -> None:
        self.port = port
        command = [self.binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
        command += ["-m", str(self.memory_mb), *self.extra_args]
        if os.geteuid() == 0:
            command += ["-u", "root"]  # memcached refuses to run as root without it
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def _wait_until_listening(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(self.address, timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> MemcachedProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
