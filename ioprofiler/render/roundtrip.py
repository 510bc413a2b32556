"""Moved to :mod:`ioprofiler.roundtrip_text`: a round trip's words are data, made below Event.

Kept so that older imports keep working.
"""

from __future__ import annotations

from ioprofiler.roundtrip_text import (
    connect_text,
    describe_op,
    detail_fields,
    op_count,
    ops_fields,
    ordered_ops,
    pool_text,
)

__all__ = [
    "connect_text",
    "describe_op",
    "detail_fields",
    "op_count",
    "ops_fields",
    "ordered_ops",
    "pool_text",
]
