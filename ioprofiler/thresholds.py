"""When an I/O pattern becomes a finding: every threshold in one place, with its default.

>>> ioprofiler.configure(findings=Thresholds(n_plus_one_ms=50.0))   # Sentry's production value
>>> ioprofiler.configure(findings={"slow_ms": 250.0})               # change one, keep the rest

Counts decide by default, times mostly do not: the panel is read on development machines,
where a query on a local SQLite file or MariaDB takes microseconds and an N+1 that will cost
seconds in production costs a millisecond. Raise the ``*_ms`` thresholds where traces come
from production.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

DEFAULT_SLOW_MS = 100.0


@dataclass(frozen=True)
class Thresholds:
    """The defaults below are documented in docs/reference.md, "Findings"."""

    # N+1: one statement shape, run with this many different sets of values or more...
    n_plus_one_count: int = 5
    # ...taking this long together (Sentry: 50 ms in production).
    n_plus_one_ms: float = 0.0
    # duplicate: the same statement with the same values, or the same cache key read,
    # this many times or more in one request.
    duplicate_count: int = 2
    # serial fan-out: one statement shape sent to this many shards or more, one after another...
    fanout_targets: int = 2
    # ...when running them at once would save this much (Sentry: 100 ms).
    fanout_saving_ms: float = 0.0
    # slow call: one call at least this long (the middleware's slow_ms, when it has one)...
    slow_ms: float = DEFAULT_SLOW_MS
    # ...or the request's slowest call, when it takes this share of the request or more...
    dominant_share: float = 0.5
    # ...and at least this long.
    dominant_ms: float = 20.0
    # cache misses that went to the database: this many missed keys filled from queries.
    cache_fill_count: int = 3
    # low hit ratio: under this share of keys found...
    hit_ratio_below: float = 0.5
    # ...over at least this many keys read.
    hit_ratio_reads: int = 10
    # waits: pool waits and new connections taking this long together.
    waits_ms: float = 10.0
    # unexplained time: this share of the request outside every I/O call or more...
    unexplained_share: float = 0.5
    # ...of a request at least this long.
    unexplained_request_ms: float = 200.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type == "int":
                least = 2 if item.name in ("duplicate_count", "fanout_targets") else 1
                if isinstance(value, bool) or not isinstance(value, int) or value < least:
                    raise ValueError(
                        f"findings threshold {item.name} must be a whole number of at least "
                        f"{least}, not {value!r}"
                    )
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"findings threshold {item.name} must be a number of at least 0, not {value!r}"
                )
            elif item.name.endswith(("_share", "_below")) and value > 1:
                raise ValueError(
                    f"findings threshold {item.name} is a share between 0 and 1, not {value!r}"
                )

    @classmethod
    def names(cls) -> list[str]:
        return [item.name for item in fields(cls)]
