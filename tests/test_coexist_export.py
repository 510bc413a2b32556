"""The exporters attached beside OpenTelemetry's own SQLAlchemy and pymemcache
instrumentations, in either install order: their spans and ioprofiler's are both there,
one of each per call, under the same server span, and StatsD counts what was run."""

from __future__ import annotations

import socket

import pytest

from tests.coexist import ORDERS, installed_in_order, require

require("opentelemetry.instrumentation.pymemcache")
require("opentelemetry.instrumentation.sqlalchemy")

import sqlalchemy as sa  # noqa: E402
from opentelemetry.instrumentation.pymemcache import PymemcacheInstrumentor  # noqa: E402
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor  # noqa: E402
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind  # noqa: E402
from werkzeug.test import Client  # noqa: E402

from ioprofiler.export import OpenTelemetry, StatsD  # noqa: E402
from ioprofiler.wsgi import IOProfilerMiddleware  # noqa: E402
from tests.fleetapp import Collect, FleetShop  # noqa: E402

THEIR_DB = "opentelemetry.instrumentation.sqlalchemy"
THEIR_CACHE = "opentelemetry.instrumentation.pymemcache"


@pytest.mark.parametrize("order", ORDERS)
def test_exporters_beside_opentelemetry_instrumentations(order, sqlite_shards, memcached):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    theirs = [SQLAlchemyInstrumentor(), PymemcacheInstrumentor()]
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    FleetShop({}, memcached.address).cache.flush_all()  # before either tool records

    def instrument():
        for instrumentor in theirs:
            instrumentor.instrument(tracer_provider=provider)

    def uninstrument():
        for instrumentor in theirs:
            instrumentor.uninstrument()

    with installed_in_order(order, instrument, uninstrument):
        # engines made now, so that OpenTelemetry's create_engine hook sees them
        engines = {name: sa.create_engine(engine.url) for name, engine in sqlite_shards.items()}
        shop = FleetShop(engines, memcached.address)
        collect = Collect()
        statsd = StatsD("127.0.0.1", receiver.getsockname()[1])
        ours = OpenTelemetry(spans=True, tracer_provider=provider)
        app = IOProfilerMiddleware(shop, export=[ours, statsd, collect])
        client = Client(OpenTelemetryMiddleware(app, tracer_provider=provider))
        for url in ("/listing/7", "/cart"):
            client.get(url).close()
        statsd.close()
        for engine in engines.values():
            engine.dispose()
    datagram = receiver.recv(65536).decode()
    receiver.close()
    provider.shutdown()

    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(servers) == 2
    events = [e for request in collect.requests for e in request.trace.events]
    statements = [e for e in events if e.is_statement]
    cache_calls = [e for e in events if e.kind == "cache" and e.is_call]
    assert len(statements) == 7 and len(cache_calls) == 3

    def scoped(name):
        return sorted(
            (s for s in spans if s.instrumentation_scope.name == name), key=lambda s: s.start_time
        )

    their_statements = [s for s in scoped(THEIR_DB) if "db.statement" in s.attributes]
    assert [s.attributes["db.statement"] for s in their_statements] == [
        e.statement for e in statements
    ]
    assert [s.name for s in scoped(THEIR_CACHE)] == [e.op for e in cache_calls]
    mine = scoped("ioprofiler")
    # one of ours per recorded call, none twice, each under its request's server span
    assert len(mine) == len([e for e in events if e.op != "pool_wait"])
    assert len([s for s in mine if "db.query.text" in s.attributes]) == len(statements)
    server_ids = {s.context.span_id for s in servers}
    assert all(s.parent.span_id in server_ids for s in mine + their_statements)
    listing = next(s for s in servers if s.attributes.get("ioprofiler.db.queries") == 4)
    assert listing.attributes["ioprofiler.db.queries.dbshard01"] == 3
    assert "ioprofiler.listing_show.db.dbshard01.queries:3|c" in datagram.split("\n")
    assert "ioprofiler.cart.db.dbshard03.queries:3|c" in datagram.split("\n")
