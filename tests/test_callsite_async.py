"""Callsites of SQLAlchemy's asyncio engines name the application's coroutine, also where
the task running the call is a library's: ``asyncio.gather`` over SQLAlchemy's own
coroutines, and the close SQLAlchemy shields when ``async with engine.connect()`` exits.
Not the event loop's caller (``asyncio.run(...)``, uvicorn's ``asyncio_run``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import ioprofiler
from ioprofiler.asgi import IOProfilerMiddleware
from tests.asgi_app import serving_asgi
from tests.test_callsite_accelerated import same_sites  # noqa: F401 (fixture)

HERE = Path(__file__).name


def line_of(marker: str) -> int:
    """The line of this file that ends with the comment ``marker``."""
    lines = Path(__file__).read_text().splitlines()
    return next(n for n, text in enumerate(lines, start=1) if text.endswith(f"# {marker}"))


async def page(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:  # one connection
        await conn.execute(sa.text("SELECT 1"))  # first query
    async with engine.connect() as a, engine.connect() as b:  # two connections
        both = await asyncio.gather(  # gathered
            a.execute(sa.text("SELECT 2")), b.execute(sa.text("SELECT 3"))
        )
    return [result.scalar_one() for result in both]


def expected_sites() -> list[tuple[str, str, int]]:
    """(file, function, line) of each event of ``page`` on a pool that holds two connections."""
    one, two, gathered = line_of("one connection"), line_of("two connections"), line_of("gathered")
    return [
        (HERE, "page", line_of("first query")),
        (HERE, "page", one),  # ROLLBACK as the block exits
        (HERE, "page", gathered),  # SELECT 2
        (HERE, "page", gathered),  # SELECT 3
        (HERE, "page", two),  # ROLLBACK of b
        (HERE, "page", two),  # ROLLBACK of a
    ]


def named(events: list) -> list[tuple[str, str, int]]:
    return [(Path(e._code.co_filename).name, e._code.co_name, e._lineno) for e in events]


def profiled_page(path: Path) -> list:
    """The events of ``page`` in a trace, under ``asyncio.run``."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")

    async def run() -> list:
        await page(engine)  # the pool's two connections opened before the trace
        with ioprofiler.profile() as trace:
            await page(engine)
        await engine.dispose()
        return trace.events

    return asyncio.run(run())


def test_under_asyncio_run_every_call_names_the_coroutine(tmp_path):
    events = profiled_page(tmp_path / "shop.db")
    assert [e.op for e in events] == [
        "execute", "rollback", "execute", "execute", "rollback", "rollback"
    ]  # fmt: skip
    assert sorted(named(events)) == sorted(expected_sites())


def test_the_compiled_lookup_finds_the_same_coroutines(tmp_path, same_sites):  # noqa: F811
    sites = same_sites(lambda: [e._site for e in profiled_page(tmp_path / "shop.db")])
    assert sorted(sites) == sorted(expected_sites())


def test_under_uvicorn_every_call_names_the_coroutine(tmp_path):
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    app = FastAPI()

    @app.get("/page")
    async def route() -> list[int]:
        return await page(engine)

    with serving_asgi(IOProfilerMiddleware(app)) as base, httpx.Client(base_url=base) as http:
        assert http.get("/page").json() == [2, 3]  # the pool opens its two connections
        response = http.get("/page?ioprofiler=json")
    events = response.json()["events"]
    assert [e["op"] for e in events] == [
        "execute", "rollback", "execute", "execute", "rollback", "rollback"
    ]  # fmt: skip
    sites = sorted(e["callsite"] for e in events)
    assert sites == sorted(
        f"tests/{file}:{line} in {function}" for file, function, line in expected_sites()
    )
