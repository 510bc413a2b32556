"""The shared stores of followed requests' traces: Redis and memcached, by URL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from werkzeug.test import Client

import ioprofiler
from ioprofiler.memcached import free_port
from ioprofiler.store import MemcachedStore, RedisStore, new_id, store_from
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.follow_app import FollowedShop
from tests.test_redis import redis_db  # noqa: F401 - the session's own Redis database

ROOT = Path(__file__).resolve().parents[1]
MARKED = {"X-IOProfiler-Follow": "1"}
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture
def redis_url(redis_db) -> str:  # noqa: F811
    return f"redis://127.0.0.1:6379/{redis_db}"


@pytest.fixture
def shop(sqlite_shards, memcached):
    return FollowedShop(sqlite_shards, memcached.address)


@pytest.fixture(params=["redis", "memcached"])
def store_url(request, memcached) -> str:
    if request.param == "redis":
        return request.getfixturevalue("redis_url")
    host, port = memcached.address
    return f"memcached://{host}:{port}"


def test_store_urls_name_their_store():
    assert isinstance(store_from("redis://127.0.0.1:6379/0"), RedisStore)
    assert isinstance(store_from("memcached://127.0.0.1:11211"), MemcachedStore)
    with pytest.raises(ValueError, match="redis:// or memcached://"):
        store_from("postgres://user:secret@db/shop")
    with pytest.raises(ValueError, match="not 'postgres://db/shop'"):
        store_from("postgres://user:secret@db/shop")  # the password is not repeated


def test_the_stores_own_calls_are_never_in_a_trace(shop, store_url):
    client = Client(IOProfilerMiddleware(shop, follow_requests=True, store=store_url))
    with ioprofiler.profile() as outer:  # a test's trace around the whole exchange
        marked = client.get("/fragment", headers=MARKED, environ_base=LOCAL)
        marked.close()
        url = f"/__ioprofiler__/traces/{marked.headers['X-IOProfiler-Id']}"
        kept = client.get(url, headers=MARKED, environ_base=LOCAL)
    assert kept.status_code == 200
    listed = [event.line() for event in outer]
    assert not [line for line in listed if "ioprofiler:trace:" in line]
    # the fragment's own cache read and nothing of the store's (it writes and reads a key)
    assert [line.split(" ms ")[1] for line in listed if "keys:" in line] == [
        "Cache MISS, keys: fragment:listing:5773453"
    ]
    assert kept.json["calls"] == 2


def test_a_shared_store_keeps_no_values(shop, store_url):
    client = Client(IOProfilerMiddleware(shop, follow_requests=True, store=store_url))
    marked = client.get("/listings?page=2", headers=MARKED, environ_base=LOCAL)
    marked.close()
    url = f"/__ioprofiler__/traces/{marked.headers['X-IOProfiler-Id']}"
    entry = client.get(url, headers=MARKED, environ_base=LOCAL).json
    assert entry["path"] == "/listings?page=?"
    assert "listing_id = ?" in entry["html"] and "5773450" not in entry["html"]
    assert "N+1" in entry["findings"]


def test_an_entry_expires_in_redis(redis_url):
    store = RedisStore(redis_url, ttl=1)
    trace_id = new_id()
    store.put(trace_id, b"{}")
    assert store.get(trace_id) == b"{}"
    ttl = redis.Redis.from_url(redis_url).ttl(f"ioprofiler:trace:{trace_id}")
    assert 0 < ttl <= 1


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def served_by_gunicorn(env: dict[str, str], stderr: Path):
    port = free_port()
    gunicorn = Path(os.sys.executable).parent / "gunicorn"
    with stderr.open("w") as errors:
        server = subprocess.Popen(
            [str(gunicorn), "-w", "4", "-b", f"127.0.0.1:{port}", "--chdir", str(ROOT),
             "--log-level", "warning", "tests.follow_served:app"],
            env=dict(os.environ, **env),
            stderr=errors,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, f"http://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(f"gunicorn did not start: {stderr.read_text()}") from None
            time.sleep(0.1)


def test_under_gunicorn_every_trace_is_found_whichever_worker_served_it(
    sqlite_shards, memcached, tmp_path, redis_url
):
    env = {
        "IOP_SHARDS": str(Path(sqlite_shards["dbshard01"].url.database).parent),
        "IOP_MEMCACHED": "{}:{}".format(*memcached.address),
        "IOP_STORE": redis_url,
    }
    server, base = served_by_gunicorn(env, tmp_path / "gunicorn.err")
    try:
        with ThreadPoolExecutor(8) as pool:  # at once: one sync worker cannot serve them all
            served = list(pool.map(lambda n: get(f"{base}/listings?n={n}", MARKED), range(48)))
            ids = {headers["X-IOProfiler-Id"]: headers["X-Worker"] for _, headers, _ in served}
            read = list(pool.map(lambda i: get(f"{base}/__ioprofiler__/traces/{i}", MARKED), ids))
        recent = get(f"{base}/__ioprofiler__/", {})
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert [status for status, _, _ in served] == [200] * 48 and len(ids) == 48
    assert len(set(ids.values())) > 1  # more than one worker kept traces
    assert [status for status, _, _ in read] == [200] * 48
    entries = [json.loads(body) for _, _, body in read]
    assert sorted(e["path"] for e in entries) == sorted(["/listings?n=?"] * 48)
    # on a loaded machine a stall may add a slow_call finding: look at the N+1 one
    assert all(e["calls"] == 6 and "N+1" in e["findings"] for e in entries)
    # whichever worker shows the recent requests, it lists every worker's
    assert recent[0] == 200 and all(f'id="t{i}"'.encode() in recent[2] for i in ids)
