"""The busiest wrappers compiled: pymemcache's ``Client.get``, SQLAlchemy's ``do_execute``,
its round trips around statements (``do_commit``, ``do_rollback``, ``do_ping``) and the
two checks of every checkout (``Engine.raw_connection``, ``QueuePool._do_get``).

``ioprofiler._recorders`` (an optional C extension, public C API only) has a compiled twin of
each: the same event, fields and callsite as the Python wrapper, without entering Python
code while the call is recorded. An integration makes its recorder from its Python wrapper
and what that wrapper calls; the Python wrapper stays the reference, handles every call of
an unusual shape, and is what runs when the extension is not built or
``IOPROFILER_PURE_PYTHON=1``::

    wrapper = recorders.cache_get(python_wrapper, op="get", targets=..., ...)
    patches.wrap(Client, "get", wrapper)  # the recorder, or the reference (compiled_recorders)

What every recorder calls (``recording.active``, ``begin``, ``failed``, ``done``,
``profiler_failed``) is filled in here; the integration gives the rest.

:data:`compiled_recorders` is read when a patch is put on (``Patches.wrap``): set it False
before ``ioprofiler.install()`` to record with the Python wrappers (a benchmark's ablation).
"""

from __future__ import annotations

from typing import Any

from ioprofiler import compiled, recording

_recorders: Any = compiled.load("_recorders")  # None: the Python wrappers everywhere

compiled_recorders = _recorders is not None


def cache_get(reference: Any, **collaborators: Any) -> Any:
    """pymemcache's ``get`` recorder (see ``_recorders.cache_get``), or ``reference``."""
    if _recorders is None:
        return reference
    return _recorders.cache_get(**_common(reference), **collaborators)


def statement_execute(reference: Any, **collaborators: Any) -> Any:
    """SQLAlchemy's ``do_execute`` recorder (see ``_recorders.statement_execute``), or
    ``reference``."""
    if _recorders is None:
        return reference
    return _recorders.statement_execute(**_common(reference), **collaborators)


def round_trip(reference: Any, **collaborators: Any) -> Any:
    """SQLAlchemy's ``do_commit``/``do_rollback``/``do_ping`` recorder (see
    ``_recorders.round_trip``), or ``reference``."""
    if _recorders is None:
        return reference
    return _recorders.round_trip(**_common(reference), **collaborators)


def engine_checkout(reference: Any, **collaborators: Any) -> Any:
    """SQLAlchemy's ``Engine.raw_connection`` check (see ``_recorders.engine_checkout``), or
    ``reference``."""
    if _recorders is None:
        return reference
    return _recorders.engine_checkout(**_common(reference), **collaborators)


def pool_checkout(reference: Any, **collaborators: Any) -> Any:
    """SQLAlchemy's ``QueuePool._do_get`` check (see ``_recorders.pool_checkout``), or
    ``reference``."""
    if _recorders is None:
        return reference
    return _recorders.pool_checkout(**_common(reference), **collaborators)


def _common(reference: Any) -> dict[str, Any]:
    return {
        "reference": reference,
        "active": recording.active,
        "begin": recording.begin,
        "failed": recording.failed,
        "done": recording.done,
        "profiler_failed": recording.profiler_failed,
    }


def is_recorder(wrapper: Any) -> bool:
    return _recorders is not None and type(wrapper) is _recorders.Recorder


def chosen(wrapper: Any) -> Any:
    """The wrapper a patch put on now uses: a recorder's reference while
    :data:`compiled_recorders` is off."""
    if not compiled_recorders and is_recorder(wrapper):
        return wrapper.reference
    return wrapper
