"""ioprofiler.flask: the extension on a real Flask app, through its test client, a real
server thread, and the ``flask`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask, Response

import ioprofiler
from ioprofiler.flask import IOProfiler
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.asgi_app import PAGE, QUERY, look_up, serving
from tests.test_asgi import Collected

FAR = {"REMOTE_ADDR": "10.1.2.3"}


def make_shop(engines, cache_address) -> Flask:
    app = Flask("shop")

    @app.route("/listing/<int:listing>")
    def listing(listing: int) -> str:
        look_up(cache_address, listing)
        with engines["dbshard02"].connect() as conn:
            return PAGE.format(conn.execute(sa.text(QUERY), {"id": listing}).scalar_one())

    @app.route("/api/<int:listing>")
    def api(listing: int) -> dict:
        with engines["dbshard03"].connect() as conn:
            return {"favorites": conn.execute(sa.text(QUERY), {"id": listing}).scalar_one()}

    @app.route("/feed")
    def feed() -> Response:
        def rows():
            for shard in ("dbshard01", "dbshard04"):
                with engines[shard].connect() as conn:
                    yield f"{shard}: {conn.execute(sa.text('SELECT 1')).scalar_one()}\n"

        return Response(rows(), mimetype="text/plain")

    return app


@pytest.fixture
def shop(sqlite_shards, memcached) -> Flask:
    for name, engine in sqlite_shards.items():
        ioprofiler.label(engine, name)
    return make_shop(sqlite_shards, memcached.address)


def executed(body: bytes) -> list[tuple[str, object]]:
    return [(e["target"], e["params"]) for e in json.loads(body)["events"] if e["op"] == "execute"]


def test_every_mode_with_the_test_client(shop):
    IOProfiler(shop)
    assert isinstance(shop, Flask) and isinstance(shop.wsgi_app, IOProfilerMiddleware)
    http = shop.test_client()
    plain = http.get("/listing/5773453")
    panel = http.get("/listing/5773453?ioprofiler=1")
    text = http.get("/listing/5773453?ioprofiler=text")
    as_json = http.get("/listing/5773453?ioprofiler=json")
    api = http.get("/api/5773453?ioprofiler=1")
    feed = http.get("/feed?ioprofiler=1")
    assert plain.text == PAGE.format(2) and "Server-Timing" not in plain.headers
    assert panel.text.index('id="ioprofiler-panel"') < panel.text.index("</body>")
    assert "db;dur=" in panel.headers["Server-Timing"]
    assert "[dbshard02]" in text.text and "Cache MISS" in text.text
    assert executed(as_json.data) == [("dbshard02", [5773453])]
    assert api.json == {"favorites": 3} and "dbshard03" in api.headers["Server-Timing"]
    assert feed.text.startswith("dbshard01: 1\ndbshard04: 1\n")
    assert "[dbshard01]" in feed.text and "[dbshard04]" in feed.text  # streamed, then listed


def test_refused_clients_get_exactly_the_unprofiled_response(shop, sqlite_shards, memcached):
    bare = make_shop(sqlite_shards, memcached.address).test_client()
    IOProfiler(shop)
    wrapped = shop.test_client()
    for url in ("/listing/5773453?ioprofiler=1", "/api/1?ioprofiler=json", "/feed?ioprofiler=1"):
        expected = bare.get(url, environ_base=FAR)
        got = wrapped.get(url, environ_base=FAR)
        assert (got.status, got.headers, got.data) == (
            expected.status,
            expected.headers,
            expected.data,
        )


def test_config_options_and_route_for_sinks(shop):
    sink = Collected()
    shop.config.update(
        IOPROFILER_PARAM="prof",
        IOPROFILER_EXPORT=[sink],
        IOPROFILER_ALLOW=ioprofiler.access.networks("10.0.0.0/8"),
    )
    IOProfiler(shop)
    http = shop.test_client()
    far = http.get("/listing/5773453?prof=text", environ_base=FAR)
    local = http.get("/listing/5773453?prof=text")
    assert "[dbshard02]" in far.text and local.text == PAGE.format(2)
    far.close()  # the server closes the body: then the sinks get the request
    local.close()
    assert [r.route for r in sink.requests] == ["/listing/<int:listing>"] * 2
    assert [r.status for r in sink.requests] == [200, 200]


def test_init_app_for_factories_and_keywords_win_over_config(shop):
    profiler = IOProfiler(param="trace")
    shop.config["IOPROFILER_PARAM"] = "prof"
    middleware = profiler.init_app(shop)
    assert middleware.param == "trace" and shop.extensions["ioprofiler"] is middleware
    assert "[dbshard02]" in shop.test_client().get("/listing/1?trace=text").text
    with pytest.raises(RuntimeError, match="already"):
        profiler.init_app(shop)


def test_bad_config_fails_when_the_extension_starts(shop):
    shop.config["IOPROFILER_ALOW"] = "everyone"
    with pytest.raises(ValueError, match="IOPROFILER_ALOW is not an ioprofiler option"):
        IOProfiler(shop)
    shop.config.pop("IOPROFILER_ALOW")
    shop.config["IOPROFILER_SLOW_MS"] = "fast"
    with pytest.raises(ValueError, match="slow_ms"):
        IOProfiler(shop)


def test_real_server_thread_concurrent_requests_keep_their_own_events(shop):
    IOProfiler(shop)
    with serving(shop) as base, ThreadPoolExecutor(8) as pool:
        urls = [f"{base}/listing/{n}?ioprofiler=json" for n in range(3000, 3040)]
        for n, response in zip(range(3000, 3040), pool.map(httpx.get, urls), strict=True):
            assert executed(response.content) == [("dbshard02", [n])]
        panel = httpx.get(f"{base}/listing/5773453?ioprofiler=1")
    assert 'id="ioprofiler-panel"' in panel.text


def test_the_flask_command_still_finds_the_app(tmp_path):
    (tmp_path / "shop.py").write_text(
        textwrap.dedent(
            """
            from flask import Flask
            from ioprofiler.flask import IOProfiler

            app = Flask(__name__)
            IOProfiler(app)

            @app.route("/listing/<int:listing>")
            def listing(listing):
                return "ok"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "shop", "routes"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "/listing/<int:listing>" in result.stdout
