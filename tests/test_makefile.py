"""`make`'s Debian installs wait for another apt-get instead of failing on its lock, and a
browser that cannot be installed makes the browser test skip (CI requires it).

These run the real Makefile and the real apt-get, against an apt configuration of their
own (no sources, package lists and cache in a temporary folder), so nothing is fetched and
the machine's package lists are left alone; the dpkg lock held is the machine's.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DPKG_LOCK = Path("/var/lib/dpkg/lock-frontend")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None or not DPKG_LOCK.parent.exists(),
    reason="needs root and Debian's apt-get",
)


@pytest.fixture
def apt_env(tmp_path) -> dict[str, str]:
    for folder in ("lists/partial", "cache/archives/partial", "sources.list.d"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "sources.list").write_text("")
    (tmp_path / "apt.conf").write_text(
        f'Dir::Etc::sourcelist "{tmp_path}/sources.list";\n'
        f'Dir::Etc::sourceparts "{tmp_path}/sources.list.d";\n'
        f'Dir::State::Lists "{tmp_path}/lists";\n'
        f'Dir::Cache "{tmp_path}/cache";\n'
    )
    env = dict(os.environ, APT_CONFIG=str(tmp_path / "apt.conf"))
    env.pop("IOPROFILER_REQUIRE_BROWSER", None)
    env.pop("MAKEFLAGS", None)
    return env


def make_browser(env: dict[str, str], packages: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "browser", "CHROMIUM=/nonexistent", f"BROWSER_PACKAGES={packages}"],
        cwd=ROOT,
        env=dict(env, APT_LOCK_TIMEOUT="60"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lock(path: Path) -> int:
    """Take ``path``'s apt lock (an fcntl lock, as apt and dpkg take it); os.close releases."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    return fd


def test_installing_waits_for_the_package_lists_and_dpkg_locks(apt_env):
    lists_fd = lock(Path(apt_env["APT_CONFIG"]).parent / "lists" / "lock")
    dpkg_fd = lock(DPKG_LOCK)
    make = subprocess.Popen(
        ["make", "-s", "browser", "CHROMIUM=/nonexistent", "BROWSER_PACKAGES=memcached"],
        cwd=ROOT,
        env=dict(apt_env, APT_LOCK_TIMEOUT="120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert make.stderr is not None
        first = make.stderr.readline()  # blocks until apt-get update met the lock
        assert "waiting for another apt-get to release the package lists" in first, first
        os.close(lists_fd)
        time.sleep(1)  # apt-get install now waits for dpkg's lock
        assert make.poll() is None, make.communicate()
    finally:
        os.close(dpkg_fd)
    out, err = make.communicate(timeout=120)
    assert make.returncode == 0, out + err  # memcached is installed: nothing else to do


def test_a_browser_that_cannot_be_installed_skips_saying_why(apt_env):
    result = make_browser(apt_env, "ioprofiler-no-such-package")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unable to locate package ioprofiler-no-such-package" in result.stderr
    assert "could not be installed (above): the browser test will skip" in result.stdout

    required = make_browser(
        dict(apt_env, IOPROFILER_REQUIRE_BROWSER="1"), "ioprofiler-no-such-package"
    )
    assert required.returncode != 0
    assert "IOPROFILER_REQUIRE_BROWSER=1 requires them" in required.stdout
