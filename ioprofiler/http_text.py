"""What an HTTP call did, in the listing's words: ``GET /v1/items?id=? → 200 (3.1 kB)``."""

from __future__ import annotations

from typing import Any

from ioprofiler.sql_text import visible


def size_text(size: int) -> str:
    """``512 B``, ``3.1 kB``, ``2.0 MB`` (powers of 1000, as browsers' network panels show)."""
    if size < 1000:
        return f"{size} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6)):
        if size < scale * 999.95:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1e9:.1f} GB"


def describe_http(event: Any) -> str:
    """``GET /v1/items?id=? → 200 (3.1 kB)`` for an HTTP event (without the error suffix).

    A body not read to its end says so: ``→ 200 (time to headers, body not read to the
    end)`` while it was never finished, ``→ 200 (1.2 kB read, closed before the end of the
    body)`` when the application closed it early.
    """
    text = f"{visible(event.op)} {visible(event.statement or '')}"
    if event.status is not None:
        text += f" → {event.status}"
        parts = []
        if event.size is not None:
            parts.append(size_text(event.size) + (" read" if event.note else ""))
        if event.note:
            parts.append(visible(event.note))
        if parts:
            text += f" ({', '.join(parts)})"
    return text
