"""Every request over time: the summary records added up per time bucket and route.

>>> timeline = Timeline(bucket_s=60)
>>> for record in summaries("/var/log/shop/ioprofiler.jsonl"):
...     timeline.add(record)
>>> for route in timeline.busiest(5):
...     for row in timeline.rows(route, slow_ms=500):
...         print(row.start, row.per_s, row.slow_per_s, row.p95_ms)

A summary record is counted in the bucket its interval ends in: with the recorder's 10 s
summaries and minute buckets, a request lands at most one summary interval late.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ioprofiler.summary import Histogram, RouteTotals, bucket_value

_BUCKET = re.compile(r"(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def bucket_seconds(text: str) -> int:
    """``30s``, ``1m``, ``5m``, ``1h``: a bucket's length in seconds."""
    match = _BUCKET.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"a bucket is a length such as 30s, 1m, 5m or 1h, not {text!r}")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass(frozen=True)
class Row:
    """One route in one bucket (``start``: a Unix time, the bucket's beginning)."""

    start: float
    requests: int
    per_s: float
    slow_per_s: float
    p95_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "requests": self.requests,
            "per_s": round(self.per_s, 3),
            "slow_per_s": round(self.slow_per_s, 3),
            "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 3),
        }


class Timeline:
    """Per route and bucket: requests and their duration histogram, merged exactly."""

    def __init__(self, bucket_s: int = 60) -> None:
        self.bucket_s = bucket_s
        self._cells: dict[tuple[str, int], Histogram] = {}
        self._requests: Counter[str] = Counter()
        self.first: int | None = None  # bucket numbers
        self.last: int | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        """A summary record, its ``routes`` as :func:`ioprofiler.logread.summaries` reads them."""
        number = math.floor(record["ts"] / self.bucket_s)
        self.first = number if self.first is None else min(self.first, number)
        self.last = number if self.last is None else max(self.last, number)
        routes: Mapping[str, RouteTotals] = record["routes"]
        for route, totals in routes.items():
            self._cells.setdefault((route, number), Histogram()).merge(totals.duration)
            self._requests[route] += totals.requests

    def busiest(self, count: int) -> list[tuple[str, int]]:
        """The ``count`` routes with the most requests, with their requests."""
        return self._requests.most_common(count)

    def rows(self, route: str, slow_ms: float) -> Iterator[Row]:
        """The route's buckets, from the first bucket of any route to the last."""
        if self.first is None or self.last is None:
            return
        for number in range(self.first, self.last + 1):
            durations = self._cells.get((route, number), Histogram())
            yield Row(
                start=number * self.bucket_s,
                requests=durations.total,
                per_s=durations.total / self.bucket_s,
                slow_per_s=_slower(durations, slow_ms) / self.bucket_s,
                p95_ms=durations.quantile(0.95),
            )

    def bucket_of(self, ts: float) -> int:
        return math.floor(ts / self.bucket_s)


def _slower(durations: Histogram, slow_ms: float) -> int:
    """Requests slower than ``slow_ms`` (to the histogram's accuracy)."""
    return sum(n for index, n in durations.counts.items() if bucket_value(index) > slow_ms)
