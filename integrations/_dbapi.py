"""What the DB-API driver integrations (PyMySQL, psycopg) share.

- :class:`Names`: each connection's shard name: its label, or its database's name.
- :func:`statement_wrapper`: ``cursor.execute`` / ``executemany``, sync or async, one event.
- :func:`transaction_wrapper`: ``connection.commit`` / ``rollback``, a COMMIT or ROLLBACK event.
- :func:`name_below`: a connection an ORM made gets the ORM's shard name.

Every wrapper lets a call through unrecorded while ``recording.inside`` is set: an ORM
integration (SQLAlchemy, Django) recording the statement this call sends, or a connect
recording the set-up statements it runs. A driver integration adds its name to
``recording.below`` while installed, so the integrations above mark their calls.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Callable
from typing import Any

from ioprofiler.event import DB
from ioprofiler.recording import (
    active,
    begin,
    below,
    done,
    failed,
    inside,
    perf_counter_ns,
    profiler_failed,
)
from ioprofiler.values import first_row, snapshot

log = logging.getLogger("ioprofiler")


class Names:
    """The shard name of each connection, remembered per connection object.

    ``default(connection)`` names a connection that has no label (its database's name).
    Keyed by ``id()``, each entry removed by a finalizer when its connection goes.
    """

    def __init__(self, default: Callable[[Any], str]) -> None:
        self._names: dict[int, str] = {}
        self._default = default

    def label(self, connection: Any, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a shard label must be a non-empty string, not {name!r}")
        self._remember(connection, name)

    def of(self, connection: Any) -> str:
        name = self._names.get(id(connection))
        if name is None:
            name = self._default(connection)
            self._remember(connection, name)
        return name

    def _remember(self, connection: Any, name: str) -> None:
        key = id(connection)
        if key not in self._names:
            try:
                weakref.finalize(connection, self._names.pop, key, None)
            except TypeError:  # no weak references to it: named afresh on every call
                return
        self._names[key] = name


def name_below(connection: Any, name: str) -> None:
    """Name a DB-API connection that an ORM integration made (SQLAlchemy's pool, Django's
    connection) after the ORM's shard, so that what the ORM sends straight through it (a
    dialect's set-up statements, a pool's ping) is listed by the driver's integration under
    the same target as the ORM's own statements. Does nothing without a driver integration
    installed that owns the connection; never raises."""
    # SQLAlchemy's asyncio dialects hand out an adapter around the driver's connection
    driver_connection = getattr(connection, "driver_connection", None)
    for module_name in tuple(below):
        module = sys.modules.get(module_name)
        try:
            for candidate in (connection, driver_connection):
                if module is not None and candidate is not None and module.owns(candidate):
                    module.label(candidate, name)
                    return
        except Exception:
            log.debug("ioprofiler could not name a driver connection %r", name, exc_info=True)


def text_of(query: Any) -> Any:
    """A statement as text: bytes decoded; anything else (a driver's SQL object) as is."""
    if type(query) is bytes:
        return query.decode("utf-8", "replace")
    return query


def statement_wrapper(
    op: str,
    names: Names,
    connection_of: Callable[[Any], Any],
    paramstyle: str,
    dialect: str,
    params_keyword: str,
    asynchronous: bool = False,
    statement_of: Callable[[Any, Any], Any] = lambda query, cursor: text_of(query),
    mark_inside: bool = False,
):
    """A wrapper for ``cursor.execute(query, params)`` (``op="execute"``) or
    ``cursor.executemany(query, rows)`` (``op="executemany"``: its first row and row count).
    ``mark_inside``: the patched calls the method makes below (PyMySQL's executemany calls
    its own execute) are part of its event.

    ``connection_of(cursor)``: the cursor's connection, which names the target.
    ``params_keyword``: the driver's name for the second argument, when passed by keyword.
    ``asynchronous``: the method returns an awaitable; the event ends when it is done.
    """

    many = op == "executemany"
    names_get = names._names.get

    # One function, no helper calls on the way: this runs for every recorded statement.
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or inside.get():
            return wrapped(*args, **kwargs)
        try:
            if len(args) == 2 and not kwargs:
                query, params = args
            elif args:
                query = args[0]
                params = args[1] if len(args) > 1 else kwargs.get(params_keyword)
            else:
                query = kwargs.get("query")
                params = kwargs.get(params_keyword)
            rows = None
            if params is not None:
                if many:
                    params, rows = first_row(params)
                else:
                    params = snapshot(params)
            connection = connection_of(instance)
            name = names_get(id(connection))
            if name is None:
                name = names.of(connection)
            event = begin(traces, DB, op, name, 2)
            event.statement = query if type(query) is str else statement_of(query, instance)
            event.params = params
            event.rows = rows
            event.paramstyle = paramstyle
            event.dialect = dialect
        except Exception as exc:
            profiler_failed(traces, exc)
            return wrapped(*args, **kwargs)
        if asynchronous:
            return call_awaited(event, wrapped, args, kwargs)
        token = inside.set(True) if mark_inside else None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        finally:
            if token is not None:
                inside.reset(token)
        event.end_ns = perf_counter_ns()
        done(event)
        return result

    return wrapper


def finish(
    event: Any, wrapped: Any, args: Any, kwargs: Any, finished: Callable | None = None
) -> Any:
    """Run the call ``event`` records; its result or exception reaches the caller unchanged.

    ``finished(event, result)``: ends the event instead, when the result tells more."""
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    _end(event, result, finished)
    return result


def _end(event: Any, result: Any, finished: Callable | None) -> None:
    if finished is not None:
        finished(event, result)
    else:
        event.end_ns = perf_counter_ns()
        done(event)


def finish_inside(event: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """:func:`finish`, the patched calls it makes below being part of ``event``."""
    token = inside.set(True)
    try:
        return finish(event, wrapped, args, kwargs)
    finally:
        inside.reset(token)


def call_awaited(
    event: Any, wrapped: Any, args: Any, kwargs: Any, finished: Callable | None = None
) -> Any:
    """Call an async method as ``event``: the awaitable it returns ends the event when done."""
    try:
        pending = wrapped(*args, **kwargs)
    except BaseException as exc:  # refused before it could start (its arguments)
        failed(event, exc)
        raise
    return _awaited(event, pending, finished)


async def _awaited(event: Any, pending: Any, finished: Callable | None) -> Any:
    try:
        result = await pending
    except BaseException as exc:
        failed(event, exc)
        raise
    _end(event, result, finished)
    return result


def begin_op(traces: Any, op: str, target: str, dialect: str, depth: int = 3) -> Any:
    """The event of a connection op (connect, commit, rollback); None on failure.

    ``depth``: as for ``recording.begin``, counted from here (3: the wrapper calls this)."""
    try:
        event = begin(traces, DB, op, target, depth)
        event.dialect = dialect
        event.start_ns = perf_counter_ns()
        return event
    except Exception as exc:
        profiler_failed(traces, exc)
        return None


def transaction_wrapper(
    op: str,
    names: Names,
    dialect: str,
    sends: Callable[[Any], bool] | None = None,
    asynchronous: bool = False,
):
    """``connection.begin()`` / ``commit()`` / ``rollback()``: one BEGIN, COMMIT or ROLLBACK
    round trip.

    ``sends(connection)``: False when the driver will send nothing (no transaction open),
    and so there is no event.
    """

    def start(traces: Any, connection: Any) -> Any:
        try:
            if sends is not None and not sends(connection):
                return None
            target = names.of(connection)
        except Exception as exc:
            profiler_failed(traces, exc)
            return None
        return begin_op(traces, op, target, dialect, 4)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or inside.get():
            return wrapped(*args, **kwargs)
        event = start(traces, instance)
        if event is None:
            return wrapped(*args, **kwargs)
        if asynchronous:
            return call_awaited(event, wrapped, args, kwargs)
        return finish(event, wrapped, args, kwargs)

    return wrapper


def connect_detail(user: Any, host: Any, port: Any, database: Any) -> tuple[Any, Any, Any, Any]:
    """A CONNECT event's detail, as the listing shows it: ``user@host:port/database``;
    bytes decoded. Never a password."""

    def text(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8", "replace")
        return value

    return text(user), text(host), port, text(database)
