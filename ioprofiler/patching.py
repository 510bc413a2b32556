"""Put wrapt wrappers on class attributes and take them off again, exactly.

Our wrappers are instances of :class:`IOProfilerWrapper`, so double patching is
detected by type (another agent's wrapt wrapper also has ``__wrapped__``), and an
attribute is restored only while it is still ours.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import wrapt

from ioprofiler.trace import active

log = logging.getLogger("ioprofiler")

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class BoundIOProfilerWrapper(wrapt.BoundFunctionWrapper):  # type: ignore[misc]
    """A patched method as read from a class or an instance (``Client.get``, ``client.get``)."""

    # Pickled and copied like the plain function or bound method: by name, on its owner.

    def __reduce_ex__(self, protocol: object) -> tuple[object, tuple[object, str]]:
        return getattr, (self._owner(), self.__wrapped__.__name__)

    def __copy__(self) -> object:
        return getattr(self._owner(), self.__wrapped__.__name__)

    def __deepcopy__(self, memo: dict[int, object]) -> object:
        owner = self._owner()
        if self._self_instance is not None:
            owner = copy.deepcopy(owner, memo)
        return getattr(owner, self.__wrapped__.__name__)

    def _owner(self) -> object:
        return self._self_instance if self._self_instance is not None else self._self_owner


class IOProfilerWrapper(wrapt.FunctionWrapper):  # type: ignore[misc]
    """Marks a wrapper as ioprofiler's."""

    # wrapt looks this up on subclasses each time a method is bound; without it the
    # lookup fails and costs a raised and cleared AttributeError on every call.
    __bound_function_wrapper__ = BoundIOProfilerWrapper


class Patches:
    """The attributes one integration has wrapped, so it can unwrap exactly those."""

    def __init__(self) -> None:
        self._applied: list[tuple[type, str, Any, IOProfilerWrapper]] = []

    def __bool__(self) -> bool:
        return bool(self._applied)

    def wrap(self, owner: type, name: str, wrapper: Wrapper, always: bool = False) -> bool:
        """Wrap ``owner.name`` where ``owner`` itself defines it.

        The wrapper runs only while a trace is open in the calling context: wrapt
        asks ``active.get`` (a C call) and, when it returns no traces, calls the
        original without entering Python code of ours. ``always=True`` runs it on
        every call. Returns False when it is already ours or ``owner`` does not define it.
        """
        original = owner.__dict__.get(name)
        if original is None or isinstance(original, IOProfilerWrapper):
            return False
        wrapped = IOProfilerWrapper(original, wrapper, enabled=None if always else active.get)
        setattr(owner, name, wrapped)
        self._applied.append((owner, name, original, wrapped))
        return True

    def is_wrapped(self, owner: type, name: str) -> bool:
        return isinstance(owner.__dict__.get(name), IOProfilerWrapper)

    def unwrap_all(self) -> None:
        """Restore every attribute still ours, newest first."""
        while self._applied:
            owner, name, original, wrapped = self._applied.pop()
            if owner.__dict__.get(name) is wrapped:
                setattr(owner, name, original)
            else:
                log.warning(
                    "ioprofiler: %s.%s was re-wrapped by someone else after ioprofiler; "
                    "leaving it in place",
                    owner.__qualname__,
                    name,
                )
