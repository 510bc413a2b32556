"""One request that uses Django's ORM on two shards (a SQLite file and MariaDB), Redis, an
HTTP API and a raw PyMySQL connection: every round trip is in its listing, in order, with its
target and time, and the servers' own counters agree with it.

The page is served by Django's WSGI handler behind ``IOProfilerMiddleware`` and read as
``?ioprofiler=json``, the way a person or a script reads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from werkzeug.test import Client

import ioprofiler
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.conftest import configure_django
from tests.test_django import (
    add_database,
    create_table,
    favorite_model,
    mariadb_shard,  # noqa: F401 - a fixture, asked for by name
    remove_database,
    session_status,
)
from tests.test_http import Server
from tests.test_redis import redis_db  # noqa: F401 - a fixture, asked for by name

django = pytest.importorskip("django")
pymysql = pytest.importorskip("pymysql")
redis = pytest.importorskip("redis")
requests = pytest.importorskip("requests")
configure_django()

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
urlpatterns: list = []


@pytest.fixture
def sqlite_shard(tmp_path) -> Iterator[str]:
    add_database(
        "dbshard01", {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "s1.db")}
    )
    try:
        create_table("dbshard01")
        yield "dbshard01"
    finally:
        remove_database("dbshard01")


@pytest.fixture
def api() -> Iterator[Server]:
    server = Server()
    yield server
    server.stop()


def serve(view) -> Client:
    """Django's WSGI handler with ``view`` at ``/page``, behind the middleware."""
    global urlpatterns
    from django.core.wsgi import get_wsgi_application
    from django.test.utils import override_settings
    from django.urls import clear_url_caches, path

    urlpatterns = [path("page", view)]
    override = override_settings(ROOT_URLCONF=__name__)
    override.enable()
    clear_url_caches()
    return Client(IOProfilerMiddleware(get_wsgi_application())), override


def test_a_request_lists_every_round_trip_of_every_library(sqlite_shard, api, request):
    from django.db import connections
    from django.http import HttpResponse

    mariadb_alias = request.getfixturevalue("mariadb_shard")
    redis_number = request.getfixturevalue("redis_db")
    Favorite = favorite_model()
    cache = redis.Redis("127.0.0.1", 6379, db=redis_number)
    cache.set("listing:5773453", "3")
    cache.delete("listing:missing")
    http = requests.Session()
    counted = {}

    def page(request):
        local = Favorite.objects.using(sqlite_shard).filter(listing_id=5773453).count()
        # MariaDB's own count of this session's SELECTs around the ORM query (Django closes
        # the connection when the request ends, so it is read here, and listed too).
        with connections[mariadb_alias].cursor() as cursor:
            before = session_status(cursor, "Com_select")
            remote = Favorite.objects.using(mariadb_alias).filter(listing_id=5773453).count()
            counted["selects"] = session_status(cursor, "Com_select") - before
        cached = cache.get("listing:5773453"), cache.get("listing:missing")
        response = http.get(f"{api.url}/v1/items?id=7&token=s3cret")
        database = connections[mariadb_alias].settings_dict["NAME"]
        raw = pymysql.connect(host="127.0.0.1", user="root", database=database)
        ioprofiler.label(raw, "dbshard06")
        try:
            with raw.cursor() as cursor:
                before = session_status(cursor, "Com_select")
                cursor.execute("SELECT user_id FROM favorite WHERE listing_id = %s", (5773453,))
                counted["raw selects"] = session_status(cursor, "Com_select") - before
        finally:
            raw.close()
        return HttpResponse(
            f"<html><body>{local} {remote} {cached} {response.status_code}</body></html>"
        )

    client, override = serve(page)
    try:
        body = client.get("/page?ioprofiler=json", environ_base=LOCAL).get_data(as_text=True)
        selects, raw_selects = counted["selects"], counted["raw selects"]
        text = client.get("/page?ioprofiler=text", environ_base=LOCAL).get_data(as_text=True)
    finally:
        override.disable()
        http.close()
        cache.close()

    document = json.loads(body)
    calls = [
        e
        for e in document["events"]
        if e["op"] not in ("connect", "commit", "rollback")
        and not (e["statement"] or "").startswith("SHOW SESSION STATUS")
    ]
    redis_target = f"redis 127.0.0.1:6379/{redis_number}"
    assert [(e["kind"], e["target"]) for e in calls] == [
        ("db", "dbshard01"),
        ("db", mariadb_alias),
        ("cache", redis_target),
        ("cache", redis_target),
        ("http", f"http 127.0.0.1:{api.port}"),
        ("db", "dbshard06"),
    ]
    assert all(e["duration_ms"] > 0 for e in document["events"])
    starts = [e["start_ms"] for e in document["events"]]
    assert starts == sorted(starts)
    db_local, db_remote, hit, miss, call, db_raw = calls
    assert 'WHERE "favorite"."listing_id" = 5773453' in db_local["line"]
    assert "WHERE `favorite`.`listing_id` = 5773453" in db_remote["line"]
    assert (hit["hit"], miss["hit"]) == (True, False)
    assert hit["line"].endswith("Cache HIT, keys: listing:5773453")
    assert (call["status"], call["size"]) == (200, 3100)
    assert "s3cret" not in body and "token=?" in call["line"]
    assert db_raw["line"].endswith("SELECT user_id FROM favorite WHERE listing_id = 5773453")

    # The servers' own counts: MariaDB saw the one SELECT listed on each of its connections,
    # the API one request.
    assert selects == raw_selects == 1
    assert api.answered(2)[0] == "GET /v1/items?id=7&token=s3cret 200"

    # The repeated single-key reads are named in the service's own words.
    assert f"2 single-key reads on {redis_target}: could be one MGET" in text
