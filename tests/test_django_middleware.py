"""ioprofiler.django.IOProfilerMiddleware in MIDDLEWARE: sync and async views using
SQLAlchemy (sync and aiosqlite) and pymemcache, through Django's test clients (WSGI-style
and ASGI handlers) and a real server thread."""

from __future__ import annotations

import asyncio
import gzip
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import ioprofiler
from ioprofiler.trace import active
from tests.asgi_app import PAGE, QUERY, look_up, serving
from tests.conftest import SHARDS, configure_django
from tests.test_asgi import Collected

pytest.importorskip("django")
configure_django()

from django.http import (  # noqa: E402
    FileResponse,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

PROFILER = "ioprofiler.django.IOProfilerMiddleware"
GZIP = "django.middleware.gzip.GZipMiddleware"
FAR = "10.1.2.3"
world: dict = {}  # the engines and cache of the running test, for the views


def listing(request, listing: int) -> HttpResponse:
    look_up(world["cache"], listing)
    with world["engines"]["dbshard02"].connect() as conn:
        count = conn.execute(sa.text(QUERY), {"id": listing}).scalar_one()
    return HttpResponse(PAGE.format(count))


async def async_listing(request, listing: int) -> HttpResponse:
    async def favorites(shard: str) -> int:
        async with world["aengines"][shard].connect() as conn:
            return (await conn.execute(sa.text(QUERY), {"id": listing})).scalar_one()

    counts = await asyncio.gather(favorites("dbshard01"), favorites("dbshard04"))
    return HttpResponse(PAGE.format(sum(counts)))


def api(request, listing: int) -> JsonResponse:
    with world["engines"]["dbshard03"].connect() as conn:
        return JsonResponse(
            {"favorites": conn.execute(sa.text(QUERY), {"id": listing}).scalar_one()}
        )


def long_page(request, number: int) -> HttpResponse:  # long enough for GZipMiddleware
    return HttpResponse(long_html(listing(request, number).content.decode()))


def long_html(page: str) -> str:
    return page.replace("<body>", "<body>" + "<p>filler</p>" * 30)


def favorites_of(shard: str, listing: int) -> int:
    with world["engines"][shard].connect() as conn:
        return conn.execute(sa.text(QUERY), {"id": listing}).scalar_one()


def export(request, first: int) -> StreamingHttpResponse:
    """A CSV export: one query per row, run while the server reads the body."""

    def rows():
        yield "listing,favorites\n"
        for listing in range(first, first + 3):
            yield f"{listing},{favorites_of('dbshard03', listing)}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")


def broken_export(request, first: int) -> StreamingHttpResponse:
    """An export that fails after its first row, when the status line has gone out."""

    def rows():
        yield f"{first},{favorites_of('dbshard03', first)}\n"
        raise RuntimeError("the export failed half way")

    return StreamingHttpResponse(rows(), content_type="text/csv")


async def async_export(request, first: int) -> StreamingHttpResponse:
    async def rows():
        yield "listing,favorites\n"
        for listing in range(first, first + 3):
            async with world["aengines"]["dbshard04"].connect() as conn:
                count = (await conn.execute(sa.text(QUERY), {"id": listing})).scalar_one()
            yield f"{listing},{count}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")


def download(request) -> FileResponse:
    favorites_of("dbshard01", 5773453)
    return FileResponse(open(__file__, "rb"))  # noqa: SIM115 - the response closes it


urlpatterns = [
    path("export/<int:first>", export),
    path("async-export/<int:first>", async_export),
    path("broken-export/<int:first>", broken_export),
    path("download", download),
    path("long/<int:number>", long_page),
    path("listing/<int:listing>", listing),
    path("async/<int:listing>", async_listing),
    path("api/<int:listing>", api),
]


@pytest.fixture
def shop(sqlite_shards, tmp_path, memcached):
    aengines = {
        name: create_async_engine(f"sqlite+aiosqlite:///{tmp_path / name}.db", poolclass=NullPool)
        for name in SHARDS
    }
    for name in SHARDS:
        ioprofiler.label(sqlite_shards[name], name)
        ioprofiler.label(aengines[name], name)
    world.update(engines=sqlite_shards, aengines=aengines, cache=memcached.address)
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[PROFILER], IOPROFILER={}):
        yield
    world.clear()


def executed(body: bytes) -> list[tuple[str, object]]:
    return [(e["target"], e["params"]) for e in json.loads(body)["events"] if e["op"] == "execute"]


