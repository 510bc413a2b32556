"""The installed ``ioprofiler`` command, run as a user runs it: a process of its own, its
output piped.

>>> done = ioprofiler("top", str(log), columns=200)
>>> done.returncode, done.stdout, done.stderr
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).with_name("ioprofiler")


def ioprofiler(
    *args: str, cwd: Path | None = None, columns: int | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``ioprofiler ARGS...``, finished (never raises on its exit status); ``columns``: the
    width it is told (``COLUMNS``); ``env``: more environment variables."""
    environment = {**os.environ, **env}
    if columns is not None:
        environment["COLUMNS"] = str(columns)
    return subprocess.run(
        [str(BIN), *args], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
