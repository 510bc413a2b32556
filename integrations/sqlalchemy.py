"""SQLAlchemy: every statement a dialect sends to its DB-API cursor.

Wrapped where the statement meets the driver, on the dialect classes, so every
engine is covered (sync or async, created before or after ``install()``):

- ``DefaultDialect.do_execute``, ``do_executemany``, ``do_execute_no_params`` and
  every dialect subclass that overrides one of them;
- ``DefaultDialect.__init__``, only to patch the class of a dialect loaded after
  ``install()`` when its first engine is made, before its first statement.
  ``install()`` imports no dialect: which modules a process loads stays the
  application's choice;
- the round trips around statements, wherever a dialect class defines them:
  ``do_commit`` and ``do_rollback`` (the pool's reset on check-in ends there too),
  the two-phase steps, and ``connect`` (a new DB-API connection);
- ``QueuePool._do_get``, for checkouts that must wait because the pool is exhausted
  (also ``AsyncAdaptedQueuePool``, which inherits it);
- ``Engine.__init__``, only to learn each engine's shard name before its first
  statement, so a first CONNECT or POOL WAIT is named; and ``Engine.raw_connection``
  (every checkout), while a trace is open, for an engine created before ``install()``;
- ``DefaultDialect.do_ping`` and its overrides: ``pool_pre_ping``'s check, a PING event
  whatever the dialect sends for it (PyMySQL's ping, psycopg's ``;``);
- the pool's set-up of a new connection (``_ConnectionRecord.__connect``): what the
  dialect sends there (``SET NAMES``, its first connect's ``SELECT VERSION()``…) is listed
  as connection set-up (op ``setup``), not as the application's statements.

SAVEPOINT, RELEASE SAVEPOINT and ROLLBACK TO SAVEPOINT are statements sent through
``do_execute``, and are listed as the statements they are.

Not SQLAlchemy's event API: registering cursor-execute listeners costs every
statement 10-17 µs even when nothing records (see DESIGN.md).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import weakref
from types import FunctionType, MethodType
from typing import Any

from ioprofiler.integrations._dbapi import name_below

from ioprofiler import callsite, recorders
from ioprofiler.event import (
    BEGIN_TWOPHASE,
    COMMIT,
    COMMIT_TWOPHASE,
    CONNECT,
    DB,
    PING,
    POOL_WAIT,
    PREPARE_TWOPHASE,
    RECOVER_TWOPHASE,
    ROLLBACK,
    ROLLBACK_TWOPHASE,
    ConnectionOp,
    Statement,
)
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
    run_as_setup,
)
from ioprofiler.values import KEPT_TYPES, snapshot
from ioprofiler.values import first_row as _first_row

EXECUTE_METHODS = ("do_execute", "do_executemany", "do_execute_no_params")

_patches = Patches()
# Set while a statement or connection op is recorded: what it sends below (a dialect's
# override calling super(), the DB-API driver's own patched methods) is part of its event.
_recording_statement = inside
# Shard name per dialect instance: create_engine() makes one dialect per engine,
# and the dialect is what every execution method receives, with or without a context.
# Keyed by id(), removed by a finalizer when the dialect goes: a WeakKeyDictionary
# lookup makes a new weak reference on every call.
_names: dict[int, str] = {}


def available() -> bool:
    try:
        importlib.import_module("sqlalchemy.engine.default")
    except ImportError:
        return False
    return True


def install() -> bool:
    """Wrap the execution methods of every loaded dialect class. Idempotent.

    Dialect classes loaded later are wrapped by the ``__init__`` hook.
    """
    from sqlalchemy.engine.base import Engine
    from sqlalchemy.engine.default import DefaultDialect
    from sqlalchemy.pool import QueuePool
    from sqlalchemy.pool.base import _ConnectionFairy, _ConnectionRecord

    _patches.wrap(DefaultDialect, "__init__", _dialect_init, always=True)
    _patches.wrap(Engine, "__init__", _engine_init, always=True)
    _patches.wrap(Engine, "raw_connection", _ENGINE_CHECKOUT)
    _patches.wrap(QueuePool, "_do_get", _POOL_CHECKOUT)
    _patches.wrap(_ConnectionRecord, "_ConnectionRecord__connect", _new_connection_setup)
    _plain_round_trips["proxy"] = _ConnectionFairy
    _plain_round_trips["reset_code"] = _pool_reset_code()
    _plain_round_trips["called_from"] = _called_from
    for name, op in _PLAIN_ROUND_TRIPS:
        method = DefaultDialect.__dict__.get(name)
        if not _patches.is_wrapped(DefaultDialect, name):  # as SQLAlchemy has it, or as
            # another tool wrapped it (then no method is plain: its wrapper may record)
            _plain_round_trips[op] = method if type(method) is FunctionType else None
    for dialect_class in _subclasses(DefaultDialect):
        _patch_dialect_class(dialect_class)
    return bool(_patches)


def uninstall() -> None:
    _patches.unwrap_all()


def label(engine: Any, name: str) -> None:
    """Name the shard an engine (or ``AsyncEngine``) talks to, as the listing shows it."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a shard label must be a non-empty string, not {name!r}")
    sync_engine = getattr(engine, "sync_engine", engine)
    dialect = getattr(sync_engine, "dialect", None)
    if dialect is None:
        raise TypeError(
            f"ioprofiler.label() takes a SQLAlchemy Engine or AsyncEngine, not {type(engine)!r}"
        )
    _remember_name(dialect, name)
    if _patches:
        _patch_dialect_class(type(dialect))


