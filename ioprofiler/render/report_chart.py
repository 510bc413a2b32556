"""The report's charts: lines over time in hand-written SVG, deploy markers as vertical lines.

>>> chart = Chart("Requests per second", [Series("all", [3.0, 4.5, None, 5.0])])
>>> svg = render_chart(chart, Axis(start=1796605200.0, bucket_s=60.0, buckets=4), markers)

No library and no script: a path per series (a bucket with no value breaks its line), grid
lines with their values, the time along the bottom in the local time of the process that
writes the report, and a transparent band per bucket whose tooltip (``<title>``) gives every
series' value there. Colours come from CSS classes (``c0`` … ``c5``), so the page's
Content-Security-Policy can forbid inline styles. Everything from the log is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 800, 170
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 10, 12, 22
COLOURS = 6  # c0 … c5: series beyond are drawn in c5
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
_DAY = 86400


@dataclass(frozen=True)
class Series:
    """One line: ``values`` per bucket, None where there is nothing to draw."""

    name: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Chart:
    """A chart's title (the unit in it) and its lines; ``digits`` for its values."""

    title: str
    series: Sequence[Series]
    digits: int = 1
    ident: str = ""  # the figure's element id


@dataclass(frozen=True)
class Axis:
    """The buckets along the bottom: ``buckets`` of ``bucket_s`` seconds from ``start``."""

    start: float
    bucket_s: float
    buckets: int

    @property
    def end(self) -> float:
        return self.start + self.bucket_s * max(self.buckets, 1)


@dataclass(frozen=True)
class Marker:
    """``ioprofiler mark``'s line: when, and what it said."""

    ts: float
    text: str
    release: str | None = None

    @property
    def label(self) -> str:
        release = f" (release {self.release})" if self.release else ""
        return f"{local_time(self.ts, seconds=True)} {self.text}{release}"


def local_time(ts: float, seconds: bool = False, date: bool = False) -> str:
    """``14:32`` (``14:32:05`` with ``seconds``, ``12-06 14:32`` with ``date``), local."""
    moment = datetime.fromtimestamp(ts).astimezone()
    spec = "%H:%M:%S" if seconds else "%H:%M"
    return moment.strftime(f"%m-%d {spec}" if date else spec)


def zone() -> str:
    """The local zone the report's times are in: ``UTC``, ``CET``, ``+0530``."""
    moment = datetime.now().astimezone()
    return moment.tzname() or moment.strftime("%z")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power  # pragma: no cover - 10 × power is always enough


def _x(axis: Axis, ts: float) -> float:
    span = axis.end - axis.start
    return _LEFT + (ts - axis.start) / span * (WIDTH - _LEFT - _RIGHT)


def _y(value: float, top: float) -> float:
    return HEIGHT - _BOTTOM - value / top * (HEIGHT - _TOP - _BOTTOM)


