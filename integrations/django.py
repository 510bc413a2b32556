"""Django's database layer: every statement any code sends through a Django connection.

Wrapped where Django hands a statement to the driver, so every backend and every query
the ORM, raw SQL or a third-party app sends is seen, and the target is the connection's
alias (``[dbshard01]`` for ``DATABASES["dbshard01"]``):

- ``CursorWrapper.execute``, ``executemany`` and ``callproc``; ``CursorDebugWrapper``
  (``DEBUG=True``, ``assertNumQueries``) calls them through ``super()``, so one statement
  is one event either way. Savepoints are statements, listed as they are.
- ``django.db.backends.base.base.debug_transaction``, the block in which Django's
  connection sends BEGIN (turning autocommit off, on backends other than SQLite, which
  sends ``BEGIN`` as a statement), COMMIT and ROLLBACK through the driver: BEGIN, COMMIT and
  ROLLBACK events, timed as Django times them for ``connection.queries``. Oracle's
  backend imports it under its own name: its transactions are not seen.
- ``BaseDatabaseWrapper.connect``: a CONNECT event, the statements Django runs to set the
  new connection up included. The new DB-API connection takes the alias's name for a
  driver integration below, traced or not.

So the queries Django counts (``assertNumQueries``, ``CaptureQueriesContext``) are these
events less ``callproc`` (which Django does not log): ``ioprofiler.django.query_count``.
Turning autocommit back on after a transaction (a ``SET autocommit=1`` round trip on
MySQL, not in Django's log either) is not an event here (with the PyMySQL integration
installed it is that integration's event: connection set-up on the alias, op ``setup``).
"""

from __future__ import annotations

from typing import Any

from ioprofiler.integrations._dbapi import name_below

from ioprofiler.event import BEGIN, COMMIT, CONNECT, DB, ROLLBACK
from ioprofiler.patching import Patches
from ioprofiler.recording import (
    active,
    begin,
    below,
    cursor_reaches_below,
    done,
    failed,
    inside,
    perf_counter_ns,
    profiler_failed,
)
from ioprofiler.registry import importable
from ioprofiler.values import first_row, snapshot

_patches = Patches()
# True while a connection op runs: the statements it sends are part of it; and while a
# statement runs with a driver integration installed (the driver's call is this statement).
_inside_op = inside
PARAMSTYLE = "format"  # every backend takes %s at the cursor wrapper; sqlite converts below


def available() -> bool:
    return importable("django.db.backends.utils")


# What Django's debug_transaction() calls each, as it logs it -> our op
_TRANSACTION_OPS = {"BEGIN": BEGIN, "COMMIT": COMMIT, "ROLLBACK": ROLLBACK}


def install() -> bool:
    from django.db.backends.base import base
    from django.db.backends.utils import CursorWrapper

    _patches.wrap(CursorWrapper, "execute", _statement("execute"))
    _patches.wrap(CursorWrapper, "executemany", _statement("executemany"))
    _patches.wrap(CursorWrapper, "callproc", _statement("callproc"))
    _patches.wrap(base.BaseDatabaseWrapper, "connect", _connection_op(CONNECT), always=True)
    _patches.wrap(base, "debug_transaction", _debug_transaction)
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
        # a driver integration is installed: does it record the driver under this wrapper?
        token = None
        if below and cursor_reaches_below[getattr(instance, "cursor", None).__class__]:
            token = _inside_op.set(True)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        finally:
            if token is not None:
                _inside_op.reset(token)
        event.end_ns = perf_counter_ns()
        done(event)
        return result

    return wrapper


def _address(settings: Any) -> tuple[Any, Any, Any, Any] | None:
    """``(user, host, port, database)`` of a connection's settings: never its password."""
    try:
        port = settings.get("PORT")
        return (
            settings.get("USER") or None,
            settings.get("HOST") or None,
            int(port) if port else None,
            str(settings.get("NAME")) if settings.get("NAME") else None,
        )
    except Exception:
        return None


def _connection_op(op: str):
    """connect(): the new connection, its setup statements included.

    Its DB-API connection takes the alias's name for a driver integration (even with no
    trace open: connects are rare), so what the driver sends on its own (PyMySQL's
    ``SET AUTOCOMMIT = 1`` after a transaction, connection set-up) is on the alias too."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or _inside_op.get():
            result = wrapped(*args, **kwargs)
            _name_below(instance)
            return result
        try:
            event = begin(traces, DB, op, instance.alias)
            event.dialect = instance.vendor
            event.detail = _address(instance.settings_dict) if op == CONNECT else None
            if instance.settings_dict.get("CONN_MAX_AGE") != 0:  # kept for later requests
                event.pool_held = 0
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
        _name_below(instance)
        return result

    return wrapper


def _name_below(connection: Any) -> None:
    """The new DB-API connection of a Django connection takes its alias's name below."""
    if below and connection.connection is not None:
        name_below(connection.connection, connection.alias)


def _address(settings: Any) -> tuple[Any, Any, Any, Any] | None:
    """``(user, host, port, database)`` of a connection's settings: never its password."""
    try:
        port = settings.get("PORT")
        return (
            settings.get("USER") or None,
            settings.get("HOST") or None,
            int(port) if port else None,
            str(settings.get("NAME")) if settings.get("NAME") else None,
        )
    except Exception:
        return None


def _bind_transaction(connection: Any, sql: Any) -> tuple[Any, Any]:
    return connection, sql


def _debug_transaction(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``debug_transaction(connection, "COMMIT")``: a context manager around the driver's
    call; ours times the same block and hands the outcome on unchanged."""
    traces = active.get()
    context = wrapped(*args, **kwargs)
    if not traces or _inside_op.get():
        return context
    try:
        connection, sql = _bind_transaction(*args, **kwargs)
        op = _TRANSACTION_OPS[sql]
    except Exception as exc:
        profiler_failed(traces, exc)
        return context
    return _TimedTransaction(context, traces, op, connection)


class _TimedTransaction:
    """Django's ``debug_transaction`` block, as one event."""

    __slots__ = ("_context", "_traces", "_op", "_connection", "_event", "_token")

    def __init__(self, context: Any, traces: Any, op: str, connection: Any) -> None:
        self._context = context
        self._traces = traces
        self._op = op
        self._connection = connection
        self._event: Any = None
        self._token: Any = None

    def __enter__(self) -> Any:
        entered = self._context.__enter__()
        try:
            event = begin(self._traces, DB, self._op, self._connection.alias, depth=2)
            event.dialect = self._connection.vendor
            self._token = _inside_op.set(True)
            self._event = event
            event.start_ns = perf_counter_ns()
        except Exception as exc:
            profiler_failed(self._traces, exc)
        return entered

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        event = self._event
        if event is not None:
            _inside_op.reset(self._token)
            if exc is not None:
                failed(event, exc)
            else:
                event.end_ns = perf_counter_ns()
                done(event)
        return self._context.__exit__(exc_type, exc, tb)
