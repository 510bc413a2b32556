"""The built wheel holds ioprofiler.integrations and nothing named integrations at the top;
the callsite accelerator is in it where it can be built, and a machine without a C compiler
still builds and installs ioprofiler, pure Python."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCELERATED = sys.implementation.name == "cpython" and (3, 10) <= sys.version_info[:2] <= (3, 13)


def copy_source(source: Path, folders: tuple[str, ...] = ("ioprofiler", "integrations")) -> Path:
    """A clean copy of the source in ``source``: a checkout's build/ folder and in-place
    extension modules would otherwise go into a wheel as they are."""
    source.mkdir()
    for name in ("pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "docs", source / "docs")
    for name in folders:
        shutil.copytree(
            ROOT / name,
            source / name,
            ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
        )
    return source


def build_wheel(directory: Path, **env: str) -> list[str]:
    """Build from a clean copy of the source (:func:`copy_source`)."""
    source = copy_source(directory / "source")
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
    if platform.python_implementation() == "CPython":  # MethodPatch, recorders, tally: any
        for module in ("_patch", "_recorders", "_tally"):
            (built,) = speedups(names, module)
            assert built.endswith((".so", ".pyd")), built


def test_without_a_c_compiler_the_wheel_is_pure_python(tmp_path):
    names = build_wheel(tmp_path, CC="false", LDSHARED="false")
    assert speedups(names) == [] and speedups(names, "_patch") == []
    assert speedups(names, "_recorders") == [] and speedups(names, "_tally") == []
    assert "ioprofiler/callsite.py" in names


def fresh_venv(directory: Path) -> Path:
    """A new virtual environment without ioprofiler, its python returned. It sees this
    environment's libraries (SQLAlchemy, pytest, pip and setuptools: no index is needed)
    through a .pth line, which adds their folder but runs none of its .pth files: the
    editable install of ioprofiler there, whose finder would join the clone's two folders,
    stays off."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    python = directory / "bin" / "python"
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site_packages) / "libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def profile_snippet() -> str:
    """The README's first snippet that profiles a block of code ("Add it to your app")."""
    from tests.test_readme import snippets

    return next(s.code for s in snippets() if "with ioprofiler.profile() as trace:" in s.code)


def test_a_clone_works_from_inside_after_a_plain_pip_install(tmp_path):
    """README: ``pip install './ioprofiler[...]'`` from a clone, not editable. Python started
    in the clone imports its ioprofiler/ folder ahead of the installed copy, and
    ioprofiler.integrations must be found there too (it is the top-level integrations/)."""
    clone = copy_source(tmp_path / "ioprofiler", ("ioprofiler", "integrations", "tests"))
    python = fresh_venv(tmp_path / "venv")
    pip = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
    subprocess.run([*pip, "./ioprofiler"], cwd=tmp_path, check=True, capture_output=True)
    installed = subprocess.run(
        [python, "-c", "import ioprofiler.integrations.sqlalchemy as m; print(m.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert installed.stdout.startswith(str(tmp_path / "venv")), installed.stderr

    snippet = subprocess.run([python, "-c", profile_snippet()], cwd=clone, capture_output=True)
    assert snippet.returncode == 0, snippet.stderr.decode()
    assert snippet.stdout.decode().startswith("[dbshard01] "), snippet.stdout.decode()
    assert b"SELECT 1" in snippet.stdout

    test = "tests/test_sqlalchemy.py::test_each_shard_is_named_after_its_file"
    suite = subprocess.run(
        [python, "-m", "pytest", test, "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        capture_output=True,
        text=True,
    )
    assert suite.returncode == 0 and "1 passed" in suite.stdout, suite.stdout + suite.stderr


def test_the_sdist_is_the_package_and_no_part_of_the_test_suite(tmp_path):
    """The test suite runs from a clone (it needs the demo app, the Makefile, servers): the
    sdist holds none of it, not test files without the conftest.py and helpers they import.
    It holds the user guide the README links to (docs/, its pictures too)."""
    source = copy_source(tmp_path / "clone", ("ioprofiler", "integrations", "tests", "demo_app"))
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path), "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (sdist,) = tmp_path.glob("ioprofiler-*.tar.gz")
    with tarfile.open(sdist) as archive:
        files = {member.name.split("/", 1)[1] for member in archive.getmembers() if member.isfile()}
    shipped = {name for name in files if not name.startswith("ioprofiler.egg-info/")}
    package = {
        str(path.relative_to(ROOT))
        for folder in ("ioprofiler", "integrations")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".c", ".h") and "__pycache__" not in path.parts
    }
    metadata = {"PKG-INFO", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"}
    guide = {str(path.relative_to(ROOT)) for path in (ROOT / "docs").rglob("*") if path.is_file()}
    assert not [name for name in shipped if name.startswith("tests/")]
    assert shipped == package | metadata | guide


def test_the_metadata_names_the_pythons_frameworks_and_licence(tmp_path):
    """What an index shows and filters on. The classifiers are PyPI's own (setuptools checks
    them against trove-classifiers when that is installed, as in the test extras)."""
    from build.util import project_wheel_metadata
    from trove_classifiers import classifiers as known

    metadata = project_wheel_metadata(copy_source(tmp_path / "source"), isolated=False)
    classifiers = metadata.get_all("Classifier") or []
    assert classifiers and not set(classifiers) - known, sorted(set(classifiers) - known)
    pythons = [c.split(" :: ")[-1] for c in classifiers if re.search(r"Python :: 3\.\d+$", c)]
    assert pythons == ["3.10", "3.11", "3.12", "3.13"]
    assert metadata["Requires-Python"] == f">={pythons[0]}"
    frameworks = {"Django", "Flask", "FastAPI", "AsyncIO", "Pytest"}  # adapters, pytest plugin
    assert {f"Framework :: {name}" for name in frameworks} <= set(classifiers)
    assert metadata["License-Expression"] == "MIT"
