"""The ASGI middleware around FastAPI and bare Starlette: every mode, under uvicorn on a
loopback port and through httpx's ASGITransport, with real SQLite shards (async and sync
engines), memcached and MariaDB."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import ioprofiler
from ioprofiler.asgi import IOProfilerMiddleware
from ioprofiler.sinks import FinishedRequest
from tests.asgi_app import PAGE, label_all, make_app, serving_asgi
from tests.conftest import SHARDS, mysql_or_skip

LOCAL = ("127.0.0.1", 51000)
FAR = ("10.1.2.3", 51000)


class Collected:
    """A sink keeping what it gets, for the tests to read."""

    def __init__(self) -> None:
        self.requests: list[FinishedRequest] = []

    def handle(self, request: FinishedRequest) -> None:
        self.requests.append(request)

    def close(self) -> None:
        pass


@pytest.fixture
def shop(sqlite_shards, tmp_path, memcached):
    aengines = {
        name: create_async_engine(f"sqlite+aiosqlite:///{tmp_path / name}.db", poolclass=NullPool)
        for name in SHARDS
    }
    label_all(aengines)
    label_all(sqlite_shards)
    done: list[int] = []
    app = make_app(aengines, sqlite_shards, memcached.address, done)
    app.state.background_done = done
    yield app
    for engine in aengines.values():
        engine.sync_engine.dispose()


def client(app, peer=LOCAL) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://shop.test")


def events(response: httpx.Response) -> list[dict]:
    return json.loads(response.content)["events"]


def statements(response: httpx.Response) -> list[tuple[str, object]]:
    return [(e["target"], e["params"]) for e in events(response) if e["op"] == "execute"]


async def test_every_mode_on_an_async_route(shop):
    app = IOProfilerMiddleware(shop)
    async with client(app) as http:
        plain = await http.get("/listing/5773453")
        panel = await http.get("/listing/5773453?ioprofiler=1")
        text = await http.get("/listing/5773453?ioprofiler=text")
        as_json = await http.get("/listing/5773453?ioprofiler=json")
    assert plain.text == PAGE.format(2) and "server-timing" not in plain.headers
    html = panel.text
    assert html.startswith("<html><head><title>shop</title></head><body><p>2 favorites</p>")
    assert html.index('<div id="ioprofiler-panel"') < html.index("</body>")
    assert "dbshard02" in html and "FavoriteListingUser" in html
    assert panel.headers["content-length"] == str(len(panel.content))
    assert "db;dur=" in panel.headers["server-timing"]
    assert panel.headers["cache-control"] == "no-store"
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.text.startswith("200 OK\nGET /listing/5773453?ioprofiler=text\n")
    assert "[dbshard02]" in text.text and "5773453" in text.text
    assert statements(as_json) == [("dbshard02", [5773453])]
    assert json.loads(as_json.content)["request"]["status"] == "200 OK"


async def test_json_route_unchanged_with_server_timing_and_shown_in_json_mode(shop):
    app = IOProfilerMiddleware(shop)
    async with client(app) as http:
        plain = await http.get("/api/5773453")
        asked = await http.get("/api/5773453?ioprofiler=1")
        as_json = await http.get("/api/5773453?ioprofiler=json")
    assert asked.content == plain.content == b'{"favorites":2}'
    assert "db;dur=" in asked.headers["server-timing"]
    assert statements(as_json) == [("dbshard02", [5773453])]


async def test_refused_client_gets_exactly_the_unprofiled_response(shop):
    bare, wrapped = client(shop, FAR), client(IOProfilerMiddleware(shop), FAR)
    async with bare, wrapped:
        for url in ("/listing/5773453?ioprofiler=1", "/api/1?ioprofiler=json"):
            expected, got = await bare.get(url), await wrapped.get(url)
            assert got.status_code == expected.status_code
            assert got.headers.raw == expected.headers.raw
            assert got.content == expected.content


async def test_refused_and_allowed_by_token_header_and_cookie(shop):
    secret = "s3cret-s3cret-s3cret"
    app = IOProfilerMiddleware(shop, allow=ioprofiler.access.token(secret))
    async with client(app, FAR) as http:
        refused = await http.get("/listing/1?ioprofiler=text")
        by_header = await http.get(
            "/listing/1?ioprofiler=text", headers={"X-IOProfiler-Token": secret}
        )
        by_cookie = await http.get(
            "/listing/1?ioprofiler=text", headers={"Cookie": f"a=b; ioprofiler_token={secret}"}
        )
    assert refused.text == PAGE.format(0)
    assert "[dbshard02]" in by_header.text and "[dbshard02]" in by_cookie.text


async def test_sync_route_in_the_thread_pool_is_recorded(shop, memcached):
    app = IOProfilerMiddleware(shop)
    async with client(app) as http:
        response = await http.get("/sync/5773453?ioprofiler=json")
    kinds = [(e["kind"], e["target"]) for e in events(response) if e["op"] in ("execute", "get")]
    assert kinds == [("cache", kinds[0][1]), ("db", "dbshard03")]
    assert kinds[0][1].startswith("memcache")


async def test_tasks_the_request_starts_are_recorded(shop):
    app = IOProfilerMiddleware(shop)
    async with client(app) as http:
        response = await http.get("/gather/5773453?ioprofiler=json")
    assert sorted(statements(response)) == [
        ("dbshard01", [5773453]),
        ("dbshard04", [5773453]),
    ]


async def test_streaming_response_records_queries_made_while_streaming(shop):
    app = IOProfilerMiddleware(shop)
    async with client(app) as http:
        plain = await http.get("/stream/5773453")
        text = await http.get("/stream/5773453?ioprofiler=text")
        panel = await http.get("/stream/5773453?ioprofiler=1")
    assert plain.text == (
        "<html><body><ul><li>dbshard01: 1</li><li>dbshard02: 2</li>"
        "<li>dbshard03: 3</li></ul></body></html>"
    )
    for shard in ("dbshard01", "dbshard02", "dbshard03"):
        assert f"[{shard}]" in text.text
    assert panel.text.startswith(plain.text[: -len("</ul></body></html>")])
    assert panel.text.index('id="ioprofiler-panel"') < panel.text.index("</body>")


async def test_a_body_past_max_inject_bytes_streams_through_unchanged(shop):
    app = IOProfilerMiddleware(shop, max_inject_bytes=40)
    async with client(app) as http:
        plain = await http.get("/stream/5773453")
        asked = await http.get("/stream/5773453?ioprofiler=1")
    assert asked.content == plain.content
    assert "server-timing" not in asked.headers  # it would not count the stream's queries


async def test_background_task_runs_after_the_trace_closed(shop):
    sink = Collected()
    app = IOProfilerMiddleware(shop, export=[sink])
    async with client(app) as http:
        text = await http.get("/background/5773453?ioprofiler=text")
        plain = await http.get("/background/5773453")
    assert shop.state.background_done == [4, 4]
    assert "[dbshard01]" in text.text and "[dbshard04]" not in text.text
    assert plain.text == "1 favorites"
    assert [r.route for r in sink.requests] == ["/background/{listing}"] * 2
    for request in sink.requests:
        assert [e.target for e in request.trace.events if e.op == "execute"] == ["dbshard01"]
        assert request.status == 200 and request.path == "/background/5773453"


OUTER = contextvars.ContextVar("outer_span", default=None)


async def test_sinks_get_every_request_and_responses_stay_unchanged(shop):
    sink = Collected()
    app = IOProfilerMiddleware(shop, record=sink)
    OUTER.set("span-1")  # what a server-side OpenTelemetry middleware outside would set
    async with client(app) as http:
        plain = await http.get("/listing/5773453", headers={"X-Request-Id": "abc-123"})
        missing = await http.get("/nowhere")
    assert plain.text == PAGE.format(2) and "server-timing" not in plain.headers
    assert missing.status_code == 404
    first, second = sink.requests
    assert (first.route, first.status, first.request_id) == ("/listing/{listing}", 200, "abc-123")
    assert [e.target for e in first.trace.events if e.op == "execute"] == ["dbshard02"]
    assert (second.route, second.status, second.path) == (None, 404, "/nowhere")
    assert first.context is not None and first.context.run(OUTER.get) == "span-1"


async def test_concurrent_requests_keep_their_own_events(shop):
    app = IOProfilerMiddleware(shop)
    listings = list(range(1000, 1030))
    async with client(app) as http:
        responses = await asyncio.gather(
            *(http.get(f"/gather/{n}?ioprofiler=json") for n in listings),
            *(http.get(f"/sync/{n}?ioprofiler=json") for n in listings),
        )
    for listing, response in zip(listings * 2, responses, strict=True):
        params = [e["params"] for e in events(response) if e["op"] == "execute"]
        assert params and all(p == [listing] for p in params)


async def test_strip_param_hides_the_parameter_from_the_application():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["query_string"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with client(IOProfilerMiddleware(app, strip_param=True)) as http:
        await http.get("/?a=1&ioprofiler=text&b=%20")
    assert seen == [b"a=1&b=%20"]


async def test_lifespan_and_websocket_pass_through_untouched():
    calls = []

    async def app(scope, receive, send):
        calls.append((scope, receive, send))

    middleware = IOProfilerMiddleware(app)

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        pass

    for kind in ("lifespan", "websocket"):
        scope = {"type": kind, "query_string": b"ioprofiler=1", "client": LOCAL}
        await middleware(scope, receive, send)
        assert calls[-1][0] is scope and calls[-1][1] is receive and calls[-1][2] is send
        assert "ioprofiler.trace" not in scope


async def test_client_disconnect_while_streaming_closes_the_trace_and_reaches_sinks():
    sink = Collected()
    sent = []

    async def app(scope, receive, send):
        headers = [(b"content-type", b"text/html")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"<p>part", "more_body": True})
        message = await receive()
        assert message["type"] == "http.disconnect"

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/feed",
        "query_string": b"ioprofiler=1",
        "headers": [],
        "client": LOCAL,
    }
    await IOProfilerMiddleware(app, export=[sink])(scope, receive, send)
    (request,) = sink.requests
    assert not request.trace.recording and request.status == 200
    assert sent == []  # the client is gone: nothing half-changed was sent


async def test_an_application_error_reaches_the_server_and_the_sinks():
    sink = Collected()

    async def app(scope, receive, send):
        raise RuntimeError("boom")

    async with client(IOProfilerMiddleware(app, export=[sink])) as http:
        with pytest.raises(RuntimeError, match="boom"):
            await http.get("/?ioprofiler=1")
    assert sink.requests[0].status == 500 and not sink.requests[0].trace.recording


def test_bad_options_fail_at_construction():
    with pytest.raises(TypeError, match="ASGI application"):
        IOProfilerMiddleware(None)
    with pytest.raises(ValueError, match="param"):
        IOProfilerMiddleware(lambda *a: None, param="a b")


async def test_bare_starlette_every_mode(sqlite_shards):
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    label_all(sqlite_shards)

    def page(request):
        with sqlite_shards["dbshard03"].connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM FavoriteListingUser")).scalar_one()
        return HTMLResponse(PAGE.format(count))

    app = Starlette(routes=[Route("/page", page)], middleware=[Middleware(IOProfilerMiddleware)])
    async with client(app) as http:
        plain = await http.get("/page")
        panel = await http.get("/page?ioprofiler=1")
        text = await http.get("/page?ioprofiler=text")
        as_json = await http.get("/page?ioprofiler=json")
        refused = await client(app, FAR).get("/page?ioprofiler=1")
    assert plain.text == PAGE.format(3) == refused.text
    assert 'id="ioprofiler-panel"' in panel.text and "dbshard03" in panel.text
    assert "[dbshard03]" in text.text
    assert [e["target"] for e in events(as_json) if e["op"] == "execute"] == ["dbshard03"]


@pytest.fixture
def served(shop) -> Iterator[str]:
    """The FastAPI shop under uvicorn on a loopback port."""
    with serving_asgi(IOProfilerMiddleware(shop)) as base:
        yield base


def test_under_uvicorn_every_route_and_mode(served, shop):
    with httpx.Client(base_url=served) as http:
        plain = http.get("/listing/5773453")
        panel = http.get("/listing/5773453?ioprofiler=1")
        sync = http.get("/sync/5773453?ioprofiler=json")
        stream = http.get("/stream/5773453?ioprofiler=text")
        background = http.get("/background/5773453?ioprofiler=text")
    assert plain.text == PAGE.format(2)
    assert 'id="ioprofiler-panel"' in panel.text and "server-timing" in panel.headers
    assert [e["target"] for e in events(sync) if e["op"] == "execute"] == ["dbshard03"]
    assert all(f"[{s}]" in stream.text for s in ("dbshard01", "dbshard02", "dbshard03"))
    assert "[dbshard04]" not in background.text
    deadline = time.monotonic() + 10
    while not shop.state.background_done and time.monotonic() < deadline:
        time.sleep(0.02)
    assert shop.state.background_done == [4]


def test_under_uvicorn_concurrent_requests_from_threads(served):
    from concurrent.futures import ThreadPoolExecutor

    def fetch(n: int) -> tuple[int, httpx.Response]:
        route = "sync" if n % 2 else "gather"
        return n, httpx.get(f"{served}/{route}/{n}?ioprofiler=json")

    with ThreadPoolExecutor(8) as pool:
        for listing, response in pool.map(fetch, range(2000, 2040)):
            params = [e["params"] for e in events(response) if e["op"] == "execute"]
            assert params and all(p == [listing] for p in params)


@pytest.fixture
def mariadb():
    database = f"iop_asgi_{os.getpid()}"
    admin = mysql_or_skip()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {database}")
        cursor.execute(f"CREATE TABLE {database}.t (id INTEGER PRIMARY KEY, v INT)")
        cursor.execute(f"INSERT INTO {database}.t VALUES (1, 10), (2, 20)")
    admin.commit()
    yield f"mysql+aiomysql://root@127.0.0.1:3306/{database}"
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {database}")
    admin.close()


async def test_async_mariadb_engine_with_its_shard_name(mariadb):
    from fastapi import FastAPI

    engine = create_async_engine(mariadb)
    ioprofiler.label(engine, "dbshard07")
    api = FastAPI()

    @api.get("/total")
    async def total() -> dict:
        async with engine.connect() as conn:
            result = await conn.execute(sa.text("SELECT sum(v) FROM t"))
            return {"total": int(result.scalar_one())}

    try:
        async with client(IOProfilerMiddleware(api)) as http:
            response = await http.get("/total?ioprofiler=json")
            plain = await http.get("/total")
    finally:
        await engine.dispose()
    assert plain.json() == {"total": 30}
    executed = [e for e in events(response) if e["op"] == "execute"]
    assert {e["target"] for e in executed} == {"dbshard07"}  # the first connect's setup too
    assert executed[-1]["sql"] == "SELECT sum(v) FROM t"
