"""Moved to :mod:`ioprofiler.sql_text`: statement text is data, made below Event and analysis.

Kept so that older imports keep working.
"""

from __future__ import annotations

from ioprofiler.sql_text import (
    MAX_LITERAL_CHARS,
    MAX_SEQUENCE_ITEMS,
    literal,
    render_statement,
    safe_repr,
    shape,
    visible,
)

__all__ = [
    "MAX_LITERAL_CHARS",
    "MAX_SEQUENCE_ITEMS",
    "literal",
    "render_statement",
    "safe_repr",
    "shape",
    "visible",
]
