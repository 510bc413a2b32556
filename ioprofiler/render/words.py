"""Moved to :mod:`ioprofiler.words`: counts in words are used below Event and analysis.

Kept so that older imports keep working.
"""

from __future__ import annotations

from ioprofiler.words import counted

__all__ = ["counted"]
