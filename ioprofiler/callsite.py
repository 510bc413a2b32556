"""Find the application's frame that made an I/O call.

The walk runs on the hot path (only while a trace is recording), so it keeps
nothing but the code object and line number, and decides "is this file ours or a
library's?" once per code object.

Its caches are keyed by ``id(code)``, not by the code object: hashing a code object
hashes its bytecode's constants (nested functions included) on every lookup, hundreds of
nanoseconds for a large function. Each cache holds the code objects it has seen, so an id
cannot be reused while it is a key. The compiled lookup remembers what it reads from them by
address; whatever changes them other than by adding an entry tells it (``_changed``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
import threading
from types import CodeType, FrameType
from typing import Any

from ioprofiler import compiled, config

_LIBRARY_PACKAGES = (
    "ioprofiler",
    "sqlalchemy",
    "pymemcache",
    "redis",
    "urllib3",
    "requests",
    "httpx",
    "httpcore",
    "django",
    "pymysql",
    "psycopg",
    "psycopg_pool",
    "wrapt",
    "greenlet",
)
Site = tuple[CodeType, int]  # (code, line): one per line that made calls, shared by its events

# id(code) -> (code, is it a library's?, the application's sites in it by line);
# callsite_skip can name modules or single functions.
Known = tuple[CodeType, bool, dict[int, Site]]
_is_library: dict[int, Known] = {}
_library_dirs: tuple[tuple[str, ...], tuple[str, ...]] | None = None
_lock = threading.Lock()
_MAX_REMEMBERED = 20_000
# Per library entry frame (id of the code that called our wrapper): that code, and the
# chains of library code objects seen above it before the application's frame, most
# recent first.
_hints: dict[int, tuple[CodeType, tuple[tuple[CodeType, ...], ...]]] = {}
_HINTS_PER_ENTRY = 4


def _package_dir(name: str) -> str | None:
    """Where a top-level package lives, without importing it."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) if module is not None else None
    if path is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        path = spec.origin if spec is not None else None
    if not path or not os.path.isabs(path):
        return None
    return os.path.dirname(os.path.abspath(path)) + os.sep


def _compute_library_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(standard library folders, folders of packages that are never a callsite)."""
    stdlib = set()
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            stdlib.add(os.path.abspath(path) + os.sep)
    # The integrations folder is installed as ioprofiler.integrations, but an
    # editable install runs it from the checkout's integrations/ folder.
    here = os.path.dirname(os.path.abspath(__file__))
    packages = {os.path.join(os.path.dirname(here), "integrations") + os.sep}
    # Only the intercepted libraries by folder: callsite_skip entries are matched by module
    # name, since a single-file module's folder is usually the application's own.
    for name in _LIBRARY_PACKAGES:
        package = _package_dir(name)
        if package:
            packages.add(package)
    return tuple(sorted(stdlib)), tuple(sorted(packages))


def _classify(code: CodeType, module_name: object) -> bool:
    global _library_dirs
    filename = code.co_filename
    if _library_dirs is None:
        with _lock:
            if _library_dirs is None:
                _library_dirs = _compute_library_dirs()
    stdlib, packages = _library_dirs
    if filename.startswith("<frozen"):
        return True
    if isinstance(module_name, str):
        # Code a library generates (SQLAlchemy's "<sqlalchemy generated …>" wrappers) has no
        # file of its own, but it runs in the library's module.
        if module_name.partition(".")[0] in _LIBRARY_PACKAGES:
            return True
        for skipped in config.settings.callsite_skip:
            module, _, function = skipped.partition(":")
            if function:
                if module_name == module and code.co_name == function:
                    return True
            elif module_name == module or module_name.startswith(module + "."):
                return True
    if filename.startswith("<"):
        return False  # exec'd or interactive code: the application's
    try:
        path = os.path.abspath(filename)
    except OSError:  # the working directory is gone
        path = filename
    if path.startswith(packages):
        return True
    # site-packages may sit inside the standard library's folder: what is
    # installed there is somebody's application code, not the standard library.
    installed = f"{os.sep}site-packages{os.sep}" in path or f"{os.sep}dist-packages{os.sep}" in path
    return not installed and path.startswith(stdlib)


def forget() -> None:
    """Drop cached decisions (after ``configure(callsite_skip=...)``)."""
    global _library_dirs
    with _lock:
        _library_dirs = None
        _is_library.clear()
        _hints.clear()
    _changed()  # outside the lock: releasing what it remembered may run a finaliser


config.when_callsite_skip_changes(forget)


def _decision(frame: FrameType) -> Known:
    code = frame.f_code
    known = _is_library.get(id(code))
    if known is None:
        if len(_is_library) >= _MAX_REMEMBERED:
            _is_library.clear()  # generated code (exec) must not grow this forever
            _changed()
        known = (code, _classify(code, frame.f_globals.get("__name__")), {})
        _is_library[id(code)] = known
    return known


def _site(known: Known, lineno: int) -> Site:
    """The one (code, line) tuple for this line: events share it, and its line number."""
    sites = known[2]
    site = sites.get(lineno)
    if site is None:
        site = sites.setdefault(lineno, (known[0], lineno))
    return site


def find(depth: int) -> Site | None:
    """The first application frame above the caller's ``depth``-th caller, as (code, line).

    ``ioprofiler._speedups.find`` replaces this function when the accelerator is built (see
    the end of this module): the same walk over the interpreter's frames, without making
    frame objects, that hands anything not decided yet back to this function.

    SQLAlchemy's stack is deep, and deciding "library or application?" for each frame costs
    a call and a lookup per level. So each library entry point remembers the chains of
    library code objects seen between it and the application's frame; a stack that starts
    with a remembered chain is matched code object by code object, and the frame after it
    is the answer the full walk would give. Otherwise it walks, and learns.

    Crosses from a greenlet to its parent, so SQLAlchemy's asyncio engines report
    the coroutine that awaited the query; and from an asyncio task whose coroutines are all
    a library's (``asyncio.gather(conn.execute(a), conn.execute(b))``, the close SQLAlchemy
    shields as ``async with engine.connect()`` exits) to the coroutine awaiting that task,
    not the event loop's caller (``asyncio.run(main())``, uvicorn's ``asyncio_run``).
    """
    base = depth + 1  # this function's own frame
    try:
        entry = sys._getframe(base)
    except ValueError:
        return None
    hints = _hints.get(id(entry.f_code))
    if hints is not None:
        for chain in hints[1]:
            frame: Any = entry.f_back
            try:
                for code in chain:
                    if frame.f_code is not code:
                        break
                    frame = frame.f_back
                else:
                    known = _is_library.get(id(frame.f_code)) or _decision(frame)
                    if not known[1]:
                        return _site(known, frame.f_lineno)
            except AttributeError:  # the stack ended inside the chain: frame is None
                pass
    return _walk(entry)


def _walk(frame: FrameType | None) -> Site | None:
    chain: list[CodeType] = []
    jumped = left_task = False
    while True:
        while frame is not None:
            known = _decision(frame)
            if not known[1]:
                if not jumped and not left_task and chain:
                    _learn(tuple(chain))
                return _site(known, frame.f_lineno)
            chain.append(frame.f_code)
            back = frame.f_back
            if not left_task and back is not None and _leaves_task(frame.f_code, back.f_code):
                left_task = True  # below are the event loop and its caller: ask the awaiter
                site = _awaiting_site()
                if site is not None:
                    return site
            frame = back
        if jumped:
            return None
        jumped = True
        frame = _parent_greenlet_frame()
        if frame is None:
            return None


# inspect's CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR: a coroutine's code
_ASYNC_CODE = 0x80 | 0x100 | 0x200
_MAX_AWAITERS = 32  # tasks awaiting tasks, futures between them: a bound on the search


def _leaves_task(code: CodeType, below: CodeType) -> bool:
    """``code`` is a task's outermost coroutine: ``below`` it runs the event loop."""
    return bool(code.co_flags & _ASYNC_CODE) and not below.co_flags & _ASYNC_CODE


