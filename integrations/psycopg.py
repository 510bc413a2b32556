"""psycopg 3, sync and asyncio: every statement code sends straight to a psycopg connection.

Named by the connection's database (``[shop]`` for ``psycopg.connect(dbname="shop")``) or
by its label (:func:`ioprofiler.label`). Wrapped on the classes, so every connection and
cursor is covered (``ClientCursor``, ``RawCursor``, ``conn.execute()``…), made before or
after ``install()``:

- ``Cursor.execute`` / ``AsyncCursor.execute`` (and the server-side cursors' ``execute``,
  which declares the cursor): one statement, its values in place (``%s``, ``%(name)s``,
  ``%b``, ``%t``). Before the first statement of a transaction (not in autocommit) psycopg
  sends ``BEGIN`` itself: that round trip is part of the statement's event.
- ``executemany``: psycopg sends every row in one pipeline (one round trip, each row a
  statement the server runs): one event, its first row and the row count
  (``-- executemany: 3 rows``).
- ``Connection.commit`` / ``rollback`` (and the async ones): COMMIT and ROLLBACK events,
  when a transaction is open (otherwise psycopg sends nothing, and there is no event).
- ``Connection.connect`` / ``AsyncConnection.connect``: a CONNECT event.
- What ``with conn.transaction():`` sends (sync or async), one event per command, each
  timed from when psycopg takes it to when it asks for the next
  (``BaseTransaction._get_enter_commands``, ``_get_commit_commands``,
  ``_get_rollback_commands``): BEGIN, COMMIT and ROLLBACK events, and the ``SAVEPOINT``,
  ``RELEASE`` and ``ROLLBACK TO`` of a nested block as the statements they are.

Not yet events of their own: ``COPY``, ``stream()``, and the ``FETCH``es of a
server-side cursor. Inside ``with conn.pipeline():`` a statement's event ends when it is
queued, not when its result arrives.

A statement SQLAlchemy or Django records (they use psycopg too) is theirs: while their
integration records it, these wrappers let it through (``recording.inside``).
"""

from __future__ import annotations

import sys
from typing import Any

from ioprofiler.integrations._dbapi import (
    Names,
    begin_op,
    call_awaited,
    connect_detail,
    finish,
    statement_wrapper,
    text_of,
    transaction_wrapper,
)

from ioprofiler.event import BEGIN, COMMIT, CONNECT, ROLLBACK
from ioprofiler.patching import Patches
from ioprofiler.recording import (
    active,
    add_below,
    done,
    inside,
    perf_counter_ns,
    profiler_failed,
    remove_below,
)
from ioprofiler.registry import importable

PARAMSTYLE = "psycopg"  # %s and %(name)s, and psycopg's %b and %t
DIALECT = "postgresql"
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction open
_patches = Patches()


def _database_name(connection: Any) -> str:
    """``shop`` for a connection to database ``shop``."""
    info = connection.info
    return info.dbname or info.host or "postgresql"


_names = Names(_database_name)


def available() -> bool:
    return importable("psycopg")


def install() -> bool:
    import psycopg
    from psycopg import (
        AsyncConnection,
        AsyncCursor,
        AsyncServerCursor,
        Connection,
        Cursor,
        ServerCursor,
    )

    unwrapped_connect = Connection.connect
    for cursor_class, asynchronous in (
        (Cursor, False),
        (ServerCursor, False),
        (AsyncCursor, True),
        (AsyncServerCursor, True),
    ):
        _patches.wrap(cursor_class, "execute", _execute[asynchronous])
        if cursor_class in (Cursor, AsyncCursor):
            _patches.wrap(cursor_class, "executemany", _executemany[asynchronous])
    _patches.wrap(Connection, "commit", _commit)
    _patches.wrap(Connection, "rollback", _rollback)
    _patches.wrap(Connection, "connect", _connect)
    # psycopg.connect is Connection.connect as bound when psycopg was imported: wrapped too.
    if psycopg.__dict__.get("connect") == unwrapped_connect:
        _patches.wrap(psycopg, "connect", _connect)
    _patches.wrap(AsyncConnection, "commit", _async_commit)
    _patches.wrap(AsyncConnection, "rollback", _async_rollback)
    _patches.wrap(AsyncConnection, "connect", _async_connect)
    from psycopg.transaction import BaseTransaction

    for name in _TRANSACTION_COMMANDS:
        _patches.wrap(BaseTransaction, name, _transaction_commands)
    add_below(__name__, "psycopg")
    return bool(_patches)


def uninstall() -> None:
    remove_below(__name__)
    _patches.unwrap_all()


def owns(connection: Any) -> bool:
    """Whether ``connection`` is a psycopg connection, sync or async (for ``ioprofiler.label``)."""
    module = sys.modules.get("psycopg")
    return module is not None and isinstance(
        connection, (module.Connection, module.AsyncConnection)
    )


def label(connection: Any, name: str) -> None:
    """Name the shard a psycopg ``Connection`` or ``AsyncConnection`` talks to."""
    if not owns(connection):
        raise TypeError(f"not a psycopg connection: {type(connection)!r}")
    _names.label(connection, name)


