"""Process-wide settings, changed with :func:`ioprofiler.configure`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_MAX_EVENTS = 10_000
DEFAULT_SLOW_MS = 100.0  # calls this slow are marked in the panel and the console


@dataclass(frozen=True)
class Settings:
    redact: bool = False
    max_events: int = DEFAULT_MAX_EVENTS
    callsite_skip: tuple[str, ...] = field(default_factory=tuple)


settings = Settings()


def configure(
    *,
    redact: bool | None = None,
    max_events: int | None = None,
    callsite_skip: tuple[str, ...] | list[str] | None = None,
) -> Settings:
    """Change how traces record and render; returns the settings now in force.

    >>> ioprofiler.configure(redact=True)          # show ``?`` instead of SQL values
    >>> ioprofiler.configure(max_events=50_000)    # default for traces opened from now on
    >>> ioprofiler.configure(callsite_skip=["myapp.db"])  # modules that are never a callsite
    >>> ioprofiler.configure(callsite_skip=["myapp.shop:_query"])  # nor this helper function

    Options left out keep their current value.
    """
    global settings
    changes: dict[str, object] = {}
    if redact is not None:
        if not isinstance(redact, bool):
            raise TypeError(f"redact must be True or False, not {redact!r}")
        changes["redact"] = redact
    if max_events is not None:
        changes["max_events"] = check_max_events(max_events)
    if callsite_skip is not None:
        if isinstance(callsite_skip, str) or not all(isinstance(m, str) for m in callsite_skip):
            raise TypeError(f"callsite_skip must be a list of module names, not {callsite_skip!r}")
        changes["callsite_skip"] = tuple(callsite_skip)
    settings = replace(settings, **changes)  # type: ignore[arg-type]
    if "callsite_skip" in changes:
        from ioprofiler import callsite

        callsite.forget()
    return settings


def check_max_events(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_events must be a whole number of at least 0, not {value!r}")
    return value