def _awaiting_site() -> Site | None:
    """The application's frame awaiting the running asyncio task, through the tasks and
    futures in between (gather's, shield's); None when no application frame awaits it."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        task = asyncio.current_task()
        for _ in range(_MAX_AWAITERS):
            task = _awaiting_task(asyncio, task)
            if task is None:
                return None
            site = _coroutine_site(task.get_coro())
            if site is not None:
                return site
    except Exception:  # no running loop; a future of another kind
        pass
    return None


def _awaiting_task(asyncio: Any, awaited: Any) -> Any:
    """The task that waits for ``awaited``: its wake-up is a callback of ``awaited``, or of
    a future that a callback of ``awaited`` completes (gather's, shield's outer future)."""
    pending, seen = [awaited], {id(awaited)}
    while pending and len(seen) < _MAX_AWAITERS:
        for callback, _ in getattr(pending.pop(), "_callbacks", None) or ():
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, asyncio.Task) and owner is not awaited:
                return owner
            for cell in getattr(callback, "__closure__", None) or ():
                value = _cell_value(cell)
                if isinstance(value, asyncio.Future) and id(value) not in seen:
                    seen.add(id(value))
                    pending.append(value)
    return None


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # empty
        return None


def _coroutine_site(coroutine: Any) -> Site | None:
    """The innermost application frame of a suspended coroutine and those it awaits."""
    found = None
    for _ in range(_MAX_REMEMBERED):
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "ag_frame", None)
        if frame is None:
            return found
        known = _decision(frame)
        if not known[1]:
            found = _site(known, frame.f_lineno)
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "ag_await", None)
    return found


def _learn(chain: tuple[CodeType, ...]) -> None:
    entry, above = chain[0], chain[1:]
    known = _hints.get(id(entry), (entry, ()))[1]
    if not any(_same_codes(above, chain) for chain in known):
        if len(_hints) >= _MAX_REMEMBERED:
            _hints.clear()
        _hints[id(entry)] = (entry, (above, *known[: _HINTS_PER_ENTRY - 1]))
        _changed()


def _same_codes(one: tuple[CodeType, ...], other: tuple[CodeType, ...]) -> bool:
    # By identity: two code objects compiled from the same text compare equal.
    return len(one) == len(other) and all(a is b for a, b in zip(one, other, strict=True))


def _parent_greenlet_frame() -> FrameType | None:
    greenlet = sys.modules.get("greenlet")
    if greenlet is None:
        return None
    try:
        parent = greenlet.getcurrent().parent
    except Exception:
        return None
    return getattr(parent, "gr_frame", None) if parent is not None else None


def _changed() -> None:
    """The dictionaries changed other than by adding an entry: the compiled lookup forgets."""


_find_pure = find
accelerated = False
_speedups = compiled.load("_speedups")  # None: not built, refused, or pure Python forced
if _speedups is not None:
    _speedups.install(_hints, _is_library, _find_pure, _parent_greenlet_frame, _awaiting_site)
    find = _speedups.find  # noqa: F811
    _changed = _speedups.forget  # noqa: F811
    accelerated = True
