"""The listing for a terminal, with rich: a colour per target, slow calls and errors marked.

>>> print_trace(trace, RequestInfo("GET", "/shop/7", "200 OK"))          # to stderr
GET /shop/7 200 OK  12.4 ms, I/O 3.1 ms: 9 queries, 2 cache calls
[dbshard01] 0.902 ms SELECT …

Text from the application goes into ``rich.text.Text`` objects, never through rich
markup, so a key like ``[bold]`` prints as it is.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from ioprofiler import config
from ioprofiler.analysis import summarize
from ioprofiler.event import CACHE, DB, HTTP, Event
from ioprofiler.findings import find
from ioprofiler.render.request import RequestInfo
from ioprofiler.render.text import finding_lines, summary_lines
from ioprofiler.sql_text import visible
from ioprofiler.words import counted

if TYPE_CHECKING:
    from ioprofiler.trace import Trace

_PALETTE = ("cyan", "magenta", "blue", "yellow", "bright_cyan", "bright_magenta", "bright_blue")
SLOW_MS = config.DEFAULT_SLOW_MS


def target_style(target: str, kind: str = DB) -> str:
    """The same colour for the same target in every request (caches are always green)."""
    if kind == CACHE:
        return "green"
    return _PALETTE[zlib.crc32(target.encode()) % len(_PALETTE)]


def event_text(event: Event, slow_ms: float = SLOW_MS) -> Text:
    duration = event.duration_ms
    line = Text()
    line.append(f"[{visible(event.target)}]", style=target_style(event.target, event.kind))
    timing = "running" if duration is None else f"{duration:.3f} ms"
    slow = duration is not None and duration >= slow_ms
    line.append(f" {timing} ", style="bold yellow" if slow else "dim")
    line.append(event.description(), style="bold red" if event.error else "")
    return line


def trace_renderables(
    trace: Trace, request: RequestInfo | None = None, slow_ms: float = SLOW_MS
) -> list[Text]:
    summary = summarize(trace)
    header = Text()
    if request is not None:
        header.append(f"{visible(request.method)} {visible(request.path)} ", style="bold")
        code = request.status_code or 0
        header.append(request.status, style="bold red" if code >= 500 else "bold green")
        header.append("  ")
    header.append(
        f"{trace.elapsed_ms:.1f} ms, I/O {summary.ms_of():.1f} ms: "
        f"{counted(summary.calls_of(DB), 'query')}, "
        f"{counted(summary.calls_of(CACHE), 'cache call')}"
    )
    if summary.calls_of(HTTP):
        header.append(f", {counted(summary.calls_of(HTTP), 'HTTP call')}")
    if summary.pool_wait_ms:
        header.append(f", pool wait {summary.pool_wait_ms:.1f} ms", style="bold red")
    lines = [header]
    lines.extend(event_text(e, slow_ms) for e in trace.events)
    for text in summary_lines(summary):
        style = "magenta" if text.startswith("repeated") else "dim"
        lines.append(Text(text, style=style))
    for text in finding_lines(find(trace, slow_ms=slow_ms)):
        style = "dim" if text.startswith("    fix:") else "bold red"
        lines.append(Text(text, style=style))
    return lines


def print_trace(
    trace: Trace,
    request: RequestInfo | None = None,
    console: Console | None = None,
    slow_ms: float = SLOW_MS,
) -> None:
    """Print the trace's listing to ``console`` (default: standard error)."""
    console = console or Console(stderr=True, highlight=False)
    for line in trace_renderables(trace, request, slow_ms):
        console.print(line, soft_wrap=True)
