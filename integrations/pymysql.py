"""PyMySQL: every statement code sends straight to a PyMySQL connection, without an ORM.

One event per statement the server receives, named by the connection's database
(``[shop]`` for ``pymysql.connect(database="shop")``) or by its label
(:func:`ioprofiler.label`). Wrapped on the classes, so every connection and cursor class
is covered (``DictCursor``, ``SSCursor``…), made before or after ``install()``:

- ``Cursor.execute``: one statement, its values in place (``pyformat``: ``%s``,
  ``%(name)s``).
- ``Cursor.executemany``: PyMySQL sends an ``INSERT``/``REPLACE … VALUES`` as one
  statement with every row in it: one event, its first row and the row count
  (``-- executemany: 3 rows``; past ``max_stmt_length``, 1 MB, PyMySQL splits it into
  several statements, still one event). Any other statement it sends once per row: an
  ``execute`` event each, with that row's values.
- ``Cursor.callproc``: ``SET @_p_0=…`` (when there are arguments) and ``CALL p(…)``, the
  two statements PyMySQL sends, an event each (``Cursor._query`` is wrapped for them,
  entered only while a ``callproc`` runs).
- ``Connection.begin``, ``commit``, ``rollback``: BEGIN, COMMIT and ROLLBACK events;
  ``Connection.autocommit(value)``, when it changes the mode: the
  ``SET AUTOCOMMIT = 0`` (or 1) statement it sends (Django's transactions make these),
  listed as the connection's set-up (op ``setup``), not as a statement;
  ``Connection.connect`` (also a reconnecting ``ping``): a CONNECT
  event, the set-up statements it sends (``init_command``, ``sql_mode``) part of it.

A statement SQLAlchemy or Django records (they use PyMySQL too) is theirs: while their
integration records it, these wrappers let it through (``recording.inside``).
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any

from ioprofiler.integrations._dbapi import (
    Names,
    begin_op,
    connect_detail,
    finish,
    finish_inside,
    statement_wrapper,
    transaction_wrapper,
)

from ioprofiler.event import BEGIN, COMMIT, CONNECT, ROLLBACK, SETUP
from ioprofiler.patching import Patches
from ioprofiler.recording import active, add_below, inside, profiler_failed, remove_below
from ioprofiler.registry import importable
from ioprofiler.values import snapshot

PARAMSTYLE = "pyformat"
DIALECT = "mysql"
_patches = Patches()
# The procedure and arguments of the callproc running in this context, for Cursor._query.
_callproc: ContextVar[Any] = ContextVar("ioprofiler_pymysql_callproc", default=None)


def _database_name(connection: Any) -> str:
    """``shop`` for a connection to database ``shop``; its host when it names none."""
    database = getattr(connection, "db", None)
    if isinstance(database, (bytes, bytearray)):
        database = bytes(database).decode(getattr(connection, "encoding", None) or "utf-8")
    if database:
        return str(database)
    return str(getattr(connection, "unix_socket", None) or getattr(connection, "host", "mysql"))


_names = Names(_database_name)


def available() -> bool:
    return importable("pymysql.cursors")


def install() -> bool:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor, SSCursor

    _patches.wrap(Cursor, "execute", _execute)
    _patches.wrap(Cursor, "executemany", _executemany)
    _patches.wrap(Cursor, "callproc", _run_callproc)
    _patches.wrap(Connection, "connect", _connect)
    _patches.wrap(Connection, "commit", _commit)
    _patches.wrap(Connection, "rollback", _rollback)
    _patches.wrap(Connection, "begin", _begin)
    _patches.wrap(Connection, "autocommit", _autocommit)
    # Entered only while a callproc is recorded: not on any other statement's path.
    for cursor_class in (Cursor, SSCursor):  # PyMySQL's two definitions of _query
        _patches.wrap(cursor_class, "_query", _callproc_query, enabled=_callproc.get)
    add_below(__name__, "pymysql")
    return bool(_patches)


def uninstall() -> None:
    remove_below(__name__)
    _patches.unwrap_all()


def owns(connection: Any) -> bool:
    """Whether ``connection`` is a PyMySQL connection (for :func:`ioprofiler.label`)."""
    module = sys.modules.get("pymysql.connections")
    return module is not None and isinstance(connection, module.Connection)


def label(connection: Any, name: str) -> None:
    """Name the shard a PyMySQL connection talks to, as the listing shows it."""
    if not owns(connection):
        raise TypeError(f"not a PyMySQL connection: {type(connection)!r}")
    _names.label(connection, name)


def _connection(cursor: Any) -> Any:
    return cursor.connection


_execute = statement_wrapper("execute", _names, _connection, PARAMSTYLE, DIALECT, "args")
# A batched INSERT: its own execute() calls (one per statement of at most 1 MB) are this event.
_batch = statement_wrapper(
    "executemany", _names, _connection, PARAMSTYLE, DIALECT, "args", mark_inside=True
)


def _executemany(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """A batched INSERT is one event; any other statement, one ``execute`` event per row."""
    traces = active.get()
    if not traces or inside.get():
        return wrapped(*args, **kwargs)
    try:
        from pymysql.cursors import RE_INSERT_VALUES

        query = args[0] if args else kwargs.get("query")
        rows = args[1] if len(args) > 1 else kwargs.get("args")
        batched = bool(rows) and isinstance(query, str) and RE_INSERT_VALUES.match(query)
    except Exception as exc:
        profiler_failed(traces, exc)
        return wrapped(*args, **kwargs)
    if not batched:  # nothing sent, or each row sent by execute(), recorded there
        return wrapped(*args, **kwargs)
    return _batch(wrapped, instance, args, kwargs)


def _run_callproc(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    traces = active.get()
    if not traces or inside.get():
        return wrapped(*args, **kwargs)
    try:
        procname = args[0] if args else kwargs.get("procname")
        arguments = args[1] if len(args) > 1 else kwargs.get("args", ())
        state = (procname, snapshot(tuple(arguments)) if arguments else ())
    except Exception as exc:
        profiler_failed(traces, exc)
        return wrapped(*args, **kwargs)
    token = _callproc.set(state)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _callproc.reset(token)


def _callproc_query(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """One of the statements a callproc sends: ``SET @_p_0=…`` or ``CALL p(…)``."""
    traces = active.get()
    state = _callproc.get()
    if not traces or state is None or inside.get():
        return wrapped(*args, **kwargs)
    try:
        procname, arguments = state
        sent = args[0] if args else kwargs.get("q")
        params = paramstyle = None
        if isinstance(sent, str) and sent.startswith("SET ") and arguments:
            # As sent, but with the values as parameters: redaction applies to them.
            assignments = ",".join(f"{_variable(procname, n)}=%s" for n in range(len(arguments)))
            statement, params, paramstyle = f"SET {assignments}", arguments, "format"
        else:
            statement = sent.decode() if isinstance(sent, bytes) else sent
        target = _names.of(instance.connection)
    except Exception as exc:
        profiler_failed(traces, exc)
        return wrapped(*args, **kwargs)
    event = begin_op(traces, "execute", target, DIALECT)
    if event is None:
        return wrapped(*args, **kwargs)
    event.statement = statement
    event.params = params
    event.paramstyle = paramstyle
    return finish(event, wrapped, args, kwargs)


def _variable(procname: str, n: int) -> str:
    """The server variable callproc puts argument ``n`` in, quoted as the installed
    PyMySQL quotes it (``@`_p_0``` since 1.1.1, ``@_p_0`` before)."""
    from pymysql import cursors

    if hasattr(cursors, "_backquote_escape"):
        return f"@`_{procname.replace('`', '``')}_{n}`"
    return f"@_{procname}_{n}"


def _connection_statement(text_of, op: str):
    """A connection method that sends one statement of its own, an event of ``op``;
    ``text_of(connection, args, kwargs)`` is its text, or None when the call sends nothing."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or inside.get():
            return wrapped(*args, **kwargs)
        try:
            statement = text_of(instance, args, kwargs)
            target = _names.of(instance) if statement is not None else None
        except Exception as exc:
            profiler_failed(traces, exc)
            return wrapped(*args, **kwargs)
        event = begin_op(traces, op, target, DIALECT) if statement is not None else None
        if event is None:
            return wrapped(*args, **kwargs)
        event.statement = statement
        return finish(event, wrapped, args, kwargs)

    return wrapper


def _autocommit_text(connection: Any, args: Any, kwargs: Any) -> str | None:
    value = bool(args[0] if args else kwargs.get("value"))
    if value == connection.get_autocommit():  # PyMySQL sends nothing
        return None
    return f"SET AUTOCOMMIT = {int(value)}"


_autocommit = _connection_statement(_autocommit_text, SETUP)


_begin = transaction_wrapper(BEGIN, _names, DIALECT)
_commit = transaction_wrapper(COMMIT, _names, DIALECT)
_rollback = transaction_wrapper(ROLLBACK, _names, DIALECT)


def _connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Connection.connect()``: a new connection, its set-up statements included."""
    traces = active.get()
    if not traces or inside.get():
        return wrapped(*args, **kwargs)
    event = None
    try:
        event = begin_op(traces, CONNECT, _database_name(instance), DIALECT)
        if event is not None:
            host = instance.unix_socket or instance.host
            port = None if instance.unix_socket else instance.port
            event.detail = connect_detail(instance.user, host, port, instance.db)
    except Exception as exc:
        profiler_failed(traces, exc)
    if event is None:
        return wrapped(*args, **kwargs)
    return finish_inside(event, wrapped, args, kwargs)
