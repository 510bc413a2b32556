"""Django's database layer: every statement any code sends through a Django connection.

Wrapped where Django hands a statement to the driver, so every backend and every query
the ORM, raw SQL or a third-party app sends is seen, and the target is the connection's
alias (``[dbshard01]`` for ``DATABASES["dbshard01"]``):

- ``CursorWrapper.execute``, ``executemany`` and ``callproc``; ``CursorDebugWrapper``
  (``DEBUG=True``, ``assertNumQueries``) calls them through ``super()``, so one statement
  is one event either way. Savepoints are statements, listed as they are.
- ``BaseDatabaseWrapper._commit`` and ``_rollback`` (when a connection is open): COMMIT
  and ROLLBACK events; ``BaseDatabaseWrapper.connect``: a CONNECT event, the statements
  Django runs to set the new connection up included.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from ioprofiler.event import COMMIT, CONNECT, DB, ROLLBACK
from ioprofiler.patching import Patches
from ioprofiler.recording import active, begin, done, failed, perf_counter_ns, profiler_failed
from ioprofiler.registry import importable
from ioprofiler.values import first_row, snapshot

_patches = Patches()
# True while a connection op runs: the statements it sends are part of it.
_inside_op: ContextVar[bool] = ContextVar("ioprofiler_django_op", default=False)
PARAMSTYLE = "format"  # every backend takes %s at the cursor wrapper; sqlite converts below


def available() -> bool:
    return importable("django.db.backends.utils")


def install() -> bool:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    _patches.wrap(CursorWrapper, "execute", _statement("execute"))
    _patches.wrap(CursorWrapper, "executemany", _statement("executemany"))
    _patches.wrap(CursorWrapper, "callproc", _statement("callproc"))
    _patches.wrap(BaseDatabaseWrapper, "connect", _connection_op(CONNECT))
    _patches.wrap(BaseDatabaseWrapper, "_commit", _connection_op(COMMIT))
    _patches.wrap(BaseDatabaseWrapper, "_rollback", _connection_op(ROLLBACK))
    return bool(_patches)


def uninstall() -> None:
    _patches.unwrap_all()


def _bind_execute(sql: Any, params: Any = None) -> tuple[Any, Any]:
    return sql, params


def _bind_callproc(procname: Any, params: Any = None, kparams: Any = None) -> tuple[Any, Any]:
    return f"CALL {procname}", None


def _begin_statement(traces: Any, op: str, cursor: Any, args: Any, kwargs: Any):
    try:
        if op == "callproc":
            statement, params = _bind_callproc(*args, **kwargs)
        else:
            statement, params = _bind_execute(*args, **kwargs)
        rows = None
        if params is not None:
            params, rows = first_row(params) if op == "executemany" else (snapshot(params), None)
        connection = cursor.db
        event = begin(traces, DB, op, connection.alias)
        event.statement = statement
        event.params = params
        event.rows = rows
        event.paramstyle = PARAMSTYLE
        event.dialect = connection.vendor
        event.start_ns = perf_counter_ns()
        return event
    except Exception as exc:
        profiler_failed(traces, exc)
        return None


def _statement(op: str):
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or _inside_op.get():
            return wrapped(*args, **kwargs)
        event = _begin_statement(traces, op, instance, args, kwargs)
        if event is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        event.end_ns = perf_counter_ns()
        done(event)
        return result

    return wrapper


def _connection_op(op: str):
    """connect(), _commit(), _rollback(): one round trip each, when it reaches the server."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or _inside_op.get():
            return wrapped(*args, **kwargs)
        if op != CONNECT and instance.connection is None:
            return wrapped(*args, **kwargs)  # nothing to commit: Django does nothing
        try:
            event = begin(traces, DB, op, instance.alias)
            event.dialect = instance.vendor
            event.start_ns = perf_counter_ns()
        except Exception as exc:
            profiler_failed(traces, exc)
            return wrapped(*args, **kwargs)
        token = _inside_op.set(True)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        finally:
            _inside_op.reset(token)
        event.end_ns = perf_counter_ns()
        done(event)
        return result

    return wrapper
