"""Counts in words: ``1 query``, ``2 queries``, ``1 cache call``, ``3 misses``.

>>> counted(1, "query"), counted(2, "query"), counted(0, "miss")
('1 query', '2 queries', '0 misses')
"""

from __future__ import annotations

_PLURALS = {"query": "queries", "miss": "misses", "likely N+1": "likely N+1s"}


def counted(count: int, word: str) -> str:
    """``count`` and ``word``, in the plural unless the count is one."""
    if count == 1:
        return f"1 {word}"
    return f"{count} {_PLURALS.get(word, word + 's')}"