def name_for_url(url: Any) -> str:
    """The shard name an engine gets without a label: the database's name.

    ``sqlite:///data/dbshard01.db`` -> ``dbshard01``;
    ``mysql+pymysql://root@db5/dbshard05`` -> ``dbshard05``.
    """
    backend = url.get_backend_name()
    database = url.database
    if backend == "sqlite":
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            return "sqlite:memory"
        if database.startswith("file:"):
            database = database[5:].split("?", 1)[0]
        return os.path.splitext(os.path.basename(database))[0] or database
    if database:
        return database
    return url.host or backend


def _subclasses(cls: type) -> list[type]:
    found, pending = [cls], [cls]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                pending.append(sub)
    return found


def _patch_dialect_class(dialect_class: type) -> None:
    """Wrap the execution and round-trip methods wherever the class or one of its bases
    defines them."""
    from sqlalchemy.engine.default import DefaultDialect

    for base in dialect_class.__mro__:
        wrappers = _WRAPPERS if base is DefaultDialect else _OVERRIDE_WRAPPERS
        for name in EXECUTE_METHODS:
            if name in base.__dict__ and not _patches.is_wrapped(base, name):
                _patches.wrap(base, name, wrappers[name])
        for name, wrapper in _ROUND_TRIP_WRAPPERS.items():
            if name in base.__dict__ and not _patches.is_wrapped(base, name):
                # a new connection is named for the driver's integration even with no trace
                # open (name_below); connects are rare, so that costs nothing per statement
                _patches.wrap(base, name, wrapper, always=name == "connect")


def _dialect_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        if _patches:
            _patch_dialect_class(type(instance))
    except Exception:
        pass
    return result


def _engine_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    _name_engine(instance)
    return result


