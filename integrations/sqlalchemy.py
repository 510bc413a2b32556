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
    from sqlalchemy.engine.default import DefaultDialect

    for base in dialect_class.__mro__:
        wrappers = _WRAPPERS if base is DefaultDialect else _OVERRIDE_WRAPPERS
        for name in EXECUTE_METHODS:
            if name in base.__dict__ and not _patches.is_wrapped(base, name):
                _patches.wrap(base, name, wrappers[name])


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


def _arguments(shape: str, args: Any, kwargs: Any) -> tuple[Any, Any, Any]:
    """(statement, parameters, context), however the caller passed them."""
    statement = args[1] if len(args) > 1 else kwargs.get("statement")
    if shape == "no_params":  # do_execute_no_params(cursor, statement, context=None)
        return statement, None, args[2] if len(args) > 2 else kwargs.get("context")
    parameters = args[2] if len(args) > 2 else kwargs.get("parameters")
    return statement, parameters, args[3] if len(args) > 3 else kwargs.get("context")


def _first_row(parameters: Any) -> tuple[Any, int | None]:
    """executemany: (the first row, owned; how many rows) of a list or tuple of rows.
    Anything else is left alone: never consume the caller's iterator."""
    if isinstance(parameters, (list, tuple)):
        return (snapshot(parameters[0]) if parameters else None), len(parameters)
    return None, None


def _execution_wrapper(op: str, shape: str, override: bool):
    """A wrapper for one execution method; ``shape`` says how its arguments are laid out.

    ``override``: the method is a dialect's own, which may call the base class's method
    through super(); while it runs, the base's wrapper lets the call through (one statement,
    one event). DefaultDialect's methods call only the DB-API cursor, so their wrappers
    need not say so.
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
            event = begin(traces, DB, op, name, 2)
            event.statement = statement
            event.params = params
            event.rows = rows
            event.paramstyle = instance.paramstyle
            event.dialect = instance.name
        except Exception as exc:
            profiler_failed(traces, exc)
            return wrapped(*args, **kwargs)
        token = _recording_statement.set(True) if override else None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            failed(event, exc)
            raise
        finally:
            if token is not None:
                _recording_statement.reset(token)
        event.end_ns = perf_counter_ns()
        done(event)
        return result

    return wrapper


_SHAPES = {
    "do_execute": ("execute", "one"),
    "do_executemany": ("executemany", "many"),
    "do_execute_no_params": ("execute", "no_params"),
}
_WRAPPERS = {name: _execution_wrapper(*shape, override=False) for name, shape in _SHAPES.items()}
_OVERRIDE_WRAPPERS = {
    name: _execution_wrapper(*shape, override=True) for name, shape in _SHAPES.items()
}
