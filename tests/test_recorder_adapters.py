"""What the web adapters hand the recorder, under real servers: an application that fails
after its response started (gunicorn, uvicorn), paths beyond Latin-1 (uvicorn), the request
id sent back (gunicorn, uvicorn)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse

from ioprofiler.asgi import IOProfilerMiddleware
from ioprofiler.recorder import Recorder
from tests.asgi_app import QUERY, serving_asgi
from tests.test_recorder_failures import app_env, gunicorn


def kept(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def make_shop(engine: sa.Engine) -> FastAPI:
    app = FastAPI()

    def count(listing: int) -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text(QUERY), {"id": listing}).scalar_one()

    @app.get("/broken/{listing}")
    def broken(listing: int) -> StreamingResponse:
        def chunks():
            yield f"{count(listing)} favorites\n"
            count(listing + 1)
            raise RuntimeError("the body failed half way")

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/€uro/{listing}")
    @app.get("/商品/{listing}")
    @app.get("/café/{listing}")
    def beyond_latin1(listing: int) -> PlainTextResponse:
        return PlainTextResponse(f"{count(listing)} favorites")

    return app


@pytest.fixture
def serve_shop(sqlite_shards, tmp_path):
    """``with serve_shop(**recorder_options) as (base_url, recorder)``: the shop under uvicorn,
    recorded."""

    @contextlib.contextmanager
    def serve(**options):
        recorder = Recorder(tmp_path / "io.jsonl", slow_ms=10_000, **options)
        app = IOProfilerMiddleware(make_shop(sqlite_shards["dbshard01"]), record=recorder)
        try:
            with serving_asgi(app) as base:
                yield base, recorder
        finally:
            recorder.close()

    return serve


@pytest.fixture
def uvicorn_shop(serve_shop):
    with serve_shop() as served:
        yield served


# -- an application that fails after its response started ------------------------------


def test_gunicorn_records_a_body_that_fails_half_way_as_failed(sqlite_shards, memcached, tmp_path):
    log = tmp_path / "io.jsonl"
    with gunicorn(app_env(log, sqlite_shards, memcached), tmp_path / "err", workers=1) as base:
        with httpx.Client() as client, client.stream("GET", f"{base}/broken/5773453") as sent:
            assert sent.status_code == 200  # the status line went out before the failure
            with pytest.raises(httpx.RemoteProtocolError):
                sent.read()
    (record,) = kept(log)
    assert record["path"] == "/broken/5773453"
    assert (record["status"], record["error"], record["reasons"]) == (
        500,
        "RuntimeError",
        ["status"],
    )
    statements = [e for e in record["events"] if e["op"] == "execute"]
    assert len(statements) == 2  # the one made while the body was being sent is there


def test_uvicorn_records_a_stream_that_fails_half_way_as_failed(uvicorn_shop):
    base, recorder = uvicorn_shop
    with httpx.Client() as client, client.stream("GET", f"{base}/broken/5773453") as sent:
        assert sent.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            sent.read()
    recorder.flush()
    (record,) = kept(recorder.path)
    assert record["path"] == "/broken/5773453"
    assert (record["status"], record["error"], record["reasons"]) == (
        500,
        "RuntimeError",
        ["status"],
    )
    statements = [e for e in record["events"] if e["op"] == "execute"]
    assert len(statements) == 2


# -- paths beyond Latin-1 ----------------------------------------------------------------


@pytest.mark.parametrize("first", ["€uro", "商品", "café"])
def test_uvicorn_profiles_and_records_paths_beyond_latin1(serve_shop, first, caplog):
    path = f"/{first}/5773453"
    with serve_shop(sample=1.0) as (base, recorder), httpx.Client(base_url=base) as client:
        listing = client.get(f"{path}?ioprofiler=text")
        plain = client.get(path)
        recorder.flush()
    assert listing.status_code == plain.status_code == 200
    assert listing.text.splitlines()[:2] == ["200 OK", f"GET {path}?ioprofiler=text"]
    assert "[dbshard01]" in listing.text and "SELECT count(*)" in listing.text
    assert [r["path"] for r in kept(recorder.path)] == [path, path]
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"
