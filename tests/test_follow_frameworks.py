"""``follow_requests`` through the ASGI middleware (FastAPI), Flask's extension and Django's
middleware: a marked request's trace is kept and read back, an unknown id is the app's."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import ioprofiler
from ioprofiler.asgi import IOProfilerMiddleware
from ioprofiler.store import new_id
from tests.asgi_app import make_app
from tests.conftest import SHARDS
from tests.test_asgi import client as asgi_client
from tests.test_flask import make_shop

MARKED = {"X-IOProfiler-Follow": "1"}
QUERY = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773453"


def read_back(entry: dict, path: str) -> None:
    assert entry["method"] == "GET" and entry["path"] == path
    assert entry["status"] == "200 OK" and entry["calls"] == 1
    assert QUERY in entry["html"]


@pytest.fixture
def fastapi_shop(sqlite_shards, tmp_path, memcached):
    aengines = {
        name: create_async_engine(f"sqlite+aiosqlite:///{tmp_path / name}.db", poolclass=NullPool)
        for name in SHARDS
    }
    yield make_app(aengines, sqlite_shards, memcached.address, [])
    for engine in aengines.values():
        engine.sync_engine.dispose()


async def test_asgi_keeps_a_marked_requests_trace_for_the_panel(fastapi_shop):
    async with asgi_client(IOProfilerMiddleware(fastapi_shop, follow_requests=True)) as http:
        page = await http.get("/listing/5773453?ioprofiler=1")
        assert 'data-follow="/__ioprofiler__/traces/"' in page.text
        marked = await http.get("/api/5773453", headers=MARKED)
        assert "favorites" in marked.json()
        kept = await http.get(f"/__ioprofiler__/traces/{marked.headers['X-IOProfiler-Id']}")
        assert kept.status_code == 404  # unmarked: the application's
        kept = await http.get(
            f"/__ioprofiler__/traces/{marked.headers['X-IOProfiler-Id']}", headers=MARKED
        )
        read_back(kept.json(), "/api/5773453")
        unknown = await http.get(f"/__ioprofiler__/traces/{new_id()}", headers=MARKED)
    async with asgi_client(fastapi_shop) as plain:
        expected = await plain.get(f"/__ioprofiler__/traces/{new_id()}")
    assert (unknown.status_code, unknown.headers, unknown.content) == (
        expected.status_code,
        expected.headers,
        expected.content,
    )


def test_flask_reads_follow_requests_from_its_config(sqlite_shards, memcached):
    from ioprofiler.flask import IOProfiler

    app = make_shop(sqlite_shards, memcached.address)
    app.config["IOPROFILER_FOLLOW_REQUESTS"] = True
    IOProfiler(app)
    http = app.test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}
    marked = http.get("/api/5773453", headers=MARKED, environ_base=local)
    marked.close()
    url = f"/__ioprofiler__/traces/{marked.headers['X-IOProfiler-Id']}"
    read_back(http.get(url, headers=MARKED, environ_base=local).json, "/api/5773453")
    assert (
        http.get(url, headers=MARKED, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 404
    )


@pytest.fixture
def django_shop(sqlite_shards, memcached):
    from django.test import override_settings

    from tests import test_django_middleware as views

    for name in SHARDS:
        ioprofiler.label(sqlite_shards[name], name)
    views.world.update(engines=sqlite_shards, cache=memcached.address)
    settings = {"FOLLOW_REQUESTS": True}
    with override_settings(
        ROOT_URLCONF=views.__name__, MIDDLEWARE=[views.PROFILER], IOPROFILER=settings
    ):
        yield
    views.world.clear()


def test_django_keeps_a_marked_requests_trace_for_the_panel(django_shop):
    from django.test import Client

    http = Client()
    marked = http.get("/api/5773453", headers=MARKED)
    assert "favorites" in marked.json()
    url = f"/__ioprofiler__/traces/{marked.headers['X-IOProfiler-Id']}"
    kept = http.get(url, headers=MARKED)
    assert kept["Content-Type"] == "application/json"
    read_back(kept.json(), "/api/5773453")
    unknown = http.get(f"/__ioprofiler__/traces/{new_id()}", headers=MARKED)
    assert unknown.status_code == 404 and "X-IOProfiler-Id" not in unknown.headers
    page = http.get("/listing/5773453?ioprofiler=1")
    assert b'data-follow="/__ioprofiler__/traces/"' in page.content
    refused = Client(REMOTE_ADDR="10.1.2.3").get(url, headers=MARKED)
    assert refused.status_code == 404


async def test_django_async_keeps_a_marked_requests_trace(django_shop):
    from django.test import AsyncClient

    http = AsyncClient()
    marked = await http.get("/api/5773453", headers=MARKED)
    url = f"/__ioprofiler__/traces/{marked.headers['X-IOProfiler-Id']}"
    read_back((await http.get(url, headers=MARKED)).json(), "/api/5773453")
