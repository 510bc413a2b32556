"""One self-contained HTML file for an incident: an overview first, then the kept requests.

>>> html = render_report(kept, "03:12 outage", overview=overview, regressions=lines)

The overview: charts over time of the request rate, p95 and I/O per request by target (from
the recorders' summary records: every request), deploy markers as vertical lines on each,
the top causes of the kept requests, statement shapes by total time, and, when given (two
releases in the log), the regressions ``ioprofiler diff`` names. Then the kept requests,
slowest first, one compact line each with its cause; a click opens one in place (a dialog;
back, Escape or the browser's back return to the list), its address ``#r12`` links to it.

No network: styles, script, charts (hand-written SVG) and every request are in the file,
and its Content-Security-Policy allows only its own style and script, by hash. Everything
from the log is escaped.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from ioprofiler.cause import cause_of
from ioprofiler.render.html import render_listing
from ioprofiler.render.report_assets import SCRIPT, STYLE
from ioprofiler.render.report_chart import Axis, Chart, Marker, local_time, render_chart, zone
from ioprofiler.stored import load
from ioprofiler.words import counted

__all__ = ["Axis", "Chart", "Marker", "Overview", "Shape", "TopCause", "render_report"]

SHORT_ID = 8  # characters of an id in the list (more where two would look the same)


@dataclass(frozen=True)
class TopCause:
    """A cause of kept requests (its parts: title, target, shape, callsite), how many
    requests it was the cause of, their time in it, and the slowest one's id."""

    parts: tuple[str, ...]
    requests: int
    total_ms: float
    share: float
    example: str | None = None


@dataclass(frozen=True)
class Shape:
    """A statement shape over every request (summary records): calls, time, per request."""

    shape: str
    calls: int
    total_ms: float
    per_request: float | None


