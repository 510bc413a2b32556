"""What renderers know about the request a trace belongs to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestInfo:
    """``RequestInfo("GET", "/listing/5773453?ioprofiler=1", "200 OK")``."""

    method: str
    path: str
    status: str = ""

    @property
    def status_code(self) -> int | None:
        head = self.status.split(" ", 1)[0]
        return int(head) if head.isdigit() else None
