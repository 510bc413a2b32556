"""SQLAlchemy: every statement a dialect sends to its DB-API cursor.

Wrapped where the statement meets the driver, on the dialect classes, so every
engine is covered (sync or async, created before or after ``install()``):

- ``DefaultDialect.do_execute``, ``do_executemany``, ``do_execute_no_params`` and
  every dialect subclass that overrides one of them;
- ``DefaultDialect.__init__``, only to patch the class of a dialect loaded after
  ``install()`` when its first engine is made, before its first statement.
  ``install()`` imports no dialect: which modules a process loads stays the
  application's choice.

Not SQLAlchemy's event API: registering cursor-execute listeners costs every
statement 10-17 µs even when nothing records (see DESIGN.md).
"""

from __future__ import annotations

import importlib
import os
import weakref
from contextvars import ContextVar
from typing import Any

from ioprofiler.event import DB
from ioprofiler.patching import Patches
from ioprofiler.recording import active, begin, done, failed, perf_counter_ns, profiler_failed
from ioprofiler.values import snapshot

EXECUTE_METHODS = ("do_execute", "do_executemany", "do_execute_no_params")

_patches = Patches()
_recording_statement: ContextVar[bool] = ContextVar(
    "ioprofiler_sqlalchemy_statement", default=False
)
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
    from sqlalchemy.engine.default import DefaultDialect

    _patches.wrap(DefaultDialect, "__init__", _dialect_init, always=True)
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
    """Wrap the execution methods wherever the class or one of its bases defines them."""
    for base in dialect_class.__mro__:
        for name in EXECUTE_METHODS:
            if name in base.__dict__ and not _patches.is_wrapped(base, name):
                _patches.wrap(base, name, _WRAPPERS[name])


def _dialect_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        if _patches:
            _patch_dialect_class(type(instance))
    except Exception:
        pass
    return result


def _target(dialect: Any, context: Any) -> str:
    name = _names.get(id(dialect))
    if name is not None:
        return name
    engine = getattr(context, "engine", None) if context is not None else None
    if engine is None:
        return dialect.name
    return _remember_name(dialect, name_for_url(engine.url))


def _remember_name(dialect: Any, name: str) -> str:
    key = id(dialect)
    if key not in _names:
        weakref.finalize(dialect, _names.pop, key, None)
    _names[key] = name
    return name


def _begin_statement(traces: Any, op: str, dialect: Any, args: Any, kwargs: Any, shape: str):
    """Start the event for (cursor, statement, parameters, context) as SQLAlchemy passes them."""
    try:
        if shape != "no_params" and len(args) == 4:  # how SQLAlchemy itself calls them
            _, statement, parameters, context = args
        elif shape == "no_params":  # do_execute_no_params(cursor, statement, context=None)
            statement = args[1] if len(args) > 1 else kwargs.get("statement")
            parameters = None
            context = args[2] if len(args) > 2 else kwargs.get("context")
        else:
            statement = args[1] if len(args) > 1 else kwargs.get("statement")
            parameters = args[2] if len(args) > 2 else kwargs.get("parameters")
            context = args[3] if len(args) > 3 else kwargs.get("context")
        event = begin(traces, DB, op, _target(dialect, context))
        event.statement = statement
        event.paramstyle = dialect.paramstyle
        event.dialect = dialect.name
        if parameters is not None:
            if shape == "many":
                if isinstance(parameters, (list, tuple)):  # never consume the caller's iterator
                    event.rows = len(parameters)
                    event.params = snapshot(parameters[0]) if parameters else None
            else:
                event.params = snapshot(parameters)
        event.start_ns = perf_counter_ns()
        return event
    except Exception as exc:
        profiler_failed(traces, exc)
        return None


def _execution_wrapper(op: str, shape: str):
    """A wrapper for one execution method; ``shape`` says how its arguments are laid out."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        traces = active.get()
        if not traces or _recording_statement.get():
            # Nothing records, or a dialect's override called super(): one statement.
            return wrapped(*args, **kwargs)
        event = _begin_statement(traces, op, instance, args, kwargs, shape)
        if event is None:
            return wrapped(*args, **kwargs)
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

    return wrapper


_WRAPPERS = {
    "do_execute": _execution_wrapper("execute", "one"),
    "do_executemany": _execution_wrapper("executemany", "many"),
    "do_execute_no_params": _execution_wrapper("execute", "no_params"),
}
