"""Put wrapt wrappers on class attributes and take them off again, exactly.

Our wrappers are instances of :class:`IOProfilerWrapper`, so double patching is
detected by type (another agent's wrapt wrapper also has ``__wrapped__``), and an
attribute is restored only while it is still ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import wrapt

log = logging.getLogger("ioprofiler")

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class IOProfilerWrapper(wrapt.FunctionWrapper):  # type: ignore[misc]
    """Marks a wrapper as ioprofiler's."""


class Patches:
    """The attributes one integration has wrapped, so it can unwrap exactly those."""

    def __init__(self) -> None:
        self._applied: list[tuple[type, str, Any, IOProfilerWrapper]] = []

    def __bool__(self) -> bool:
        return bool(self._applied)

    def wrap(self, owner: type, name: str, wrapper: Wrapper) -> bool:
        """Wrap ``owner.name`` where ``owner`` itself defines it.

        Returns False when it is already ours or ``owner`` does not define it.
        """
        original = owner.__dict__.get(name)
        if original is None or isinstance(original, IOProfilerWrapper):
            return False
        wrapped = IOProfilerWrapper(original, wrapper)
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
