"""``ioprofiler doctor``: which ioprofiler runs here, on which Python, on which path.

    $ ioprofiler doctor
    ioprofiler 0.1.0
    Python: CPython 3.13.0, GIL build (/srv/app/.venv/bin/python)
    compiled modules:
      _speedups   in use       the callsite lookup and begin
      _patch      in use       patched methods (else wrapt's wrappers)
      _recorders  not in use   IOPROFILER_PURE_PYTHON=1 is set
    integrations (the library each would patch):
      sqlalchemy  SQLAlchemy 2.0.36   would patch
      django      not installed

It imports every library it names (as ``ioprofiler.install()`` would) but patches nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys

from ioprofiler import __version__, compiled, registry


def python_line() -> str:
    """The interpreter: implementation, version, and GIL or free-threaded build."""
    build = "GIL build"
    if compiled.free_threaded():
        gil_on = getattr(sys, "_is_gil_enabled", lambda: False)()
        build = "free-threaded build, " + ("the GIL turned back on" if gil_on else "no GIL")
    version = platform.python_version()
    return f"Python: {platform.python_implementation()} {version}, {build} ({sys.executable})"


def compiled_lines() -> list[str]:
    lines = ["compiled modules:"]
    for name in compiled.MODULES:
        reason = registry.compiled_state(name)
        if reason is None:
            lines.append(f"  {name:<11} in use       {compiled.PURPOSE[name]}")
        else:
            lines.append(f"  {name:<11} not in use   {reason}")
    return lines


def library_version(name: str) -> str:
    """The installed distribution's version (``sqlalchemy`` -> "SQLAlchemy 2.0.36")."""
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(name)
        return f"{name} {getattr(module, '__version__', '(version unknown)')}"
    return f"{distribution.metadata['Name']} {distribution.version}"


def integration_lines() -> list[str]:
    lines = ["integrations (the library each would patch):"]
    patched = set(registry.installed())
    for name in registry.INTEGRATIONS:
        if not registry.integration(name).available():
            lines.append(f"  {name:<11} not installed")
            continue
        doing = "patched" if name in patched else "would patch"
        lines.append(f"  {name:<11} {library_version(name):<22} {doing}")
    return lines


def report() -> str:
    """What ``ioprofiler doctor`` prints, for this process."""
    lines = [f"ioprofiler {__version__}", python_line()]
    return "\n".join([*lines, *compiled_lines(), *integration_lines()])


def run_doctor(args: argparse.Namespace) -> int:
    try:
        print(report())
    except BrokenPipeError:  # | head
        sys.stderr.close()
    return 0
