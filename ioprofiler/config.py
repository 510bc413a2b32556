"""Process-wide settings, changed with :func:`ioprofiler.configure`."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

# DEFAULT_SLOW_MS: calls this slow are marked in the panel and the console, and are findings
from ioprofiler.thresholds import DEFAULT_SLOW_MS as DEFAULT_SLOW_MS
from ioprofiler.thresholds import Thresholds

DEFAULT_MAX_EVENTS = 10_000


@dataclass(frozen=True)
class Settings:
    redact: bool = False
    max_events: int = DEFAULT_MAX_EVENTS
    callsite_skip: tuple[str, ...] = field(default_factory=tuple)
    findings: Thresholds = field(default_factory=Thresholds)


settings = Settings()
_callsite_skip_watchers: list[Callable[[], None]] = []


def when_callsite_skip_changes(forget: Callable[[], None]) -> None:
    """Call ``forget`` after each ``configure(callsite_skip=...)``: how the callsite walk,
    which imports this module, drops what it cached without this module importing it.

    >>> config.when_callsite_skip_changes(forget)
    """
    _callsite_skip_watchers.append(forget)


def configure(
    *,
    redact: bool | None = None,
    max_events: int | None = None,
    callsite_skip: tuple[str, ...] | list[str] | None = None,
    findings: Thresholds | Mapping[str, Any] | None = None,
) -> Settings:
    """Change how traces record and render; returns the settings now in force.

    >>> ioprofiler.configure(redact=True)          # show ``?`` instead of SQL values
    >>> ioprofiler.configure(max_events=50_000)    # default for traces opened from now on
    >>> ioprofiler.configure(callsite_skip=["myapp.db", "myapp.shop:_query"])
    >>> ioprofiler.configure(findings={"n_plus_one_count": 3})  # thresholds of the findings

    Options left out keep their current value. ``callsite_skip`` is not added to: each call
    that passes it replaces the whole list (modules, or ``module:function``; ``[]`` clears
    it). Every value is checked before any is changed.
    """
    global settings
    changes: dict[str, object] = {}
    if redact is not None:
        changes["redact"] = check_flag("redact", redact)
    if max_events is not None:
        changes["max_events"] = check_max_events(max_events)
    if callsite_skip is not None:
        changes["callsite_skip"] = check_callsite_skip(callsite_skip)
    if findings is not None:
        changes["findings"] = _thresholds(findings, settings.findings)
    settings = replace(settings, **changes)  # type: ignore[arg-type]
    if "callsite_skip" in changes:
        for forget in _callsite_skip_watchers:
            forget()
    return settings


# -- checks shared by every public constructor: bad input fails where it is given ------

_SKIP_ENTRY = re.compile(r"[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?")


def check_max_events(value: object, name: str = "max_events") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of at least 0, not {value!r}")
    return value


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def check_ms(name: str, value: object) -> float:
    """A duration in milliseconds: a finite number, 0 or more."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a number of milliseconds, 0 or more, not {value!r}")
    return float(value)


def check_callsite_skip(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(
            "callsite_skip must be a list of module names or 'module:function' entries, "
            f"like ['myapp.db'], not {value!r}"
        )
    for entry in value:
        if not isinstance(entry, str) or not _SKIP_ENTRY.fullmatch(entry):
            raise ValueError(
                f"callsite_skip entries are module names ('myapp.db') or 'module:function' "
                f"('myapp.shop:_query'), not {entry!r}"
            )
    return tuple(value)


def _thresholds(value: object, current: Thresholds) -> Thresholds:
    """A :class:`Thresholds`, or a mapping of the thresholds to change in ``current``."""
    if isinstance(value, Thresholds):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(
            f"findings takes ioprofiler.Thresholds(...) or a dict of thresholds, not {value!r}"
        )
    unknown = sorted(str(k) for k in value if k not in Thresholds.names())
    if unknown:
        raise ValueError(
            f"unknown findings threshold {', '.join(unknown)}; "
            f"the thresholds are: {', '.join(Thresholds.names())}"
        )
    return replace(current, **value)
