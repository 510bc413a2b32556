"""The OpenTelemetry exporter with the SDK's in-memory exporter, behind OpenTelemetry's own
WSGI middleware: attributes on the server span, the listing as a span event, CLIENT spans
with the database semantic conventions, their parents and times; no SDK, nothing."""

from __future__ import annotations

import pytest
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode
from pymemcache.client.base import Client as PymemcacheClient
from werkzeug.test import Client

import ioprofiler
from ioprofiler.export import OpenTelemetry
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.fleetapp import COUNT, Collect, FleetShop


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def shop(sqlite_shards, memcached):
    app = FleetShop(sqlite_shards, memcached.address)
    app.cache.flush_all()
    return app


def serve(shop, provider, *urls: str, **options):
    """The URLs through OpenTelemetry's WSGI middleware around ioprofiler's; the traces."""
    collect = Collect()
    exporter = OpenTelemetry(tracer_provider=provider, **options)
    app = IOProfilerMiddleware(shop, export=[exporter, collect])
    client = Client(OpenTelemetryMiddleware(app, tracer_provider=provider))
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200
        response.close()
    return [request.trace for request in collect.requests]


def server_span(exporter):
    (span,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    return span


def test_the_io_summary_becomes_attributes_of_the_server_span(shop, spans):
    provider, exporter = spans
    ioprofiler.configure(findings={"n_plus_one_count": 3})  # conftest resets it
    (trace,) = serve(shop, provider, "/listing/7", slow_ms=60_000)  # past any stall
    attributes = server_span(exporter).attributes
    assert attributes["ioprofiler.db.queries"] == 4
    assert attributes["ioprofiler.db.queries.dbshard01"] == 3
    assert attributes["ioprofiler.db.queries.dbshard02"] == 1
    assert attributes["ioprofiler.cache.calls"] == 3
    assert (attributes["ioprofiler.cache.hits"], attributes["ioprofiler.cache.misses"]) == (1, 1)
    assert attributes["ioprofiler.n_plus_one"] == 1  # one statement 3 times on dbshard01
    round_trips = [e for e in trace.events if e.op != "pool_wait"]  # connects, rollbacks too
    io_ms = sum(e.end_ns - e.start_ns for e in round_trips) / 1e6
    assert attributes["ioprofiler.io.time_ms"] == pytest.approx(io_ms, abs=0.002)
    assert "ioprofiler.errors" not in attributes
    assert not server_span(exporter).events  # a request under slow_ms: no listing
    assert [s.kind for s in exporter.get_finished_spans()] == [SpanKind.SERVER]


def test_a_slow_request_carries_its_listing_with_values_and_keys_hidden(shop, spans):
    provider, exporter = spans
    (trace,) = serve(shop, provider, "/listing/5773453", slow_ms=0)
    (event,) = server_span(exporter).events
    assert event.name == "ioprofiler.listing"
    lines = event.attributes["ioprofiler.listing"].splitlines()
    assert len(lines) == len(trace.events) >= 7
    assert lines[0].startswith("[dbshard01] ")
    assert lines[0].endswith("SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?")
    assert any(line.startswith("[memcache] ") and "MISS" in line for line in lines)
    assert "5773453" not in event.attributes["ioprofiler.listing"]  # neither value nor key


def test_errors_are_counted_on_the_server_span(shop, spans):
    provider, exporter = spans
    serve(shop, provider, "/cart")
    attributes = server_span(exporter).attributes
    assert attributes["ioprofiler.db.queries"] == 3
    assert attributes["ioprofiler.errors"] == 1


def test_spans_mode_adds_one_client_span_per_call_with_the_semantic_conventions(
    shop, spans, memcached
):
    provider, exporter = spans
    (trace,) = serve(shop, provider, "/listing/7", spans=True)
    server = server_span(exporter)
    clients = sorted(
        (s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT),
        key=lambda s: s.start_time,
    )
    events = [e for e in trace.events if e.op != "pool_wait"]
    assert len(clients) == len(events) >= 7
    for span, event in zip(clients, events, strict=True):
        assert span.parent.span_id == server.context.span_id
        assert span.context.trace_id == server.context.trace_id
        # real times: the call's own duration, inside the server span, in call order
        assert span.end_time - span.start_time == event.end_ns - event.start_ns
        assert server.start_time <= span.start_time <= span.end_time <= server.end_time
    offsets = [span.start_time - clients[0].start_time for span in clients]
    assert offsets == [event.start_ns - events[0].start_ns for event in events]

    (select_span, *_) = [s for s in clients if s.name.startswith("SELECT")]
    select = select_span.attributes
    assert select_span.name == "SELECT dbshard01"
    assert select["db.system.name"] == "sqlite"
    assert select["db.namespace"] == "dbshard01"
    assert select["db.operation.name"] == "SELECT"
    assert select["db.query.text"] == (
        "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?"
    )
    cache = [
        s for s in clients if s.attributes["db.system.name"] == "memcached" and s.name != "CONNECT"
    ]
    assert [s.name for s in cache] == ["get", "set", "get"]
    assert [s.attributes.get("ioprofiler.cache.hit") for s in cache] == [False, None, True]
    host, port = memcached.address
    assert all(s.attributes["server.address"] == host for s in cache)
    assert all(s.attributes["server.port"] == port for s in cache)


def test_a_failed_call_is_an_error_span(shop, spans):
    provider, exporter = spans
    serve(shop, provider, "/cart", spans=True)
    (failed,) = [s for s in exporter.get_finished_spans() if "error.type" in s.attributes]
    assert failed.attributes["error.type"] == "OperationalError"
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["db.query.text"] == "SELECT * FROM no_such_table"


def test_query_values_puts_the_values_in_when_asked(shop, spans):
    provider, exporter = spans
    serve(shop, provider, "/listing/7", spans=True, query_values=True)
    texts = {s.attributes.get("db.query.text") for s in exporter.get_finished_spans()}
    assert "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 7" in texts


def test_without_an_sdk_nothing_is_recorded(shop, spans):
    _, exporter = spans
    otel = OpenTelemetry(spans=True, slow_ms=0)  # the global provider: no SDK configured
    app = IOProfilerMiddleware(shop, export=[otel])
    noop = Client(OpenTelemetryMiddleware(app, tracer_provider=NoOpTracerProvider()))
    assert noop.get("/listing/7").status_code == 200
    bare = Client(app)  # and with no OpenTelemetry middleware at all
    assert bare.get("/cart").status_code == 200
    assert otel.targets._names == {}  # handed the requests, it added nothing up
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    "options, word",
    [({"slow_ms": -1}, "slow_ms"), ({"max_names": 0}, "max_names")],
)
def test_bad_options_are_refused(options, word):
    with pytest.raises(ValueError, match=word):
        OpenTelemetry(**options)


