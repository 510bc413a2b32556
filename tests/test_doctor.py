"""`ioprofiler --version` and `ioprofiler doctor`, run as a user runs them: the installed
command, in a process of its own; and the one INFO line `install()` logs on the pure path."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ioprofiler
from ioprofiler import recorders
from ioprofiler.cli import doctor

COMMAND = Path(sys.executable).parent / "ioprofiler"
ROOT = Path(__file__).resolve().parent.parent

# The versions each compiled module builds for (the #if at the top of its .c file).
SPEEDUPS_VERSIONS = {(3, 10), (3, 11), (3, 12), (3, 13)}
CPYTHON = sys.implementation.name == "cpython"


def run(*args: str, env: dict[str, str] | None = None, pythonpath: Path | None = None) -> str:
    environment = {**os.environ, "IOPROFILER_PURE_PYTHON": "", **(env or {})}
    if pythonpath is not None:
        environment["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run(
        [str(COMMAND), *args], env=environment, capture_output=True, text=True, check=True
    )
    return result.stdout


def line_of(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"  {name} "))


def test_version_is_the_installed_distributions():
    assert run("--version").strip() == f"ioprofiler {importlib.metadata.version('ioprofiler')}"


def test_doctor_names_the_python_and_its_build():
    output = run("doctor")
    assert output.splitlines()[0] == f"ioprofiler {ioprofiler.__version__}"
    python = output.splitlines()[1]
    assert python.startswith(
        f"Python: {platform.python_implementation()} {platform.python_version()}, GIL build"
    )
    assert sys.executable in python


def runs_here(name: str) -> bool:
    """Whether the compiled module builds and runs on this Python."""
    return CPYTHON and (name != "_speedups" or sys.version_info[:2] in SPEEDUPS_VERSIONS)


@pytest.mark.parametrize("name", ["_speedups", "_patch", "_recorders", "_tally"])
def test_doctor_says_which_compiled_modules_run(name):
    line = line_of(run("doctor"), name)
    if "not built" in line and os.environ.get("IOPROFILER_REQUIRE_SPEEDUPS") != "1":
        pytest.skip(f"{name} is not built here (no C compiler?)")
    if runs_here(name):
        assert line.split()[1:3] == ["in", "use"], line
    else:
        assert f"not in use   refused this Python: ioprofiler.{name} " in line


def test_doctor_says_pure_python_was_asked_for():
    output = run("doctor", env={"IOPROFILER_PURE_PYTHON": "1"})
    for name in ("_speedups", "_patch", "_recorders", "_tally"):
        assert line_of(output, name).split(None, 1)[1] == (
            "not in use   IOPROFILER_PURE_PYTHON=1 is set"
        )


def test_doctor_says_a_module_is_not_built(tmp_path):
    # the way an install without a C compiler looks: the module's import finds nothing
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['ioprofiler._recorders'] = None\n"
    )
    output = run("doctor", pythonpath=tmp_path)
    assert "not in use   not built" in line_of(output, "_recorders")
    assert "not in use" not in line_of(output, "_patch")


def test_doctor_names_each_librarys_version():
    output = run("doctor")
    for name, distribution in [("sqlalchemy", "SQLAlchemy"), ("pymemcache", "pymemcache")]:
        line = line_of(output, name)
        version = importlib.metadata.version(distribution)
        assert line.split() == [name, distribution, version, "would", "patch"]


def test_doctor_says_a_library_is_not_installed(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['httpx'] = None\n")
    output = run("doctor", pythonpath=tmp_path)
    assert line_of(output, "httpx").split() == ["httpx", "not", "installed"]


def test_doctor_in_process_says_what_was_switched_off(monkeypatch):
    if not recorders.compiled_recorders:
        pytest.skip("ioprofiler._recorders is not in use here")
    monkeypatch.setattr(recorders, "compiled_recorders", False)
    line = line_of(doctor.report(), "_recorders")
    assert line.split(None, 1)[1] == (
        "not in use   switched off (ioprofiler.recorders.compiled_recorders = False)"
    )


INSTALL_LOGGING = textwrap.dedent(
    """
    import logging, ioprofiler
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    ioprofiler.install()
    ioprofiler.install()
    """
)


def install_log(env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", INSTALL_LOGGING],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return [line for line in result.stderr.splitlines() if line.startswith("INFO ioprofiler")]


def test_install_logs_one_line_on_the_pure_path():
    lines = install_log({"IOPROFILER_PURE_PYTHON": "1"})
    assert len(lines) == 1, lines
    assert "_patch: IOPROFILER_PURE_PYTHON=1 is set" in lines[0]
    assert "ioprofiler doctor" in lines[0]


@pytest.mark.skipif(
    os.environ.get("IOPROFILER_REQUIRE_SPEEDUPS") != "1",
    reason="the compiled modules may not be built here (IOPROFILER_REQUIRE_SPEEDUPS=1 in CI)",
)
def test_install_logs_nothing_on_the_compiled_path():
    assert install_log({"IOPROFILER_PURE_PYTHON": ""}) == []


def test_the_wheels_own_check_passes_where_every_module_is_built():
    # cibuildwheel runs pyproject's test-command in each wheel it builds: the same check here
    if os.environ.get("IOPROFILER_REQUIRE_SPEEDUPS") != "1":
        pytest.skip(
            "every compiled module is required to be built only with IOPROFILER_REQUIRE_SPEEDUPS=1"
        )
    line = re.search(r"^test-command = (.*)$", (ROOT / "pyproject.toml").read_text(), re.M)
    doctor_part, python_part = json.loads(line[1]).split(" && ")
    assert doctor_part == "ioprofiler doctor"
    code = shlex.split(python_part)[2]
    environment = {**os.environ, "IOPROFILER_PURE_PYTHON": ""}
    subprocess.run([sys.executable, "-c", code], env=environment, check=True, cwd="/")
    with pytest.raises(subprocess.CalledProcessError):  # and it fails when one is not in use
        subprocess.run(
            [sys.executable, "-c", code], env={**environment, "IOPROFILER_PURE_PYTHON": "1"},
            check=True, capture_output=True, cwd="/",
        )  # fmt: skip
