"""The message of a failed I/O budget: what was exceeded, what repeated, every call made.

Shown in full, without ``-v`` and without a second run, as django-perf-rec and Django's
``assertNumQueries`` taught: the numbered listing is the evidence.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ioprofiler.render.console import event_text
from ioprofiler.render.text import finding_lines
from ioprofiler.sql_text import visible
from ioprofiler.targets import batch_read_of

if TYPE_CHECKING:
    from ioprofiler.analysis import Repeat
    from ioprofiler.findings import Finding
    from ioprofiler.trace import Trace

WIDTH = 120


class Verdict(Protocol):
    """What the message reads of one checked budget (an :class:`ioprofiler.testing.Verdict`;
    named here by its shape, since a renderer does not import the test API above it)."""

    kind: str
    target: str
    budget: object
    calls: int
    hits: int
    misses: int

    @property
    def ok(self) -> bool: ...


def failure_report(
    verdicts: list[Verdict],
    repeats: list[Repeat],
    trace: Trace,
    color: bool = False,
    findings: list[Finding] | None = None,
) -> str:
    out = io.StringIO()
    console = Console(
        file=out,
        width=WIDTH,
        force_terminal=color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
    )
    failed = [v for v in verdicts if not v.ok]
    headline = "I/O budget exceeded" if failed else "I/O repeated" if repeats else "I/O findings"
    console.print(Text(f"ioprofiler: {headline}", style="bold red"))
    if verdicts:
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        for column in ("kind", "target", "budget", "calls", "hits/misses", ""):
            table.add_column(column, justify="right" if column == "calls" else "left")
        for verdict in verdicts:
            reads = verdict.hits + verdict.misses
            table.add_row(
                verdict.kind,
                Text(visible(verdict.target)),
                str(verdict.budget),
                str(verdict.calls),
                f"{verdict.hits}/{verdict.misses}" if reads else "",
                Text("ok", style="green") if verdict.ok else Text("EXCEEDED", style="bold red"),
            )
        console.print(table)
    if repeats:
        console.print(Text("\nRepeated (no_repeats=True):", style="bold magenta"))
        for repeat in repeats:
            what = repeat.shape
            if repeat.kind == "cache":
                what = f"single-key reads: could be one {batch_read_of(repeat.target)}"
            line = Text(f"  {repeat.count}x on {visible(repeat.target)}: ", style="magenta")
            line.append(what)
            for site in repeat.callsites:
                line.append(f"\n      <- {visible(site)}", style="dim")
            console.print(line, soft_wrap=True)
    events = trace.events
    if findings:
        calls = (e for e in events if e.is_call)  # numbered as the listing below numbers them
        numbers = {id(e): n for n, e in enumerate(calls, start=1)}
        console.print(Text("\nFindings:", style="bold red"))
        for line in finding_lines(findings, numbers)[1:]:
            style = "dim" if line.startswith("    fix:") else "red"
            console.print(Text(line, style=style), soft_wrap=True)
    console.print(Text(f"\nCalls made ({trace.count()}):", style="bold"))
    number = 0
    for event in events:
        # Calls are numbered as the budgets count them; the connects, pool waits and
        # transaction ends between them are shown unnumbered.
        if event.is_call:
            number += 1
            line = Text(f"{number:>4}. ")
        else:
            line = Text("      ")
        line.append_text(event_text(event))
        if event.callsite:
            line.append(f"  <- {visible(event.callsite)}", style="dim")
        console.print(line, soft_wrap=True)
    if trace.dropped:
        console.print(f"  … and {trace.dropped} more, counted but not kept (max_events)")
    if not events and not trace.dropped:
        console.print("  (none)")
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").splitlines())
