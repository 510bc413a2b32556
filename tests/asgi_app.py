"""The shops of the framework tests (FastAPI here; Flask and Django in their tests) and
what they share. The FastAPI shop: async and sync routes, streaming, tasks, a
background task, each querying SQLite shards (and memcached where a cache belongs)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pymemcache.client.base import Client as MemcacheClient
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.background import BackgroundTask
from werkzeug.serving import make_server

import ioprofiler

QUERY = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :id"
PAGE = "<html><head><title>shop</title></head><body><p>{} favorites</p></body></html>"


def look_up(cache_address: tuple[str, int], listing: int) -> None:
    """One memcached round trip, on a client of its own (views run in many threads)."""
    cache = MemcacheClient(cache_address)
    try:
        cache.get(f"listing:{listing}")
    finally:
        cache.close()


@contextlib.contextmanager
def serving(wsgi_app: Any) -> Iterator[str]:
    """A WSGI app served by werkzeug on a loopback port, threaded; yields its base URL."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@contextlib.contextmanager
def serving_asgi(app: Any) -> Iterator[str]:
    """An ASGI app served by uvicorn on a loopback port; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def make_app(
    aengines: dict[str, AsyncEngine],
    engines: dict[str, sa.Engine],
    cache_address: tuple[str, int],
    background_done: list[int],
) -> FastAPI:
    app = FastAPI()

    async def favorites(shard: str, listing: int) -> int:
        async with aengines[shard].connect() as conn:
            return (await conn.execute(sa.text(QUERY), {"id": listing})).scalar_one()

    @app.get("/listing/{listing}", response_class=HTMLResponse)
    async def listing(listing: int) -> str:
        return PAGE.format(await favorites("dbshard02", listing))

    @app.get("/sync/{listing}", response_class=HTMLResponse)
    def sync_listing(listing: int) -> str:  # FastAPI runs it in its thread pool
        look_up(cache_address, listing)
        with engines["dbshard03"].connect() as conn:
            count = conn.execute(sa.text(QUERY), {"id": listing}).scalar_one()
        return PAGE.format(count)

    @app.get("/gather/{listing}", response_class=HTMLResponse)
    async def gather(listing: int) -> str:
        counts = await asyncio.gather(
            asyncio.create_task(favorites("dbshard01", listing)),
            asyncio.create_task(favorites("dbshard04", listing)),
        )
        return PAGE.format(sum(counts))

    @app.get("/stream/{listing}")
    async def stream(listing: int) -> StreamingResponse:
        async def chunks():
            yield "<html><body><ul>"
            for shard in ("dbshard01", "dbshard02", "dbshard03"):
                yield f"<li>{shard}: {await favorites(shard, listing)}</li>"
            yield "</ul></body></html>"

        return StreamingResponse(chunks(), media_type="text/html")

    @app.get("/background/{listing}")
    async def background(listing: int) -> PlainTextResponse:
        async def later() -> None:
            background_done.append(await favorites("dbshard04", listing))

        count = await favorites("dbshard01", listing)
        return PlainTextResponse(f"{count} favorites", background=BackgroundTask(later))

    @app.get("/api/{listing}")
    async def api(listing: int) -> JSONResponse:
        return JSONResponse({"favorites": await favorites("dbshard02", listing)})

    return app


def label_all(engines: dict[str, object]) -> None:
    for name, engine in engines.items():
        ioprofiler.label(engine, name)