@dataclass(frozen=True)
class Overview:
    """What the report shows above the list; each part may be empty."""

    charts: Sequence[Chart] = ()
    axis: Axis | None = None
    markers: Sequence[Marker] = ()
    facts: Sequence[str] = ()  # sentences: what was counted, the releases
    causes: Sequence[TopCause] = ()
    shapes: Sequence[Shape] = ()
    notes: Sequence[str] = ()  # why a part is missing


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def _policy() -> str:
    return (
        f"default-src 'none'; style-src {_hash(STYLE)}; script-src {_hash(SCRIPT)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )


def short_ids(ids: Sequence[str]) -> dict[str, str]:
    """Each id by its first :data:`SHORT_ID` characters, or as many more as it takes to
    tell it from the others."""
    length = SHORT_ID
    while length < max((len(i) for i in ids), default=0):
        if len({i[:length] for i in set(ids)}) == len(set(ids)):
            break
        length += 4
    return {i: i[:length] for i in ids}


def _ms(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else ""


def _td(shown: str, css: str = "", value: Any = None, title: str | None = None) -> str:
    attrs = f' class="{css}"' if css else ""
    if value is not None:
        attrs += f' data-v="{escape(str(value))}"'
    if title is not None:
        attrs += f' title="{escape(title)}"'
    return f"<td{attrs}>{escape(shown)}</td>"


_COLUMNS = (  # (heading, col class, numeric)
    ("time", "t", False),
    ("id", "id", False),
    ("request", "p", False),
    ("status", "st", True),
    ("ms", "ms", True),
    ("I/O ms", "io", True),
    ("calls", "calls", True),
    ("cause", "c", False),
)


def _row(
    ref: str, record: dict[str, Any], short: str, cause: str, whole_cause: str, date: bool
) -> str:
    status = record.get("status", "")
    request = f"{record.get('method', '')} {record.get('path', '')}"
    route = record.get("route")
    ts = record.get("ts", 0)
    cells = [
        _td(local_time(ts, seconds=True, date=date), "t", ts, str(record.get("time", ""))),
        f'<td class="id" data-v="{escape(str(record.get("id", "")))}">'
        f'<a href="#{ref}" title="{escape(str(record.get("id", "")))}">{escape(short)}</a></td>',
        _td(request, "p", request, f"{request}  (route {route})" if route else request),
        _td(str(status), "n st", status),
        _td(_ms(record.get("duration_ms")), "n", record.get("duration_ms", 0)),
        _td(_ms(record.get("io_ms")), "n", record.get("io_ms", 0)),
        _td(str(record.get("calls", "")), "n", record.get("calls", 0)),
        _td(cause, "c", cause, whole_cause),
    ]
    css = ' class="e5"' if str(status).startswith("5") else ""
    return f'<tr id="row-{ref}" data-r="{ref}"{css}>{"".join(cells)}</tr>'


def _facts(record: dict[str, Any]) -> str:
    reasons = ", ".join(record.get("reasons") or [record.get("reason", "")])
    rows = [
        ("time", f"{local_time(record.get('ts', 0), seconds=True, date=True)} {zone()}"),
        ("id", str(record.get("id", ""))),
        ("request", f"{record.get('method', '')} {record.get('path', '')}"),
        ("route", str(record.get("route") or "")),
        ("status", str(record.get("status", ""))),
        (
            "time taken",
            f"{_ms(record.get('duration_ms'))} ms, I/O {_ms(record.get('io_ms'))} ms, "
            f"{counted(record.get('calls', 0), 'call')}",
        ),
        ("release", str(record.get("release") or "")),
        ("kept", reasons),
        ("process", f"{record.get('host', '')} pid {record.get('pid', '')}"),
    ]
    return (
        "<dl>"
        + "".join(f"<dt>{name}</dt><dd>{escape(value)}</dd>" for name, value in rows if value)
        + "</dl>"
    )


def _template(ref: str, record: dict[str, Any], cause: str, slow_ms: float) -> str:
    trace, _ = load(record)
    title = f"{record.get('method', '')} {record.get('path', '')} → {record.get('status', '')}"
    return (
        f'<template id="{ref}" data-title="{escape(title)}" '
        f'data-total="{trace.elapsed_ms:.3f}"><div class="req">'
        f'<p class="cause">cause: {escape(cause)}</p>{_facts(record)}'
        f'<div class="iop">{render_listing(trace, slow_ms=slow_ms, values=False)}</div>'
        "</div></template>"
    )


def _overview(overview: Overview, regressions: Sequence[str], refs: dict[str, str]) -> str:
    parts = ['<section id="overview"><h2>Overview</h2>']
    parts += [f'<p class="facts">{escape(fact)}</p>' for fact in overview.facts]
    parts += [f'<p class="none">{escape(note)}</p>' for note in overview.notes]
    if overview.axis is not None and overview.charts:
        parts.append('<div class="charts">')
        parts += [
            render_chart(chart, overview.axis, overview.markers, label_markers=True)
            for chart in overview.charts
        ]
        parts.append("</div>")
    if overview.markers:
        parts.append(
            '<ul class="markers">'
            + "".join(f"<li>marker {escape(m.label)}</li>" for m in overview.markers)
            + "</ul>"
        )
    parts.append("</section>")
    if regressions:
        parts.append(
            '<section id="regressions"><h2>Regressions</h2><ol class="regressions">'
            + "".join(f"<li>{escape(line)}</li>" for line in regressions)
            + "</ol></section>"
        )
    parts.append(_causes(overview, refs))
    return "".join(parts)


def _causes(overview: Overview, refs: dict[str, str]) -> str:
    if not overview.causes and not overview.shapes:
        return ""
    parts = ['<section id="causes"><h2>Top causes</h2>']
    if overview.causes:
        rows = []
        for cause in overview.causes:
            ref = refs.get(cause.example or "")
            link = f'<a href="#{ref}">slowest</a>' if ref else ""
            rows.append(
                f'<tr><td class="k">{_cause_cell(cause.parts)}</td>'
                f'<td class="n">{cause.requests}</td>'
                f'<td class="n">{cause.total_ms:.1f}</td><td class="n">{cause.share:.1%}</td>'
                f"<td>{link}</td></tr>"
            )
        parts.append(
            '<p class="facts">Of the kept requests (slow, failing or sampled: not every '
            "request), by each one's cause, the most time first.</p>"
            '<table class="causes"><thead><tr><th>cause</th><th class="n">requests</th>'
            '<th class="n">ms in it</th><th class="n">share</th><th></th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    if overview.shapes:
        rows = [
            f'<tr><td class="k">{escape(s.shape)}</td><td class="n">{s.calls}</td>'
            f'<td class="n">{s.total_ms:.1f}</td><td class="n">'
            f"{'' if s.per_request is None else f'{s.per_request:.2f}'}</td></tr>"
            for s in overview.shapes
        ]
        parts.append(
            "<h3>Statement shapes by total time, every request</h3>"
            '<table class="shapes"><thead><tr><th>shape</th><th class="n">calls</th>'
            '<th class="n">ms</th><th class="n">per request</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    parts.append("</section>")
    return "".join(parts)


def _cause_cell(parts: tuple[str, ...]) -> str:
    """``<b>N+1</b> SELECT … on dbshard01 ← views.py:88 in listing``"""
    title, target, what, callsite = (*parts, "", "", "")[:4]
    text = f"<b>{escape(title)}</b>"
    if what:
        text += f" {escape(what)}"
    if target:
        text += f" <i>on</i> {escape(target)}"
    if callsite:
        text += f' <span class="at">← {escape(callsite)}</span>'
    return text


def render_report(
    records: Iterable[dict[str, Any]],
    title: str = "ioprofiler report",
    slow_ms: float = 100.0,
    *,
    overview: Overview | None = None,
    regressions: Sequence[str] = (),
) -> str:
    """The HTML document: ``overview`` (charts, markers, causes), ``regressions`` (lines
    ``ioprofiler diff`` wrote), then ``records`` (kept requests from the log), slowest first."""
    chosen = sorted(records, key=lambda r: -(r.get("duration_ms") or 0))
    shorts = short_ids([str(r.get("id", "")) for r in chosen])
    refs: dict[str, str] = {}
    rows, templates = [], []
    days = {datetime.fromtimestamp(r.get("ts", 0)).astimezone().date() for r in chosen}
    for number, record in enumerate(chosen, start=1):
        ref = f"r{number}"
        refs.setdefault(str(record.get("id", "")), ref)
        cause = cause_of(record)
        short = shorts[str(record.get("id", ""))]
        rows.append(_row(ref, record, short, cause.short(), cause.line(), date=len(days) > 1))
        templates.append(_template(ref, record, cause.line(), slow_ms))
    cols = "".join(f'<col class="{css}">' for _, css, _ in _COLUMNS)
    heads = "".join(
        f'<th{" class=n" if numeric else ""}><button type="button"'
        f"{f' title={chr(34)}local time, {escape(zone())}{chr(34)}' if css == 't' else ''}>"
        f"{escape(name)}</button></th>"
        for name, css, numeric in _COLUMNS
    )
    listed = (
        '<section id="requests"><h2>Kept requests, slowest first</h2>'
        + (
            f'<p class="facts">{counted(len(rows), "request")}; click one to open it here, '
            "a column to sort by it.</p>"
            if rows
            else '<p class="none">No kept request in this log and time.</p>'
        )
        + f'<table class="requests"><colgroup>{cols}</colgroup><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_policy()}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<header class="top"><h1>{escape(title)}</h1></header><main>'
        f"{_overview(overview or Overview(), regressions, refs)}{listed}</main>"
        '<dialog id="request" aria-labelledby="request-title"><div class="bar">'
        '<button type="button" id="back">← all requests</button>'
        '<h2 id="request-title"></h2></div><div id="request-body"></div></dialog>'
        f"{''.join(templates)}<script>{SCRIPT}</script></body></html>"
    )
