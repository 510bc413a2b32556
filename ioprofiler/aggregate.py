"""What made the kept requests slow, added up: per route, target, statement shape or wait.

>>> top = Top("statement")
>>> for record in records("/var/log/shop/ioprofiler.jsonl"):
...     top.add(record)
>>> top.rows()[0].key, top.rows()[0].total_ms
('dbshard03  SELECT … WHERE listing_id = ?', 8123.4)

Streams: a record is added and forgotten, only each group's durations are kept (for the
median and p95). Waits are the round trips around the application's calls, of any kind
(``ioprofiler.event.CONNECTION_OPS``: connects, pool waits, commits, …), named by their op;
statements are the other database events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ioprofiler.event import CONNECTION_OPS, DB
from ioprofiler.sql_text import shape

BY = ("route", "target", "statement", "wait")


@dataclass(frozen=True)
class Row:
    key: str
    count: int
    total_ms: float
    median_ms: float
    p95_ms: float
    share: float  # of the time of all the requests looked at

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "count": self.count,
            "total_ms": round(self.total_ms, 3),
            "median_ms": round(self.median_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "share": round(self.share, 4),
        }


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil without float error at 1.0
    return ordered[min(len(ordered), int(rank)) - 1]


def route_of(record: dict[str, Any]) -> str:
    """The route template when the log knows it, else the path."""
    return f"{record.get('method', '')} {record.get('route') or record.get('path', '')}".strip()


def wait_name(op: str) -> str:
    """``pool_wait`` -> ``POOL WAIT``."""
    return op.replace("_", " ").upper()


def _is_wait(event: dict[str, Any]) -> bool:
    return event.get("op") in CONNECTION_OPS


def _is_statement(event: dict[str, Any]) -> bool:
    return event.get("kind") == DB and event.get("statement") is not None and not _is_wait(event)


def _events_by_target(record: dict[str, Any]) -> Iterator[tuple[str, float]]:
    for event in record.get("events", ()):
        yield event["target"], event.get("duration_ms") or 0.0


def _events_by_statement(record: dict[str, Any]) -> Iterator[tuple[str, float]]:
    for event in record.get("events", ()):
        if _is_statement(event):
            text = shape(event.get("sql") or event["statement"], "qmark")
            yield f"{event['target']}  {text}", event.get("duration_ms") or 0.0


def _events_by_wait(record: dict[str, Any]) -> Iterator[tuple[str, float]]:
    for event in record.get("events", ()):
        if _is_wait(event):
            yield f"{wait_name(event['op'])}  {event['target']}", event.get("duration_ms") or 0.0


def _by_route(record: dict[str, Any]) -> Iterator[tuple[str, float]]:
    yield route_of(record), record.get("duration_ms", 0.0)


_GROUPINGS: dict[str, Callable[[dict[str, Any]], Iterator[tuple[str, float]]]] = {
    "route": _by_route,
    "target": _events_by_target,
    "statement": _events_by_statement,
    "wait": _events_by_wait,
}


class Top:
    """Adds up kept requests by ``by`` ("route", "target", "statement" or "wait")."""

    def __init__(self, by: str = "route") -> None:
        if by not in _GROUPINGS:
            raise ValueError(f"--by takes one of {', '.join(BY)}, not {by!r}")
        self.by = by
        self._group = _GROUPINGS[by]
        self._durations: dict[str, list[float]] = {}
        self.requests = 0
        self.request_ms = 0.0

    def add(self, record: dict[str, Any]) -> None:
        self.requests += 1
        self.request_ms += record.get("duration_ms", 0.0)
        for key, ms in self._group(record):
            durations = self._durations.get(key)
            if durations is None:
                durations = self._durations[key] = []
            durations.append(ms)

    def rows(self, limit: int | None = None) -> list[Row]:
        """The groups, the most total time first."""
        return ranked_rows(self._durations, self.request_ms, limit)


def ranked_rows(
    durations_by_key: dict[str, list[float]], request_ms: float, limit: int | None = None
) -> list[Row]:
    """One :class:`Row` per key (its durations sorted in place), the most total time first;
    ``share`` is of ``request_ms``, the time of all the requests added."""
    rows = []
    for key, durations in durations_by_key.items():
        durations.sort()
        total = sum(durations)
        rows.append(
            Row(
                key=key,
                count=len(durations),
                total_ms=total,
                median_ms=percentile(durations, 0.5),
                p95_ms=percentile(durations, 0.95),
                share=total / request_ms if request_ms else 0.0,
            )
        )
    rows.sort(key=lambda row: (-row.total_ms, row.key))
    return rows if limit is None else rows[:limit]
