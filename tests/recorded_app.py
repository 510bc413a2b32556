"""The app the end-to-end recorder test serves with gunicorn: SQLite shards, real memcached,
the recorder on. Configured by environment variables (gunicorn imports it in each worker):

IOP_LOG (the log), IOP_SHARDS (a directory of dbshard0N.db files), IOP_MEMCACHED (host:port),
IOP_SLOW_MS (the recorder's threshold), IOP_MAX_BYTES (rotation size), IOP_SAMPLE (the
recorder's sample rate, default 0).

Routes: ``/listing/<id>`` (fast: a cache read and a count on shard id % 4), ``/report/<id>``
(slow: a statement on dbshard03 that sleeps inside SQLite), ``/fail/<id>`` (queries, then 500),
``/broken/<id>`` (200, then the body raises after its first chunk).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import sqlalchemy as sa
from pymemcache.client.base import Client
from werkzeug.exceptions import NotFound
from werkzeug.routing import Map, Rule

import ioprofiler
from ioprofiler.recorder import Recorder
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.webapp import ShopApp

SLOW_STATEMENT = "SELECT sleep_ms(:ms), count(*) FROM FavoriteListingUser"
URLS = Map(
    [
        Rule("/listing/<int:listing_id>", endpoint="listing"),
        Rule("/report/<int:listing_id>", endpoint="report"),
        Rule("/fail/<int:listing_id>", endpoint="fail"),
        Rule("/broken/<int:listing_id>", endpoint="broken"),
    ]
)


def _sleep_ms(ms: int) -> int:
    time.sleep(ms / 1000)
    return ms


def _engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    sa.event.listen(
        engine, "connect", lambda conn, _: conn.create_function("sleep_ms", 1, _sleep_ms)
    )
    return engine


class App:
    def __init__(self) -> None:
        shards = Path(os.environ["IOP_SHARDS"])
        self.engines = [_engine(shards / f"dbshard0{n}.db") for n in range(1, 5)]
        host, port = os.environ["IOP_MEMCACHED"].rsplit(":", 1)
        self.cache = Client((host, int(port)), default_noreply=False)

    count = ShopApp.count  # shards by number here: self.engines is a list

    def __call__(self, environ, start_response):
        try:
            rule, values = URLS.bind_to_environ(environ).match(return_rule=True)
        except NotFound as exc:
            return exc(environ, start_response)
        environ["ioprofiler.route"] = rule.rule
        listing_id = values["listing_id"]
        self.cache.get(f"listing:{listing_id}")
        favorites = self.count(listing_id % 4, listing_id)
        status = "200 OK"
        if rule.endpoint == "report":
            with self.engines[2].connect() as conn:
                conn.execute(sa.text(SLOW_STATEMENT), {"ms": 120}).one()
        elif rule.endpoint == "fail":
            for shard in range(4):
                self.count(shard, listing_id)
            status = "500 Internal Server Error"
        body = f"listing {listing_id}: {favorites} favorites\n".encode()
        if rule.endpoint == "broken":
            start_response(status, [("Content-Type", "text/plain")])
            return self.broken(listing_id, body)
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    def broken(self, listing_id: int, first: bytes):
        yield first
        self.count(1, listing_id)
        raise RuntimeError("the body failed half way")


ioprofiler.install()
recorder = Recorder(
    os.environ["IOP_LOG"],
    slow_ms=float(os.environ.get("IOP_SLOW_MS", "100")),
    max_bytes=int(os.environ.get("IOP_MAX_BYTES", str(100 * 2**20))),
    sample=float(os.environ.get("IOP_SAMPLE", "0")),
    backups=1000,
)
app = IOProfilerMiddleware(App(), record=recorder)
