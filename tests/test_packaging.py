"""The built wheel holds ioprofiler.integrations and nothing named integrations at the top;
the callsite accelerator is in it where it can be built, and a machine without a C compiler
still builds and installs ioprofiler, pure Python."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCELERATED = sys.implementation.name == "cpython" and (3, 10) <= sys.version_info[:2] <= (3, 13)


def build_wheel(directory: Path, **env: str) -> list[str]:
    """Build from a clean copy of the source: a checkout's build/ folder and in-place
    extension modules would otherwise go into the wheel as they are."""
    source = directory / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("ioprofiler", "integrations"):
        shutil.copytree(
            ROOT / name,
            source / name,
            ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(directory),
            str(source),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, **env},
    )
    (wheel,) = directory.glob("ioprofiler-*.whl")
    return zipfile.ZipFile(wheel).namelist()


def speedups(names: list[str], module: str = "_speedups") -> list[str]:
    return [name for name in names if name.startswith(f"ioprofiler/{module}")]


def test_wheel_has_no_top_level_integrations_package(tmp_path):
    names = build_wheel(tmp_path)
    wheel = next(tmp_path.glob("ioprofiler-*.whl"))
    top_level = {name.split("/")[0] for name in names}
    assert "integrations" not in top_level, sorted(top_level)
    assert {
        "ioprofiler/integrations/sqlalchemy.py",
        "ioprofiler/integrations/pymemcache.py",
    } <= set(names)
    assert "ioprofiler/render/text.py" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "demo_app/")) for name in names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    assert "License-Expression: MIT" in zipfile.ZipFile(wheel).read(metadata).decode()
    if ACCELERATED:
        (built,) = speedups(names)  # the compiled module, not its C source
        assert built.endswith((".so", ".pyd")), built
    if platform.python_implementation() == "CPython":  # MethodPatch, recorders: any CPython
        for module in ("_patch", "_recorders"):
            (built,) = speedups(names, module)
            assert built.endswith((".so", ".pyd")), built


def test_without_a_c_compiler_the_wheel_is_pure_python(tmp_path):
    names = build_wheel(tmp_path, CC="false", LDSHARED="false")
    assert speedups(names) == [] and speedups(names, "_patch") == []
    assert speedups(names, "_recorders") == []
    assert "ioprofiler/callsite.py" in names
