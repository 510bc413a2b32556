"""OpenTelemetry's pymemcache and SQLAlchemy instrumentations beside ioprofiler, in either
install order: both record every call, and uninstalling both restores everything."""

from __future__ import annotations

import pytest

from tests.coexist import ORDERS, STATEMENTS, installed_in_order, require, run_statements

require("opentelemetry.instrumentation.pymemcache")
require("opentelemetry.instrumentation.sqlalchemy")

from opentelemetry.instrumentation.pymemcache import PymemcacheInstrumentor  # noqa: E402
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from pymemcache.client.base import Client  # noqa: E402

import ioprofiler  # noqa: E402
from ioprofiler.event import CONNECTION_OPS  # noqa: E402


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    exporter.provider = provider
    yield exporter
    provider.shutdown()


def opentelemetry(instrumentor, spans, order):
    """ioprofiler and an OpenTelemetry instrumentor reporting to ``spans``, in ``order``."""
    return installed_in_order(
        order,
        lambda: instrumentor.instrument(tracer_provider=spans.provider),
        instrumentor.uninstrument,
    )


def memcache_calls(client):
    client.set("coexist", b"1")
    assert client.get("coexist") == b"1"
    assert client.get_many(["coexist", "absent"]) == {"coexist": b"1"}


@pytest.mark.parametrize("order", ORDERS)
def test_pymemcache_both_record_in_either_order(order, spans, memcached):
    with opentelemetry(PymemcacheInstrumentor(), spans, order) as stack:
        client = Client(memcached.address)
        with ioprofiler.profile() as trace:
            memcache_calls(client)
        assert [span.name for span in spans.get_finished_spans()] == ["set", "get", "get_many"]
        assert [(e.op, e.hit) for e in trace.events if e.op not in CONNECTION_OPS] == [
            ("set", None),
            ("get", True),
            ("get_many", False),
        ]

        left = stack.remove_last()
        spans.clear()
        with ioprofiler.profile() as trace:
            memcache_calls(client)
        opentelemetry_spans = [span.name for span in spans.get_finished_spans()]
        if left == "ioprofiler":
            assert (trace.count(), opentelemetry_spans) == (3, [])
        else:
            assert (trace.count(), opentelemetry_spans) == (0, ["set", "get", "get_many"])


@pytest.mark.parametrize("order", ORDERS)
def test_sqlalchemy_both_record_in_either_order(order, spans, tmp_path):
    with opentelemetry(SQLAlchemyInstrumentor(), spans, order):
        executed = run_statements(tmp_path / "dbshard01.db")
    statements = [
        span.attributes["db.statement"]
        for span in spans.get_finished_spans()
        if "db.statement" in span.attributes
    ]
    assert statements == [e.statement for e in executed] == STATEMENTS