def test_every_mode_with_a_sync_view(shop):
    http = Client()
    plain = http.get("/listing/5773453")
    panel = http.get("/listing/5773453?ioprofiler=1")
    text = http.get("/listing/5773453?ioprofiler=text")
    as_json = http.get("/listing/5773453?ioprofiler=json")
    api_json = http.get("/api/5773453?ioprofiler=1")
    assert plain.content.decode() == PAGE.format(2) and not plain.has_header("Server-Timing")
    html = panel.content.decode()
    assert html.index('id="ioprofiler-panel"') < html.index("</body>")
    assert panel["Content-Length"] == str(len(panel.content))
    assert "db;dur=" in panel["Server-Timing"] and panel["Cache-Control"] == "no-store"
    assert "[dbshard02]" in text.content.decode() and "Cache MISS" in text.content.decode()
    assert text["Content-Type"] == "text/plain; charset=utf-8"
    assert executed(as_json.content) == [("dbshard02", [5773453])]
    assert api_json.json() == {"favorites": 3} and "dbshard03" in api_json["Server-Timing"]


async def test_every_mode_with_async_and_sync_views_under_asgi(shop):
    http = AsyncClient()
    plain = await http.get("/async/5773453")
    panel = await http.get("/async/5773453?ioprofiler=1")
    as_json = await http.get("/async/5773453?ioprofiler=json")
    sync_json = await http.get("/listing/5773453?ioprofiler=json")  # in Django's thread
    assert plain.content.decode() == PAGE.format(5)
    assert 'id="ioprofiler-panel"' in panel.content.decode()
    assert sorted(executed(as_json.content)) == [("dbshard01", [5773453]), ("dbshard04", [5773453])]
    assert executed(sync_json.content) == [("dbshard02", [5773453])]


async def test_concurrent_async_requests_keep_their_own_events(shop):
    http = AsyncClient()
    listings = range(4000, 4020)
    responses = await asyncio.gather(
        *(http.get(f"/async/{n}?ioprofiler=json") for n in listings),
        *(http.get(f"/listing/{n}?ioprofiler=json") for n in listings),
    )
    for n, response in zip([*listings, *listings], responses, strict=True):
        params = [p for _, p in executed(response.content)]
        assert params and all(p == [n] for p in params)


def test_refused_clients_get_exactly_the_unprofiled_response(shop):
    for url in ("/listing/5773453?ioprofiler=1", "/api/1?ioprofiler=json"):
        got = Client(REMOTE_ADDR=FAR).get(url)
        with override_settings(MIDDLEWARE=[]):
            expected = Client(REMOTE_ADDR=FAR).get(url)
        assert got.status_code == expected.status_code
        assert list(got.items()) == list(expected.items())
        assert got.content == expected.content


def test_settings_options_and_route_for_sinks(shop):
    sink = Collected()
    options = {"PARAM": "prof", "EXPORT": [sink], "ALLOW": ioprofiler.access.networks("10.0.0.0/8")}
    with override_settings(IOPROFILER=options):
        far = Client(REMOTE_ADDR=FAR).get("/listing/5773453?prof=text")
        local = Client().get("/listing/5773453?prof=text")
    assert "[dbshard02]" in far.content.decode() and local.content.decode() == PAGE.format(2)
    assert [r.route for r in sink.requests] == ["listing/<int:listing>"] * 2
    assert [r.path for r in sink.requests] == ["/listing/5773453"] * 2


def test_with_sinks_the_request_id_goes_back_in_the_response(shop):
    sink = Collected()
    with override_settings(IOPROFILER={"EXPORT": [sink], "TRUST_REQUEST_ID": False}):
        plain = Client().get("/listing/5773453", headers={"X-Request-Id": "from-client"})
        profiled = Client().get("/listing/5773453?ioprofiler=1")
    ids = [r.request_id for r in sink.requests]
    assert [plain["X-Request-Id"], profiled["X-Request-Id"]] == ids
    assert "from-client" not in ids and len(set(ids)) == 2  # not trusted: new ones


def test_bad_settings_fail_when_the_middleware_loads(shop):
    with override_settings(IOPROFILER={"ALOW": "x"}):
        with pytest.raises(ValueError, match="ALOW is not an ioprofiler option"):
            Client().get("/listing/1")


