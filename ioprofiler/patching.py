"""Put wrappers on class attributes and take them off again, exactly.

A class's own function gets a :class:`~ioprofiler._patch.MethodPatch` where the compiled
module is built (CPython calls it like a plain function, without binding it first: while
no trace is open a call costs one context-variable read more than the function's own);
anything else (a module's function, a classmethod, another tool's wrapper), and every
attribute when it is not built or ``IOPROFILER_PURE_PYTHON=1``, gets wrapt's
``FunctionWrapper`` as :class:`IOProfilerWrapper`. Both call ``wrapper(wrapped, instance,
args, kwargs)`` the same way. Double patching is detected by type (another agent's wrapt
wrapper also has ``__wrapped__``; :func:`is_ours`), and an attribute is restored only while
it is still ours.

Beside other instrumentation, in either install order:

- A method bound to an instance (``client.get``) does not show ``__wrapped__``:
  OpenTelemetry's pymemcache wrappers skip any method that has it (their guard
  against wrapping twice), so with ioprofiler installed first their spans vanished.
- A tool that unwraps by putting back ``getattr(cls, name).__wrapped__`` (as
  OpenTelemetry's ``unwrap`` does) leaves our wrapper on the class in its bound
  form; it is still ours, and ``uninstall()`` takes it off.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from contextvars import ContextVar
from types import FunctionType, ModuleType
from typing import Any

import wrapt

from ioprofiler import compiled, recorders
from ioprofiler.trace import active

log = logging.getLogger("ioprofiler")

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

# wrapt's pure-Python wrappers read __wrapped__ to call through; only the C ones may hide it.
_HIDE_WRAPPED = bool(getattr(getattr(wrapt, "__wrapt__", None), "_using_c_extension", False))
_WRAPPED = wrapt.BoundFunctionWrapper.__wrapped__


class BoundIOProfilerWrapper(wrapt.BoundFunctionWrapper):  # type: ignore[misc]
    """A patched method as read from a class or an instance (``Client.get``, ``client.get``)."""

    if _HIDE_WRAPPED:

        @property
        def __wrapped__(self) -> Any:
            if self._self_instance is not None:
                raise AttributeError("__wrapped__")
            return _WRAPPED.__get__(self)

        def __getattr__(self, name: str) -> Any:
            if name == "__wrapped__":  # hidden above: not looked up on the wrapped either
                raise AttributeError(name)
            return super().__getattr__(name)

    # Pickled and copied like the plain function or bound method: by name, on its owner.

    def __reduce_ex__(self, protocol: object) -> tuple[object, tuple[object, str]]:
        return getattr, (self._owner(), self.__name__)

    def __copy__(self) -> object:
        return getattr(self._owner(), self.__name__)

    def __deepcopy__(self, memo: dict[int, object]) -> object:
        owner = self._owner()
        if self._self_instance is not None:
            owner = copy.deepcopy(owner, memo)
        return getattr(owner, self.__name__)

    def _owner(self) -> object:
        return self._self_instance if self._self_instance is not None else self._self_owner


class IOProfilerWrapper(wrapt.FunctionWrapper):  # type: ignore[misc]
    """Marks a wrapper as ioprofiler's."""

    # wrapt looks this up on subclasses each time a method is bound; without it the
    # lookup fails and costs a raised and cleared AttributeError on every call.
    __bound_function_wrapper__ = BoundIOProfilerWrapper


_patch = compiled.load("_patch")  # None: wrapt everywhere
MethodPatch: Any = None if _patch is None else _patch.MethodPatch

compiled_patches = MethodPatch is not None


class Patches:
    """The attributes one integration has wrapped, so it can unwrap exactly those."""

    def __init__(self) -> None:
        self._applied: list[tuple[type | ModuleType, str, Any, Any]] = []

    def __bool__(self) -> bool:
        return bool(self._applied)

    def wrap(
        self,
        owner: type | ModuleType,
        name: str,
        wrapper: Wrapper,
        always: bool = False,
        enabled: Callable[[], Any] | None = None,
    ) -> bool:
        """Wrap ``owner.name`` where ``owner`` (a class, or a module) itself defines it.

        The wrapper runs only while a trace is open in the calling context: wrapt
        asks ``active.get`` (a C call) and, when it returns no traces, calls the
        original without entering Python code of ours. ``enabled``: another such test
        (a ContextVar's ``get``: the wrapper runs only while it holds a true value).
        ``always=True`` runs it on every call. A compiled recorder (:mod:`ioprofiler.recorders`)
        is put on as it is, or as its Python reference while ``compiled_recorders`` is off.
        Returns False when it is already ours or ``owner`` does not define it.
        """
        original = owner.__dict__.get(name)
        if original is None or _ours(original) is not None:
            return False
        wrapper = recorders.chosen(wrapper)
        if enabled is None and not always:
            enabled = active.get
        wrapped = _patch(owner, original, wrapper, enabled)
        setattr(owner, name, wrapped)
        self._applied.append((owner, name, original, wrapped))
        return True

    def is_wrapped(self, owner: type | ModuleType, name: str) -> bool:
        return _ours(owner.__dict__.get(name)) is not None

    def unwrap_all(self) -> None:
        """Restore every attribute still ours, newest first."""
        while self._applied:
            owner, name, original, wrapped = self._applied.pop()
            if _ours(owner.__dict__.get(name)) is wrapped:
                setattr(owner, name, original)
            else:
                log.warning(
                    "ioprofiler: %s.%s was re-wrapped by someone else after ioprofiler; "
                    "leaving it in place",
                    getattr(owner, "__qualname__", getattr(owner, "__name__", owner)),
                    name,
                )


def _patch(owner: type | ModuleType, original: Any, wrapper: Wrapper, enabled: Any) -> Any:
    """A MethodPatch where it can stand in for wrapt's wrapper exactly: a class's own plain
    function, switched by a ContextVar (or always on)."""
    if compiled_patches and isinstance(owner, type) and type(original) is FunctionType:
        var = _context_var(enabled)
        if var is not False:
            return MethodPatch(original, wrapper, var)
    return IOProfilerWrapper(original, wrapper, enabled=enabled)


def _context_var(enabled: Any) -> ContextVar[Any] | None | bool:
    """The ContextVar whose ``get`` ``enabled`` is; None for always on; False for anything
    else (a callable MethodPatch cannot read in C)."""
    if enabled is None:
        return None
    var = getattr(enabled, "__self__", None)
    if type(var) is ContextVar and getattr(enabled, "__name__", None) == "get":
        return var
    return False


def is_ours(attribute: Any) -> bool:
    """Is this class or module attribute an ioprofiler patch (of either kind)?

    >>> from pymemcache.client.base import Client
    >>> is_ours(vars(Client)["get"])   # after ioprofiler.install()
    True
    """
    return _ours(attribute) is not None


def _ours(attribute: Any) -> Any:
    """Our wrapper, when ``attribute`` is it, or it in the bound form that a tool unwrapping
    a wrapper of its own above ours puts back (``setattr(cls, name, cls.name.__wrapped__)``;
    a MethodPatch read from its class is itself)."""
    if isinstance(attribute, IOProfilerWrapper):
        return attribute
    if MethodPatch is not None and type(attribute) is MethodPatch:  # whatever compiled_patches
        return attribute
    if isinstance(attribute, BoundIOProfilerWrapper) and attribute._self_instance is None:
        parent = attribute._self_parent
        return parent if isinstance(parent, IOProfilerWrapper) else None
    return None