def test_a_database_span_names_the_server_its_connect_reached(spans):
    import sqlalchemy as sa

    from tests.conftest import mysql_or_skip

    mysql_or_skip().close()
    provider, exporter = spans
    engine = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/")
    ioprofiler.label(engine, "mariashard")

    def app(environ, start_response):
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    otel = OpenTelemetry(spans=True, tracer_provider=provider)
    client = Client(
        OpenTelemetryMiddleware(IOProfilerMiddleware(app, export=[otel]), tracer_provider=provider)
    )
    try:
        client.get("/").close()
    finally:
        engine.dispose()
    by_name = {s.name: s.attributes for s in exporter.get_finished_spans()}
    assert by_name["CONNECT mariashard"]["server.address"] == "127.0.0.1"
    select = by_name["SELECT mariashard"]
    assert (select["server.address"], select["server.port"]) == ("127.0.0.1", 3306)
    assert select["db.system.name"] == "mysql"
    assert select["db.namespace"] == "mariashard"


def test_past_max_events_the_span_still_counts_every_query_and_cache_call(
    sqlite_shards, memcached, spans
):
    provider, exporter = spans
    engine = sqlite_shards["dbshard01"]
    cache = PymemcacheClient(memcached.address, default_noreply=False)
    cache.set("bounded:hit:1", b"1")
    cache.set("bounded:hit:2", b"2")

    def app(environ, start_response):
        with engine.connect() as conn:
            for listing_id in range(15):
                conn.execute(COUNT, {"id": listing_id}).scalar_one()
        for key in ("bounded:hit:1", "bounded:hit:2", "bounded:miss:1", "bounded:miss:2"):
            cache.get(key)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    otel = OpenTelemetry(tracer_provider=provider)
    middleware = IOProfilerMiddleware(app, max_events=5, export=[otel])
    Client(OpenTelemetryMiddleware(middleware, tracer_provider=provider)).get("/").close()
    attributes = server_span(exporter).attributes
    assert attributes["ioprofiler.dropped"] > 0  # the trace did stop keeping events
    assert attributes["ioprofiler.db.queries"] == 15
    per_shard = {k: v for k, v in attributes.items() if k.startswith("ioprofiler.db.queries.")}
    assert sum(per_shard.values()) == 15, per_shard
    assert attributes["ioprofiler.cache.calls"] == 4
    assert (attributes["ioprofiler.cache.hits"], attributes["ioprofiler.cache.misses"]) == (2, 2)


def test_the_listing_event_hides_values_written_in_the_statement_too(sqlite_shards, spans):
    provider, exporter = spans
    engine = sqlite_shards["dbshard01"]

    def app(environ, start_response):
        with engine.connect() as conn:
            conn.exec_driver_sql(
                "SELECT count(*) FROM FavoriteListingUser WHERE note = 's3cr3t' AND user_id = 42"
            ).scalar_one()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    otel = OpenTelemetry(spans=True, slow_ms=0, tracer_provider=provider)
    middleware = IOProfilerMiddleware(app, export=[otel])
    Client(OpenTelemetryMiddleware(middleware, tracer_provider=provider)).get("/").close()
    (event,) = server_span(exporter).events
    listing = event.attributes["ioprofiler.listing"]
    assert "s3cr3t" not in listing and "42" not in listing
    assert "WHERE note = ? AND user_id = ?" in listing
    texts = {s.attributes.get("db.query.text") for s in exporter.get_finished_spans()}
    assert "SELECT count(*) FROM FavoriteListingUser WHERE note = ? AND user_id = ?" in texts
