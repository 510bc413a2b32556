"""A WSGI app of the test suite under gunicorn, as the recorder's users run it.

>>> with gunicorn("tests.recorded_app:app", {"IOP_LOG": str(log)}, workers=4) as (base, server):
...     urllib.request.urlopen(base + "/").read()
...     assert stop(server) == 0     # graceful: each worker writes what it holds

The server listens on a free loopback port; the block waits until it accepts connections
(long enough for a loaded machine), and kills it at the end if it is still running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
START_WITHIN_S = 60  # a worker importing the app under load can take this long


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(
    app: str,
    env: Mapping[str, str],
    workers: int = 4,
    options: tuple[str, ...] = (),
    stderr: IO[str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``app`` (``module:name``) served by gunicorn with ``workers`` and more command-line
    ``options``, the environment's variables and ``env``'s; yields its base URL and process."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "--chdir", str(ROOT), "--log-level", "warning", *options, app],
        env={**os.environ, **env},
        stderr=stderr,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_WITHIN_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no gunicorn"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def stop(server: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """Stop gunicorn gracefully (SIGTERM: each worker writes its last summary and empties
    its queue); its exit status."""
    server.send_signal(signal.SIGTERM)
    return server.wait(timeout=timeout)