def _connection(cursor: Any) -> Any:
    return cursor._conn


def _statement_text(query: Any, cursor: Any) -> Any:
    """A ``psycopg.sql`` object (``Composed``, ``SQL``) as the text it stands for."""
    if hasattr(query, "as_string"):
        return query.as_string(cursor._conn)
    return text_of(query)


def _sends(connection: Any) -> bool:
    return connection.pgconn.transaction_status != _IDLE


_execute = {
    asynchronous: statement_wrapper(
        "execute",
        _names,
        _connection,
        PARAMSTYLE,
        DIALECT,
        "params",
        asynchronous,
        _statement_text,
    )
    for asynchronous in (False, True)
}
_executemany = {
    asynchronous: statement_wrapper(
        "executemany",
        _names,
        _connection,
        PARAMSTYLE,
        DIALECT,
        "params_seq",
        asynchronous,
        _statement_text,
    )
    for asynchronous in (False, True)
}
_commit = transaction_wrapper(COMMIT, _names, DIALECT, _sends)
_rollback = transaction_wrapper(ROLLBACK, _names, DIALECT, _sends)
_async_commit = transaction_wrapper(COMMIT, _names, DIALECT, _sends, asynchronous=True)
_async_rollback = transaction_wrapper(ROLLBACK, _names, DIALECT, _sends, asynchronous=True)


# -- with conn.transaction(): the commands psycopg sends itself --------------------------

_TRANSACTION_COMMANDS = ("_get_enter_commands", "_get_commit_commands", "_get_rollback_commands")
# A transaction's command -> its op; any other (SAVEPOINT, RELEASE, ROLLBACK TO) a statement
_COMMAND_OPS = {b"BEGIN": BEGIN, b"COMMIT": COMMIT, b"ROLLBACK": ROLLBACK}


def _transaction_commands(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """The commands a transaction block sends: psycopg sends each before asking for the
    next, so each is timed from one to the next."""
    commands = wrapped(*args, **kwargs)
    traces = active.get()
    if not traces or inside.get():
        return commands
    return _timed_commands(traces, instance._conn, commands)


def _timed_commands(traces: Any, connection: Any, commands: Any) -> Any:
    for command in commands:
        event = _begin_command(traces, connection, command)
        if event is None:
            yield command
            continue
        sent = False
        try:
            yield command
            sent = True
        finally:
            event.end_ns = perf_counter_ns()
            if not sent:  # psycopg stopped asking: the command failed (its error is raised)
                event.error = "Error"
            done(event)


def _begin_command(traces: Any, connection: Any, command: bytes) -> Any:
    """A BEGIN, COMMIT or ROLLBACK event, or a statement's (a savepoint's); None on failure."""
    try:
        op = _COMMAND_OPS.get(command.split(b" ", 1)[0], "execute")
        if op == "execute" or command.startswith(b"ROLLBACK TO"):
            event = begin_op(traces, "execute", _names.of(connection), DIALECT, 4)
            if event is not None:
                event.statement = command.decode("utf-8", "replace")
            return event
        return begin_op(traces, op, _names.of(connection), DIALECT, 4)
    except Exception as exc:
        profiler_failed(traces, exc)
        return None


# -- connect: a classmethod; the connection's own facts name it once it exists ------------


def _begin_connect(traces: Any, args: Any, kwargs: Any) -> Any:
    """A CONNECT event named from the arguments; the connection's facts replace them."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        conninfo = args[0] if args else kwargs.get("conninfo", "")
        given = {k: kwargs[k] for k in ("dbname", "user", "host", "port") if k in kwargs}
        params = conninfo_to_dict(conninfo, **given)
        database = params.get("dbname") or params.get("user")
        detail = connect_detail(
            params.get("user"), params.get("host"), params.get("port"), database
        )
    except Exception as exc:
        profiler_failed(traces, exc)
        database, detail = None, None
    event = begin_op(traces, CONNECT, str(database or "postgresql"), DIALECT, 4)
    if event is not None:
        event.detail = detail
    return event


def _connected(event: Any, connection: Any) -> None:
    """Name a CONNECT event after the connection made, and end it."""
    event.end_ns = perf_counter_ns()
    try:
        info = connection.info
        event._target = _names.of(connection)
        event.detail = connect_detail(info.user, info.host, info.port, info.dbname)
    except Exception as exc:
        profiler_failed(event._overflow or (), exc)
    done(event)


def _connect_wrapper(asynchronous: bool):
    """``Connection.connect`` / ``AsyncConnection.connect`` (classmethods)."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or inside.get():
            return wrapped(*args, **kwargs)
        event = _begin_connect(traces, args, kwargs)
        if event is None:
            return wrapped(*args, **kwargs)
        if asynchronous:
            return call_awaited(event, wrapped, args, kwargs, _connected)
        return finish(event, wrapped, args, kwargs, _connected)

    return wrapper


_connect = _connect_wrapper(asynchronous=False)
_async_connect = _connect_wrapper(asynchronous=True)