def _engine_checkout(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Engine.raw_connection``, while a trace is open: an engine created before
    ``install()`` is named before the first round trip of the checkout (a CONNECT, a PING)."""
    if id(instance.dialect) not in _names:
        _name_engine(instance)
    return wrapped(*args, **kwargs)


def _name_engine(engine: Any) -> None:
    """Remember ``engine``'s shard name (its database's) unless it has one (a label)."""
    try:
        if id(engine.dialect) not in _names:
            _remember_name(engine.dialect, name_for_url(engine.url))
    except Exception:
        pass


def _target(dialect: Any, context: Any) -> str:
    name = _names.get(id(dialect))
    if name is not None:
        return name
    engine = getattr(context, "engine", None) if context is not None else None
    if engine is None:  # an engine not met yet (made before install(), its pool used directly)
        return dialect.name
    return _remember_name(dialect, name_for_url(engine.url))


def _name_from_connect_args(dialect: Any, cargs: Any, cparams: Any) -> None:
    """Name an engine not met yet from what its dialect connects with: the database its
    URL names (the same name :func:`name_for_url` gives), so a connection opened outside
    any trace is named for its engine, never for its dialect."""
    from sqlalchemy.engine import URL

    _, host, _, database = connect_address(cargs, cparams, dialect.name == "sqlite")
    url = URL.create(dialect.name, host=host, database=database)
    _remember_name(dialect, name_for_url(url))


def _remember_name(dialect: Any, name: str) -> str:
    key = id(dialect)
    if key not in _names:
        weakref.finalize(dialect, _names.pop, key, None)
    _names[key] = name
    return name


def _arguments(shape: str, args: Any, kwargs: Any) -> tuple[Any, Any, Any]:
    """(statement, parameters, context), however the caller passed them."""
    statement = args[1] if len(args) > 1 else kwargs.get("statement")
    if shape == "no_params":  # do_execute_no_params(cursor, statement, context=None)
        return statement, None, args[2] if len(args) > 2 else kwargs.get("context")
    parameters = args[2] if len(args) > 2 else kwargs.get("parameters")
    return statement, parameters, args[3] if len(args) > 3 else kwargs.get("context")


def _execution_wrapper(op: str, shape: str, override: bool):
    """A wrapper for one execution method; ``shape`` says how its arguments are laid out.

    ``override``: the method is a dialect's own, which may call the base class's method
    through super(); while it runs, the base's wrapper lets the call through (one statement,
    one event). DefaultDialect's methods call only the DB-API cursor, so their wrappers
    say so only when a driver integration installed below records that cursor's driver
    (``recording.cursor_reaches_below``: not for sqlite3's cursors, say).
    """
    positional = 3 if shape == "no_params" else 4  # how SQLAlchemy itself calls them
    many = shape == "many"

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or _recording_statement.get():
            return wrapped(*args, **kwargs)
        try:
            if len(args) == positional and not kwargs:
                if positional == 4:
                    _, statement, parameters, context = args
                else:
                    _, statement, context = args
                    parameters = None
            else:
                statement, parameters, context = _arguments(shape, args, kwargs)
            name = _names.get(id(instance))
            if name is None:
                name = _target(instance, context)
            rows = None
            if parameters is None:
                params = None
            elif many:
                params, rows = _first_row(parameters)
            else:
                params = snapshot(parameters)
            mark = override
            if below and not override:  # a driver integration is installed: this cursor's?
                cursor = args[0] if args else kwargs.get("cursor")
                mark = cursor_reaches_below[cursor.__class__]
            event = begin(traces, DB, op, name, 2)
            event.statement = statement
            event.params = params
            event.rows = rows
            event.paramstyle = instance.paramstyle
            event.dialect = instance.name
        except Exception as exc:
            profiler_failed(traces, exc)
            return wrapped(*args, **kwargs)
        token = _recording_statement.set(True) if mark else None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        finally:
            if token is not None:
                _recording_statement.reset(token)
        event.end_ns = perf_counter_ns()
        if event._overflow is not None:  # done(event), without the call when it does nothing
            done(event)
        return result

    return wrapper


_SHAPES = {
    "do_execute": ("execute", "one"),
    "do_executemany": ("executemany", "many"),
    "do_execute_no_params": ("execute", "no_params"),
}


def _compiled(name: str, override: bool) -> Any:
    """The wrapper for an execution method: ``do_execute``'s compiled
    (ioprofiler/_recorders.c), with this module's as its reference."""
    reference = _execution_wrapper(*_SHAPES[name], override=override)
    if name != "do_execute":
        return reference
    return recorders.statement_execute(
        reference,
        kind=DB,
        op="execute",
        event_class=Statement,
        inside=inside,
        names=_names,
        snapshot=snapshot,
        kept=KEPT_TYPES,
        below=below,
        reaches_below=cursor_reaches_below,
        override=override,
    )


_WRAPPERS = {name: _compiled(name, override=False) for name in _SHAPES}
_OVERRIDE_WRAPPERS = {name: _compiled(name, override=True) for name in _SHAPES}


# -- round trips around statements: transaction ends, connects, pool waits ------------


def _begin_op(traces: Any, op: str, dialect: Any, depth: int = 3):
    """Start the event of a connection op on ``dialect``'s shard; None on failure.

    ``depth``: as for ``begin``; 3 when the wrapper calls this helper.
    """
    try:
        event = begin(traces, DB, op, _target(dialect, None), depth)
        event.dialect = dialect.name
        return event
    except Exception as exc:
        profiler_failed(traces, exc)
        return None


def _run_recorded(event: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """Call ``wrapped`` as ``event``. Statements it sends (a dialect's override calling
    ``super()``, a dialect committing with SQL) are part of it, not events of their own."""
    token = _recording_statement.set(True)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        failed(event, exc)
        raise
    finally:
        _recording_statement.reset(token)
    event.end_ns = perf_counter_ns()
    done(event)
    return result


def _round_trip_wrapper(op: str, pool_reset: bool = False):
    """``do_commit`` / ``do_rollback`` (``pool_reset``: says when the pool's reset on
    check-in made it), ``do_ping``: one COMMIT, ROLLBACK or PING round trip, whatever
    the dialect sends for it.

    Every checkout of a recorded request ends in one (the pool's reset, or the
    connection's own rollback): ``_begin_op`` and ``_run_recorded`` inline, the shard's
    name read as the statements read it."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or _recording_statement.get():
            return wrapped(*args, **kwargs)
        try:
            name = _names.get(id(instance))
            if name is None:
                name = _target(instance, None)
            mark = _round_trip_mark(op, wrapped, args)
            event = begin(traces, DB, op, name, 2)
            event.dialect = instance.name
            if pool_reset:
                event.detail = _called_by_pool_reset()
        except Exception as exc:
            profiler_failed(traces, exc)
            return wrapped(*args, **kwargs)
        token = _recording_statement.set(True) if mark else None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        finally:
            if token is not None:
                _recording_statement.reset(token)
        event.end_ns = perf_counter_ns()
        if event._overflow is not None:  # done(event), without the call when it does nothing
            done(event)
        return result

    return wrapper


# DefaultDialect's own do_commit, do_rollback and do_ping, by op, as they were before install()
# wrapped them: each sends nothing but the DB-API connection's own call (or a cursor of it);
# and under "proxy" the pool's _ConnectionFairy, which passes those on to the connection it
# holds (``dbapi_connection``). "reset_code" and "called_from": what _called_by_pool_reset
# reads, for the compiled recorder to ask the frame reader itself.
_PLAIN_ROUND_TRIPS = (("do_commit", COMMIT), ("do_rollback", ROLLBACK), ("do_ping", PING))
_plain_round_trips: dict[str, Any] = {}


def _round_trip_mark(op: str, wrapped: Any, args: Any) -> bool:
    """Whether a round trip needs the ``inside`` mark while it runs: unless the method is
    DefaultDialect's own and no driver integration installed below records the DB-API
    connection's driver (sqlite3's, say), nothing it sends could be recorded twice.
    Setting and resetting the mark cost every checkout about 2,000 instructions."""
    plain = _plain_round_trips.get(op)
    if plain is None or type(wrapped) is not MethodType or wrapped.__func__ is not plain:
        return True  # a dialect's override: it may call the base's through super()
    if not below:
        return False
    if not args:
        return True
    connection = args[0]
    if type(connection) is _plain_round_trips.get("proxy"):
        connection = connection.dbapi_connection
    return cursor_reaches_below[connection.__class__]


def _new_connection_setup(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """The pool opening a connection: its CONNECT, then what the dialect's connect
    listeners send to set it up (``SET NAMES``, the first connect's version queries),
    which are connection set-up, not the application's statements."""
    return run_as_setup(active.get(), wrapped, *args, **kwargs)


def _called_by_pool_reset(depth: int = 2) -> bool:
    """Whether the pool's reset-on-return called the method being recorded: its frame is
    the caller's or one of the three above it (wrapt's pure-Python fallback adds frames in
    between). ``depth``: frames from here to the library frame that called the method (2
    from the Python wrapper, 1 from the compiled one). Read by the compiled frame reader when
    it is built (no frame objects made)."""
    try:
        code = _reset_code or _pool_reset_code()
        if _called_from is not None:
            return _called_from(code, depth, 4)
        frame = sys._getframe(depth)
        for _ in range(4):
            if frame is None:
                return False
            if frame.f_code is code:
                return True
            frame = frame.f_back
    except Exception:
        pass
    return False


_reset_code: Any = None


def _pool_reset_code() -> Any:
    global _reset_code
    from sqlalchemy.pool.base import _ConnectionFairy

    _reset_code = _ConnectionFairy._reset.__code__
    return _reset_code


# called_from(code, depth, count): ioprofiler._speedups' frame reader, where it is in use
_called_from = getattr(callsite._speedups, "called_from", None) if callsite.accelerated else None


def _two_phase_wrapper(op: str):
    """A two-phase step. Dialects that send it as statements (MySQL's ``XA PREPARE``)
    have those listed already; only a step made below SQL (a DB-API ``tpc_*`` call)
    becomes an event of its own."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or _recording_statement.get():
            return wrapped(*args, **kwargs)
        trace = traces[-1]
        before = len(trace._events) + trace.dropped
        start_ns = perf_counter_ns()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            if len(trace._events) + trace.dropped == before:
                _record_step(traces, op, instance, start_ns, exc)
            raise
        if len(trace._events) + trace.dropped == before:
            _record_step(traces, op, instance, start_ns, None)
        return result

    return wrapper


def _record_step(traces: Any, op: str, dialect: Any, start_ns: int, exc: Any) -> None:
    event = _begin_op(traces, op, dialect, depth=4)
    if event is None:
        return
    event.start_ns = start_ns
    if exc is None:
        event.end_ns = perf_counter_ns()
        done(event)
    else:
        failed(event, exc)


def _connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``dialect.connect(*cargs, **cparams)``: a new DB-API connection. With a driver
    integration installed, the connection gets the engine's shard name (``name_below``)."""
    traces = active.get()
    if id(instance) not in _names:
        try:
            _name_from_connect_args(instance, args, kwargs)
        except Exception as exc:
            profiler_failed(traces, exc)
    if not traces or _recording_statement.get():
        connection = wrapped(*args, **kwargs)
    else:
        event = _begin_op(traces, CONNECT, instance)
        if event is None:
            connection = wrapped(*args, **kwargs)
        else:
            try:
                event.detail = connect_address(args, kwargs, instance.name == "sqlite")
                event.pool_held = connections_kept(_connecting_pool())
            except Exception as exc:
                profiler_failed(traces, exc)
            connection = _run_recorded(event, wrapped, args, kwargs)
    if below:
        try:
            name_below(connection, _target(instance, None))
        except Exception as exc:
            profiler_failed(traces, exc)
    return connection


def _connecting_pool() -> Any:
    """The pool whose connection record is calling ``dialect.connect`` (a few frames up:
    the engine's creator, wrapt's pure-Python fallback); None when no pool is."""
    frame = sys._getframe(2)
    for _ in range(6):
        if frame is None:
            return None
        if frame.f_code is _record_connect_code():
            return frame.f_locals.get("pool")
        frame = frame.f_back
    return None


@functools.lru_cache(maxsize=1)
def _record_connect_code() -> Any:
    from sqlalchemy.pool.base import _ConnectionRecord

    return _ConnectionRecord._ConnectionRecord__connect.__code__  # type: ignore[attr-defined]


def connections_kept(pool: Any) -> int | None:
    """How many connections ``pool`` kept before the one it is opening; None for a pool
    that keeps none (NullPool) or no pool."""
    from sqlalchemy import pool as pools

    if isinstance(pool, pools.QueuePool):  # its overflow counts the one being opened
        return pool.checkedin() + pool.checkedout() - 1
    if isinstance(pool, pools.SingletonThreadPool):
        return len(pool._all_conns)
    if isinstance(pool, pools.StaticPool | pools.AssertionPool):
        return 0
    return None


def connect_address(
    cargs: Any, cparams: Any, file_first: bool = False
) -> tuple[Any, Any, Any, Any]:
    """(user, host, port, database) from a driver's connect arguments; never the password.

    The drivers name them differently: ``user``/``username``, ``database``/``db``/
    ``dbname``. ``file_first``: the first positional argument is the database file
    (SQLite, aiosqlite); other drivers' positional arguments are never read, since one
    may be a connection string with a password in it (pyodbc's ``PWD=``).
    """

    def first(*names: str) -> Any:
        for name in names:
            value = cparams.get(name)
            if value is not None:
                return value
        return None

    database = first("database", "db", "dbname")
    if database is None and file_first and cargs and isinstance(cargs[0], str):
        database = cargs[0]
    host = first("host", "unix_socket")
    return first("user", "username"), host, first("port"), database


def _pool_checkout(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``QueuePool._do_get``: an event only when the checkout has to wait, that is when
    size and overflow are used up and no connection is idle in the pool."""
    traces = active.get()
    if not traces or not _must_wait(traces, instance):
        return wrapped(*args, **kwargs)
    event = _begin_op(traces, POOL_WAIT, instance._dialect)
    if event is None:
        return wrapped(*args, **kwargs)
    try:
        event.detail = pool_state(instance)
    except Exception as exc:
        profiler_failed(traces, exc)
    return _run_recorded(event, wrapped, args, kwargs)


def _must_wait(traces: Any, pool: Any) -> bool:
    try:
        limit = pool._max_overflow
        return limit != -1 and pool._overflow >= limit and pool._pool.empty()
    except Exception as exc:
        profiler_failed(traces, exc)
        return False


def pool_state(pool: Any) -> tuple[str, int, int, int, int, float]:
    """(pool class, size, connections in use, overflow in use, max overflow, timeout s)."""
    size = pool.size()
    return (
        type(pool).__name__,
        size,
        pool.checkedout(),
        max(0, pool._overflow),
        pool._max_overflow,
        pool._timeout,
    )


def _compiled_round_trip(op: str, pool_reset: bool = False) -> Any:
    """The wrapper for a COMMIT, ROLLBACK or PING: the compiled one
    (ioprofiler/_recorders.c), with this module's as its reference."""
    return recorders.round_trip(
        _round_trip_wrapper(op, pool_reset=pool_reset),
        kind=DB,
        op=op,
        event_class=ConnectionOp,
        inside=inside,
        names=_names,
        pool_reset=_called_by_pool_reset if pool_reset else None,
        plain=_plain_round_trips,
        below=below,
        reaches_below=cursor_reaches_below,
    )


def _compiled_check(maker: Any, reference: Any, **collaborators: Any) -> Any:
    return maker(reference, kind=DB, op=POOL_WAIT, event_class=ConnectionOp, **collaborators)


# Every checkout of a recorded request passes these two: compiled, they call through at once
# when the engine is named and the pool cannot have to wait (the references decide otherwise).
_ENGINE_CHECKOUT = _compiled_check(recorders.engine_checkout, _engine_checkout, names=_names)
_POOL_CHECKOUT = _compiled_check(recorders.pool_checkout, _pool_checkout)

_ROUND_TRIP_WRAPPERS = {
    "do_commit": _compiled_round_trip(COMMIT, pool_reset=True),
    "do_rollback": _compiled_round_trip(ROLLBACK, pool_reset=True),
    "do_ping": _compiled_round_trip(PING),
    "do_begin_twophase": _two_phase_wrapper(BEGIN_TWOPHASE),
    "do_prepare_twophase": _two_phase_wrapper(PREPARE_TWOPHASE),
    "do_commit_twophase": _two_phase_wrapper(COMMIT_TWOPHASE),
    "do_rollback_twophase": _two_phase_wrapper(ROLLBACK_TWOPHASE),
    "do_recover_twophase": _two_phase_wrapper(RECOVER_TWOPHASE),
    "connect": _connect,
}
