"""The compiled modules: which ones this process runs with, and why not.

ioprofiler has four optional C extensions, each with a pure-Python twin::

    _speedups   the callsite lookup and recording.begin (ioprofiler/_speedups.c)
    _patch      MethodPatch, the patched method (ioprofiler/_patch.c; else wrapt's wrappers)
    _recorders  gets, statements and round trips recorded (ioprofiler/_recorders.c)
    _tally      the OpenTelemetry exporter's pass over a request's events (ioprofiler/_tally.c)

Each is imported through :func:`load`, which remembers why it is not there::

    _speedups = compiled.load("_speedups")    # the module, or None
    compiled.why_not("_speedups")             # None when loaded, else the reason, e.g.
    # "refused this Python: ioprofiler._speedups reads CPython 3.10 to 3.13 frames only: ..."

``ioprofiler doctor`` prints it, with whatever the process switched off since.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
from types import ModuleType

PURE_PYTHON_VARIABLE = "IOPROFILER_PURE_PYTHON"

MODULES = ("_speedups", "_patch", "_recorders", "_tally")

# What each module does, in a few words, and the CPython versions it builds and runs on: kept
# in step with the #if at the top of its .c file.
PURPOSE = {
    "_speedups": "the callsite lookup and begin",
    "_patch": "patched methods (else wrapt's wrappers)",
    "_recorders": "the recorders of memcached gets, SQL statements and round trips",
    "_tally": "the OpenTelemetry exporter's pass over a request's events",
}
_VERSIONS = {
    "_speedups": ((3, 10), (3, 11), (3, 12), (3, 13)),
    "_patch": None,  # every version ioprofiler supports
    "_recorders": None,
    "_tally": None,
}
_FREE_THREADED_OK = {"_patch", "_tally"}

_why_not: dict[str, str] = {}


def pure_python_forced() -> bool:
    """``IOPROFILER_PURE_PYTHON`` set to anything but "" or "0"."""
    return os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0")


def free_threaded() -> bool:
    """A free-threaded CPython build (3.13t and later), whether or not the GIL is on now."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def load(name: str) -> ModuleType | None:
    """``ioprofiler.<name>``, or None with the reason kept for :func:`why_not`."""
    if pure_python_forced():
        _why_not[name] = f"{PURE_PYTHON_VARIABLE}={os.environ[PURE_PYTHON_VARIABLE]} is set"
        return None
    qualified = f"ioprofiler.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name != qualified:
            _why_not[name] = f"refused this Python: {exc}"
        else:
            _why_not[name] = "not built (no C compiler when ioprofiler was installed?)"
    except ImportError as exc:  # its init refused this interpreter, saying why
        _why_not[name] = f"refused this Python: {exc}"
    return None


def why_not(name: str) -> str | None:
    """Why ``ioprofiler.<name>`` was not loaded, or None when it was (or was never asked for)."""
    return _why_not.get(name)


def could_run(name: str) -> bool:
    """Whether this interpreter is one the module builds and runs on."""
    if sys.implementation.name != "cpython":
        return False
    if free_threaded() and name not in _FREE_THREADED_OK:
        return False
    versions = _VERSIONS[name]
    return versions is None or sys.version_info[:2] in versions