def _number(value: float, digits: int) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _time_ticks(axis: Axis) -> tuple[list[float], bool, bool]:
    """Tick times (about six), whether labels need seconds, whether they need the date."""
    span = axis.end - axis.start
    step = next((s for s in _TIME_STEPS if span / s <= 7), _DAY * math.ceil(span / _DAY / 7))
    first = math.ceil(axis.start / step) * step
    ticks = [first + n * step for n in range(int((axis.end - first) // step) + 1)]
    return ticks, step < 60, span > _DAY


def _grid(top: float, digits: int) -> str:
    parts = []
    for n in range(5):
        value = top * n / 4
        y = _y(value, top)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="yl" x="{_LEFT - 4}" y="{y + 4:.1f}">{_number(value, digits)}</text>'
        )
    return "".join(parts)


def _time_axis(axis: Axis) -> str:
    ticks, seconds, date = _time_ticks(axis)
    parts = []
    for ts in ticks:
        x = _x(axis, ts)
        if x < _LEFT + 24 or x > WIDTH - _RIGHT - 20:  # a label there would meet the values'
            continue
        parts.append(
            f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{HEIGHT - _BOTTOM}" '
            f'y2="{HEIGHT - _BOTTOM + 4}"/><text class="xl" x="{x:.1f}" y="{HEIGHT - 6}">'
            f"{local_time(ts, seconds=seconds, date=date)}</text>"
        )
    return "".join(parts)


def _line(axis: Axis, series: Series, top: float, colour: int) -> str:
    """The series as one path (a gap where a bucket has no value); a lone value as a dot."""
    commands, dots, points = [], [], 0
    drawing = False
    values = list(series.values)
    for index, value in enumerate(values):
        if value is None:
            drawing = False
            continue
        points += 1
        x = _x(axis, axis.start + (index + 0.5) * axis.bucket_s)
        y = _y(value, top)
        commands.append(f"{'L' if drawing else 'M'}{x:.1f} {y:.1f}")
        lone = (index == 0 or values[index - 1] is None) and (
            index + 1 == len(values) or values[index + 1] is None
        )
        if lone:
            dots.append(f'<circle class="c{colour}" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>')
        drawing = True
    return (
        f'<path class="line c{colour}" data-series="{escape(series.name)}" '
        f'data-points="{points}" d="{" ".join(commands)}"/>' + "".join(dots)
    )


def _markers(axis: Axis, markers: Sequence[Marker], labelled: bool) -> str:
    parts = []
    for marker in markers:
        if not axis.start <= marker.ts <= axis.end:
            continue
        x = _x(axis, marker.ts)
        parts.append(
            f'<g class="marker"><line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP - 8}" '
            f'y2="{HEIGHT - _BOTTOM}"/><title>{escape(marker.label)}</title>'
        )
        if labelled:
            anchor = "end" if x > WIDTH * 0.7 else "start"
            shift = -4 if anchor == "end" else 4
            parts.append(
                f'<text class="ml" x="{x + shift:.1f}" y="{_TOP}" text-anchor="{anchor}">'
                f"{escape(marker.text[:60])}</text>"
            )
        parts.append("</g>")
    return "".join(parts)


def _bands(axis: Axis, chart: Chart) -> str:
    """A transparent band per bucket whose tooltip gives every series' value there."""
    width = (WIDTH - _LEFT - _RIGHT) / max(axis.buckets, 1)
    parts = []
    seconds = axis.bucket_s < 60
    for index in range(axis.buckets):
        shown = [
            f"{s.name}: {_number(s.values[index], chart.digits)}"  # type: ignore[arg-type]
            for s in chart.series
            if index < len(s.values) and s.values[index] is not None
        ]
        if not shown:
            continue
        when = local_time(axis.start + index * axis.bucket_s, seconds=seconds)
        parts.append(
            f'<rect class="band" x="{_LEFT + index * width:.1f}" y="{_TOP}" '
            f'width="{width:.1f}" height="{HEIGHT - _TOP - _BOTTOM}"><title>'
            f"{escape(when)}\n{escape(chr(10).join(shown))}</title></rect>"
        )
    return "".join(parts)


def render_chart(
    chart: Chart, axis: Axis, markers: Sequence[Marker] = (), label_markers: bool = True
) -> str:
    """A ``<figure>``: the chart's title and legend, then its SVG."""
    values = [v for s in chart.series for v in s.values if v is not None]
    top = nice_ceiling(max(values, default=0.0))
    legend = "".join(
        f'<li><i class="c{min(n, COLOURS - 1)}"></i>{escape(s.name)}</li>'
        for n, s in enumerate(chart.series)
    )
    lines = "".join(
        _line(axis, series, top, min(n, COLOURS - 1)) for n, series in enumerate(chart.series)
    )
    ident = f' id="{escape(chart.ident)}"' if chart.ident else ""
    empty = "" if values else '<p class="none">nothing counted in this time</p>'
    return (
        f'<figure class="chart"{ident}><figcaption>{escape(chart.title)}'
        f'<ul class="legend">{legend}</ul></figcaption>{empty}'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(chart.title)}">'
        f"{_grid(top, chart.digits)}{_time_axis(axis)}{lines}"
        f"{_markers(axis, markers, label_markers)}{_bands(axis, chart)}</svg></figure>"
    )