def test_inside_gzip_it_sees_plain_html_and_outside_it_passes_through(shop):
    gzipped = {"HTTP_ACCEPT_ENCODING": "gzip"}
    with override_settings(MIDDLEWARE=[GZIP, PROFILER]):
        inside = Client().get("/long/5773453?ioprofiler=1", **gzipped)
    with override_settings(MIDDLEWARE=[PROFILER, GZIP]):
        outside = Client().get("/long/5773453?ioprofiler=1", **gzipped)
    assert inside["Content-Encoding"] == outside["Content-Encoding"] == "gzip"
    assert 'id="ioprofiler-panel"' in gzip.decompress(inside.content).decode()
    assert gzip.decompress(outside.content).decode() == long_html(PAGE.format(2))
    assert "db;dur=" in outside["Server-Timing"]


def test_real_server_thread_concurrent_requests(shop):
    from django.core.wsgi import get_wsgi_application

    with serving(get_wsgi_application()) as base, ThreadPoolExecutor(8) as pool:
        urls = [f"{base}/listing/{n}?ioprofiler=json" for n in range(5000, 5030)]
        for n, response in zip(range(5000, 5030), pool.map(httpx.get, urls), strict=True):
            assert executed(response.content) == [("dbshard02", [n])]


def test_a_streamed_body_that_fails_half_way_is_recorded_as_failed(shop):
    from django.core.wsgi import get_wsgi_application

    sink = Collected()
    with override_settings(IOPROFILER={"EXPORT": [sink]}):
        with serving(get_wsgi_application()) as base, httpx.Client() as client:
            with client.stream("GET", f"{base}/broken-export/4000") as sent:
                assert sent.status_code == 200  # the status line went out first
                with pytest.raises(httpx.RemoteProtocolError):
                    sent.read()
    [request] = sink.requests
    assert (request.status, request.error) == (500, "RuntimeError")
    assert request.route == "broken-export/<int:first>"


def streamed_queries(request) -> list[object]:
    return [e.params for e in request.trace.events if e.op == "execute"]


def test_a_streamed_body_s_queries_are_in_its_trace_which_ends_with_the_stream(shop):
    sink = Collected()
    with override_settings(IOPROFILER={"EXPORT": [sink]}):
        response = Client().get("/export/4000?ioprofiler=1")
        assert not response.has_header("Server-Timing")  # sent before the stream's queries
        assert sink.requests == []  # nothing is handed on while the body is still to be read
        body = b"".join(response.streaming_content).decode()
        response.close()
    assert body.splitlines()[1:] == ["4000,0", "4001,0", "4002,0"]
    [request] = sink.requests
    assert streamed_queries(request) == [(4000,), (4001,), (4002,)]
    assert {e.target for e in request.trace.events if e.op == "execute"} == {"dbshard03"}
    assert not request.trace.recording and request.route == "export/<int:first>"
    assert active.get() == ()  # nothing of the request's trace is left open


def test_a_stream_closed_before_its_end_hands_on_what_was_read(shop):
    sink = Collected()
    with override_settings(IOPROFILER={"EXPORT": [sink]}):
        response = Client().get("/export/4000")
        stream = iter(response.streaming_content)
        assert next(stream) == b"listing,favorites\n" and next(stream) == b"4000,0\n"
        response.close()  # the client went away
        response.close()
    [request] = sink.requests
    assert streamed_queries(request) == [(4000,)]


async def test_an_async_streamed_body_s_queries_are_in_its_trace(shop):
    sink = Collected()
    with override_settings(IOPROFILER={"EXPORT": [sink]}):
        response = await AsyncClient().get("/async-export/4000")
        body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert body.splitlines()[1:] == ["4000,0", "4001,0", "4002,0"]
    [request] = sink.requests
    assert streamed_queries(request) == [(4000,), (4001,), (4002,)]
    assert {e.target for e in request.trace.events if e.op == "execute"} == {"dbshard04"}


def test_a_file_response_keeps_its_file_for_the_server(shop):
    from django.test import RequestFactory

    from ioprofiler.django import IOProfilerMiddleware

    sink = Collected()
    with override_settings(IOPROFILER={"EXPORT": [sink]}):
        response = IOProfilerMiddleware(download)(RequestFactory().get("/download"))
    assert response.file_to_stream is not None  # wsgi.file_wrapper can still send it
    [request] = sink.requests  # its trace ended with the view
    assert streamed_queries(request) == [(5773453,)]
    with open(__file__, "rb") as source:
        assert b"".join(response.streaming_content) == source.read()
    response.close()
