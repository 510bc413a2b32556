"""Moved to :mod:`ioprofiler.cache_text`: key text is data, made below Event and analysis.

Kept so that older imports keep working.
"""

from __future__ import annotations

from ioprofiler.cache_text import MAX_KEYS_SHOWN, describe, key_text, keys_text

__all__ = ["MAX_KEYS_SHOWN", "describe", "key_text", "keys_text"]
