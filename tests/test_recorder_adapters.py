"""What the web adapters hand the recorder, under real servers: an application that fails
after its response started (gunicorn, uvicorn), paths beyond Latin-1 (uvicorn), the request
id sent back (gunicorn, uvicorn)."""

from __future__ import annotations

import contextlib
import json
import re
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

# A worker imports the app on its first request: on a busy machine that took longer than
# httpx's 5 s default, so wait as long as the servers' own start-up is allowed.
WORKER_START_S = 60


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
        with (
            httpx.Client(timeout=WORKER_START_S) as client,
            client.stream("GET", f"{base}/broken/5773453") as sent,
        ):
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
    with (
        httpx.Client(timeout=WORKER_START_S) as client,
        client.stream("GET", f"{base}/broken/5773453") as sent,
    ):
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


def test_gunicorn_lists_and_records_paths_beyond_latin1_as_the_client_wrote_them(
    sqlite_shards, memcached, tmp_path
):
    log = tmp_path / "io.jsonl"
    env = dict(app_env(log, sqlite_shards, memcached), IOP_SAMPLE="1")  # keep every request
    paths = ["/€uro/1", "/商品/2", "/café/3"]
    with (
        gunicorn(env, tmp_path / "err", workers=1) as base,
        httpx.Client(timeout=WORKER_START_S) as client,
    ):
        listings = [client.get(f"{base}{path}?ioprofiler=text").text for path in paths]
    assert [listing.splitlines()[1] for listing in listings] == [
        f"GET {path}?ioprofiler=text" for path in paths
    ]
    assert [r["path"] for r in kept(log)] == paths


# -- the request id, sent back ------------------------------------------------------------


def test_gunicorn_sends_the_request_id_back_so_records_match_the_access_log(
    sqlite_shards, memcached, tmp_path
):
    log, access = tmp_path / "io.jsonl", tmp_path / "access.log"
    options = ("--access-logfile", str(access), "--access-logformat", "%({x-request-id}o)s %(U)s")
    sent = {
        "/fail/1": None,  # no id: a new one
        "/fail/2": "7f3e9c2a-5d41-4f0e-9b8a-2c6d1e0f4a3b",  # a proxy's: kept
        "/fail/3": "x" * 129,  # too long: a new one
        "/fail/4": "a b<script>",  # not an id: a new one
        "/listing/5": "fast-one",  # not kept, still answered with its id
    }
    env = app_env(log, sqlite_shards, memcached)
    with gunicorn(env, tmp_path / "err", workers=1, options=options) as base:
        with httpx.Client(base_url=base, timeout=WORKER_START_S) as client:
            answered = {
                path: client.get(path, headers={"X-Request-Id": rid} if rid else {})
                for path, rid in sent.items()
            }
    ids = {path: response.headers["x-request-id"] for path, response in answered.items()}
    assert ids["/fail/2"] == sent["/fail/2"] and ids["/listing/5"] == "fast-one"
    for path in ("/fail/1", "/fail/3", "/fail/4"):
        assert re.fullmatch(r"[0-9a-f]{32}", ids[path])
    assert len(set(ids.values())) == 5
    logged = dict(reversed(line.split(" ")) for line in access.read_text().splitlines())
    records = {r["path"]: r["id"] for r in kept(log)}
    assert records == {path: ids[path] for path in sent if path.startswith("/fail")}
    assert logged == ids  # each record's id is on its access-log line


def test_uvicorn_sends_the_request_id_back_recorded_or_profiled(uvicorn_shop):
    base, recorder = uvicorn_shop
    with httpx.Client(base_url=base, timeout=WORKER_START_S) as client:
        plain = client.get("/café/1", headers={"X-Request-Id": "abc-123"})
        profiled = client.get("/café/1?ioprofiler=1")
        failed = client.get("/broken/1?ioprofiler=text")
    assert plain.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", profiled.headers["x-request-id"])
    assert failed.status_code == 500  # the server's own error page: nothing had been sent
    recorder.flush()
    (record,) = kept(recorder.path)
    assert record["path"] == "/broken/1" and record["error"] == "RuntimeError"


def test_uvicorn_access_rules_see_the_path_bytes_the_client_sent(sqlite_shards):
    seen = []

    def allow(request) -> bool:  # a rule of the deployment's own, reading the environ
        seen.append(request.environ["PATH_INFO"])
        return True

    app = IOProfilerMiddleware(make_shop(sqlite_shards["dbshard01"]), allow=allow)
    with serving_asgi(app) as base, httpx.Client(base_url=base) as client:
        for path in ("/€uro/1", "/%FF/1"):  # UTF-8, and a byte that is not
            assert client.get(f"{path}?ioprofiler=text").text.startswith(("200 OK", "404"))
    assert seen == ["/\xe2\x82\xacuro/1", "/\xff/1"]
