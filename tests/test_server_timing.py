"""Server-Timing as the middlewares send it: the same findings as the response's panel and
JSON, and nothing said about I/O the response has not finished yet."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
import sqlalchemy as sa
from werkzeug.test import Client

import ioprofiler
from ioprofiler.asgi import IOProfilerMiddleware as ASGIMiddleware
from ioprofiler.wsgi import IOProfilerMiddleware as WSGIMiddleware

QUERY = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :id"
PAGE = "<html><body><p>{} favorites</p></body></html>"
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
TYPES = {"/page": "text/html; charset=utf-8", "/api": "application/json"}


def findings_entry(server_timing: str) -> str:
    """The ``findings`` entry's description, or "" when there is none."""
    match = re.search(r'(?:^|, )findings;desc="((?:[^"\\]|\\.)*)"', server_timing)
    return match.group(1) if match else ""


def favorites(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(QUERY), {"id": 5773453}).scalar_one()


def wsgi_shop(engine: sa.Engine):
    """One query per request; ``/page`` answers HTML (changed), ``/api`` JSON (passed
    through)."""

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        count = favorites(engine)
        body = (PAGE.format(count) if path == "/page" else json.dumps({"n": count})).encode()
        start_response("200 OK", [("Content-Type", TYPES[path])])
        return [body]

    return app


def asgi_shop(engine: sa.Engine):
    async def app(scope, receive, send):
        assert scope["type"] == "http"
        path = scope["path"]
        count = await asyncio.to_thread(favorites, engine)
        body = (PAGE.format(count) if path == "/page" else json.dumps({"n": count})).encode()
        headers = [(b"content-type", TYPES[path].encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def wsgi_get(app, url: str):
    response = Client(app).get(url, environ_base=LOCAL)
    response.get_data()
    response.close()
    return response


async def asgi_get(app, url: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        return await client.get(url)


@pytest.mark.parametrize("path", ["/page", "/api"])
def test_wsgi_server_timing_findings_use_the_middlewares_slow_ms(sqlite_shards, path):
    # slow_ms=0: every call is slow by the middleware's rule, none by the default 100 ms
    app = WSGIMiddleware(wsgi_shop(sqlite_shards["dbshard01"]), slow_ms=0.0)
    document = json.loads(wsgi_get(app, "/page?ioprofiler=json").get_data(as_text=True))
    assert "slow_call" in {finding["kind"] for finding in document["findings"]}
    timing = wsgi_get(app, f"{path}?ioprofiler=1").headers["Server-Timing"]
    assert "slow call" in findings_entry(timing), timing
    ioprofiler.configure(findings={"dominant_ms": 60_000.0})  # a busy machine: no share rule
    calm = WSGIMiddleware(wsgi_shop(sqlite_shards["dbshard01"]), slow_ms=60_000.0)
    assert "slow call" not in findings_entry(
        wsgi_get(calm, f"{path}?ioprofiler=1").headers["Server-Timing"]
    )


@pytest.mark.parametrize("path", ["/page", "/api"])
def test_asgi_server_timing_findings_use_the_middlewares_slow_ms(sqlite_shards, path):
    app = ASGIMiddleware(asgi_shop(sqlite_shards["dbshard01"]), slow_ms=0.0)
    document = asyncio.run(asgi_get(app, "/page?ioprofiler=json")).json()
    assert "slow_call" in {finding["kind"] for finding in document["findings"]}
    timing = asyncio.run(asgi_get(app, f"{path}?ioprofiler=1")).headers["server-timing"]
    assert "slow call" in findings_entry(timing), timing
    ioprofiler.configure(findings={"dominant_ms": 60_000.0})  # a busy machine: no share rule
    calm = ASGIMiddleware(asgi_shop(sqlite_shards["dbshard01"]), slow_ms=60_000.0)
    timing = asyncio.run(asgi_get(calm, f"{path}?ioprofiler=1")).headers["server-timing"]
    assert "slow call" not in findings_entry(timing), timing


ROWS = 12


def csv_rows(engine: sa.Engine):
    """A CSV export as users write one: a query per row, run while the body is read."""
    yield b"listing,favorites\n"
    for listing_id in range(ROWS):
        yield f"{listing_id},{favorites_of(engine, listing_id)}\n".encode()


def favorites_of(engine: sa.Engine, listing_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(QUERY), {"id": listing_id}).scalar_one()


def test_wsgi_a_streamed_body_gets_no_server_timing_made_before_its_queries(sqlite_shards):
    engine = sqlite_shards["dbshard01"]

    def export(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/csv")])
        return csv_rows(engine)

    sink = Collected()
    response = wsgi_get(WSGIMiddleware(export, export=[sink]), "/export.csv?ioprofiler=1")
    assert response.get_data(as_text=True).count("\n") == ROWS + 1
    assert "Server-Timing" not in response.headers  # it said "0 queries" before the fix
    assert response.headers["Cache-Control"] == "no-store"
    (request,) = sink.requests
    assert request.trace.count(kind="db") == ROWS  # the trace still has every query


def test_asgi_a_streamed_body_gets_no_server_timing_made_before_its_queries(sqlite_shards):
    engine = sqlite_shards["dbshard01"]

    async def export(scope, receive, send):
        headers = [(b"content-type", b"text/csv")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for row in csv_rows(engine):
            await send({"type": "http.response.body", "body": row, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    sink = Collected()
    app = ASGIMiddleware(export, export=[sink])
    response = asyncio.run(asgi_get(app, "/export.csv?ioprofiler=1"))
    assert response.text.count("\n") == ROWS + 1
    assert "server-timing" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    (request,) = sink.requests
    assert request.trace.count(kind="db") == ROWS


class Collected:
    """A sink keeping the finished requests."""

    def __init__(self) -> None:
        self.requests = []

    def handle(self, request) -> None:
        self.requests.append(request)

    def close(self) -> None:
        pass
