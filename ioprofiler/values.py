"""Parameter values as a trace keeps them: owned, immutable, no bigger than the listing shows.

A statement's parameters are the caller's objects. Holding on to them would keep them
alive (weak references and finalizers fire late), pin a ``bytearray`` under a
``memoryview`` (its ``extend()`` raises ``BufferError`` while the trace lives), and show
values the caller changed after the call. :func:`snapshot` takes, at call time, what the
listing can show, and nothing of the caller's::

    snapshot((5773453, "x"))                 # the same tuple: ints and strs are immutable
    snapshot({"blob": bytearray(b"abc")})    # {"blob": b"abc"}: a copy
    snapshot((bytes(10_000),))               # (Clipped(b"\\x00" * 250, 10000),)
    snapshot((Money(5, "EUR"),))             # ("5 EUR",): its text, as the listing shows it
"""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from dataclasses import dataclass
from typing import Any

MAX_TEXT_CHARS = 500  # characters of one value the listing shows
MAX_BYTES = MAX_TEXT_CHARS // 2  # bytes of one value: the listing shows two hex digits a byte
MAX_ITEMS = 100  # items of one list or tuple value

# Values of these exact types are immutable and kept as they are: the fast path (also
# ioprofiler/_recorders.c's, which is given this set).
KEPT_TYPES = _KEPT = frozenset(
    {
        int,
        str,
        float,
        bool,
        type(None),
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
    }
)
# Immutable too, kept as they are when the exact type is a subclass.
_IMMUTABLE = (
    enum.Enum,
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
)


@dataclass(frozen=True, slots=True)
class Clipped:
    """The start of a value too long to keep whole, and its full length.

    ``head`` is ``bytes`` (``length`` in bytes), ``str`` (characters) or a ``tuple``
    of owned values (items).
    """

    head: bytes | str | tuple[Any, ...]
    length: int

    @property
    def more(self) -> int:
        """How much of the value is not kept."""
        return self.length - len(self.head)

    def __str__(self) -> str:
        if isinstance(self.head, bytes):
            return self.head.decode("utf-8", "backslashreplace") + f"…(+{self.more} bytes)"
        if isinstance(self.head, str):
            return self.head + f"…(+{self.more} chars)"
        return str(list(self.head))[:-1] + f", …(+{self.more} more)]"


def snapshot(parameters: Any) -> Any:
    """The parameters of one statement (a tuple, list or dict of values), owned."""
    # Runs for every recorded statement: a loop, not frozenset.issuperset(), which first
    # builds a set of the types (a few hundred ns for one parameter).
    kind = type(parameters)
    if kind is tuple:
        for value in parameters:
            if type(value) not in _KEPT:
                return tuple([owned(v) for v in parameters])
        return parameters  # immutable, and so is everything in it
    if kind is dict:
        for value in parameters.values():
            if type(value) not in _KEPT:
                return {owned(k): owned(v) for k, v in parameters.items()}
        return parameters.copy()
    return owned(parameters)


def first_row(parameters: Any) -> tuple[Any, int | None]:
    """executemany: (the first row, owned; how many rows) of a list or tuple of rows.
    Anything else is left alone: never consume the caller's iterator."""
    if isinstance(parameters, (list, tuple)):
        return (snapshot(parameters[0]) if parameters else None), len(parameters)
    return None, None


def owned(value: Any) -> Any:
    """One value as the trace keeps it; never raises."""
    kind = type(value)
    if kind in _KEPT:
        return value
    try:
        return _owned(value, kind)
    except Exception:
        return _text(object.__repr__(value))


def _owned(value: Any, kind: type) -> Any:
    if kind is bytes:
        return value if len(value) <= MAX_BYTES else Clipped(value[:MAX_BYTES], len(value))
    if kind is tuple or kind is list:
        if len(value) <= MAX_ITEMS:
            return tuple([owned(v) for v in value])
        return Clipped(tuple([owned(v) for v in value[:MAX_ITEMS]]), len(value))
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, str):  # a subclass: the characters, not the caller's object
        return _text(str.__str__(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(value)
    if isinstance(value, (tuple, list, set, frozenset)):
        return owned(list(value))
    return _text(str(value))


def _bytes(value: Any) -> bytes | Clipped:
    """A copy of at most MAX_BYTES of a bytes-like value, released at once."""
    with memoryview(value) as view:
        length = view.nbytes
        if view.ndim == 1 and view.itemsize == 1:
            head = bytes(view[:MAX_BYTES])
        else:
            head = view.tobytes()[:MAX_BYTES]
    return head if length <= MAX_BYTES else Clipped(head, length)


def _text(text: str) -> str | Clipped:
    return text if len(text) <= MAX_TEXT_CHARS else Clipped(text[:MAX_TEXT_CHARS], len(text))
