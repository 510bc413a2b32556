"""Exporters: sinks that send every request's I/O to the fleet's monitoring.

>>> from ioprofiler.export import OpenTelemetry, StatsD
>>> app = IOProfilerMiddleware(app, export=[StatsD("127.0.0.1", 8125), OpenTelemetry()])

``OpenTelemetry`` needs ``opentelemetry-api`` (``pip install 'ioprofiler[otel]'``); it is
imported on first use, so StatsD alone needs nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ioprofiler.export.statsd import StatsD

if TYPE_CHECKING:
    from ioprofiler.export.otel import OpenTelemetry

__all__ = ["OpenTelemetry", "StatsD"]


def __getattr__(name: str) -> Any:
    if name == "OpenTelemetry":
        from ioprofiler.export.otel import OpenTelemetry

        return OpenTelemetry
    raise AttributeError(f"module 'ioprofiler.export' has no attribute {name!r}")
