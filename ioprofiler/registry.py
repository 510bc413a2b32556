"""Which integrations exist, and installing them.

The core never imports an integration by name anywhere else: ``install()`` walks
this list, and each integration module has the same shape: ``available()``,
``install()``, ``uninstall()``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from types import ModuleType

# the modules that load the compiled ones: imported so that their state is settled
from ioprofiler import callsite, compiled, patching, recorders, recording  # noqa: F401

log = logging.getLogger("ioprofiler")

INTEGRATIONS = (
    "sqlalchemy",
    "pymemcache",
    "redis",
    "urllib3",
    "httpx",
    "django",
    "pymysql",
    "psycopg",
)
_installed: dict[str, ModuleType] = {}
_lock = threading.Lock()
_told_path = False


def importable(module: str) -> bool:
    """Whether ``module`` can be imported (an integration's ``available()``)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def integration(name: str) -> ModuleType:
    if name not in INTEGRATIONS:
        raise ValueError(
            f"unknown integration {name!r}; ioprofiler supports: {', '.join(INTEGRATIONS)}"
        )
    return importlib.import_module(f"ioprofiler.integrations.{name}")


def labeller(target: object) -> ModuleType:
    """The integration that names ``target``'s shard: a driver integration whose ``owns()``
    recognises it (a DB-API connection), else SQLAlchemy's (an engine; it refuses others)."""
    for name in INTEGRATIONS:
        module = integration(name)
        owns = getattr(module, "owns", None)
        if owns is not None and owns(target):
            return module
    return integration("sqlalchemy")


def install(only: str | list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Patch every supported library that can be imported (or just ``only``: one name, or
    a list of names).

    Idempotent. Returns the names of the integrations now installed.
    """
    names = INTEGRATIONS if only is None else _names(only)
    with _lock:
        for name in names:
            module = integration(name)
            if name in _installed:
                continue
            if not module.available():
                if only is not None:
                    raise ImportError(f"ioprofiler cannot instrument {name}: it is not installed")
                continue
            module.install()
            _installed[name] = module
        _tell_path_once()
        return [name for name in INTEGRATIONS if name in _installed]


def _tell_path_once() -> None:
    """One INFO line per process when a compiled module this Python could run is not in use."""
    global _told_path
    if _told_path:
        return
    _told_path = True
    missing = {}
    for name in compiled.MODULES:
        reason = compiled_state(name) if compiled.could_run(name) else None
        if reason is not None:
            missing[name] = reason
    if missing:
        log.info(
            "ioprofiler runs without its compiled %s on this Python (%s): `ioprofiler doctor` "
            "says more",
            ", ".join(missing),
            "; ".join(f"{name}: {reason}" for name, reason in missing.items()),
        )


def _names(only: object) -> tuple[str, ...]:
    """``only`` as integration names, every one checked before anything is patched."""
    if isinstance(only, str):
        only = (only,)
    if not isinstance(only, (list, tuple, set, frozenset)) or not all(
        isinstance(name, str) for name in only
    ):
        raise TypeError(
            f"only= takes an integration name or a list of them, like ['sqlalchemy'], not {only!r}"
        )
    for name in only:
        integration(name)
    return tuple(only)


def uninstall() -> None:
    """Take every patch off; the libraries behave and look as before ``install()``."""
    with _lock:
        for name in reversed(list(_installed)):
            _installed.pop(name).uninstall()


def installed() -> list[str]:
    return [name for name in INTEGRATIONS if name in _installed]


def compiled_state(name: str) -> str | None:
    """None when ``ioprofiler.<name>`` is in use in this process, else why not: not loaded
    (:func:`ioprofiler.compiled.why_not`), or loaded and switched off since (a setting, or a
    refusal at run time)."""
    if f"ioprofiler.{name}" not in sys.modules:  # not asked for yet (_tally: by the exporter)
        compiled.load(name)
    reason = compiled.why_not(name)
    if reason is not None:
        return reason
    if name == "_speedups" and not recording.compiled_begin:
        return "in use for the callsite lookup; begin refused the event classes (debug log)"
    if name == "_patch" and not patching.compiled_patches:
        return "switched off (ioprofiler.patching.compiled_patches = False)"
    if name == "_recorders" and not recorders.compiled_recorders:
        return "switched off (ioprofiler.recorders.compiled_recorders = False)"
    return None
