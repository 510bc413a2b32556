"""An incident's log, written as production writes it: a real Recorder behind the WSGI
middleware, real SQLite shard files, two releases with a deploy marker between them.

Release r1: ``/listing/<id>`` counts favorites once on dbshard01; ``/search/<id>`` runs a
5 ms statement on dbshard03. Release r2 (after ``ioprofiler mark``): ``/listing/<id>`` counts
them one listing at a time (an N+1 of 8 on dbshard01: kept, past ``max_calls=5``),
``/search/<id>`` takes 40 ms (kept: slow). A path with hostile text answers 500 in both.

>>> log = write_incident_log(tmp_path, seconds=1.5)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from werkzeug.test import Client

import ioprofiler
from ioprofiler.recorder import Recorder
from ioprofiler.wsgi import IOProfilerMiddleware

HOSTILE = "<script>alert(1)</script>"
MARKER_TEXT = f"deploy r2 {HOSTILE}"
N_PLUS_ONE = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?"
SLOW = "SELECT sleep_ms(?), count(*) FROM FavoriteListingUser"
BIN = Path(sys.executable).with_name("ioprofiler")


def _sleep_ms(ms: int) -> int:
    time.sleep(ms / 1000)
    return ms


def _shard(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    sa.event.listen(
        engine, "connect", lambda conn, _: conn.create_function("sleep_ms", 1, _sleep_ms)
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS FavoriteListingUser (id INTEGER PRIMARY KEY, "
            "listing_id INTEGER NOT NULL, user_id INTEGER NOT NULL)"
        )
    return engine


class Shop:
    """The application, one release at a time."""

    def __init__(self, directory: Path) -> None:
        self.listings = _shard(directory / "dbshard01.db")
        self.search = _shard(directory / "dbshard03.db")
        self.release = "r1"

    def __call__(self, environ, start_response):
        kind, _, number = environ["PATH_INFO"][1:].partition("/")
        environ["ioprofiler.route"] = f"/{kind}/<id>" if number.isdigit() else None
        status = "200 OK"
        with self.listings.connect() as conn:
            for listing in range(8 if self.release == "r2" and kind == "listing" else 1):
                conn.execute(
                    sa.text("SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :id"),
                    {"id": listing},
                ).all()
        if kind == "search":
            with self.search.connect() as conn:
                ms = 40 if self.release == "r2" else 5
                conn.execute(
                    sa.text("SELECT sleep_ms(:ms), count(*) FROM FavoriteListingUser"), {"ms": ms}
                ).all()
        elif not number.isdigit():
            status = "500 Internal Server Error"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok\n"]

    def close(self) -> None:
        self.listings.dispose()
        self.search.dispose()


def write_incident_log(directory: Path, seconds: float = 1.5, summary_every: float = 0.1) -> Path:
    """The log of ``seconds`` of release r1, a marker, ``seconds`` of release r2."""
    ioprofiler.install()
    log = directory / "ioprofiler.jsonl"
    shop = Shop(directory)
    try:
        for release in ("r1", "r2"):
            shop.release = release
            recorder = Recorder(
                log, slow_ms=20, max_calls=5, release=release, summary_every=summary_every
            )
            client = Client(IOProfilerMiddleware(shop, record=recorder))
            end = time.monotonic() + seconds
            n = 0
            while time.monotonic() < end or n < 20:
                n += 1
                path = f"/search/{n}" if n % 4 == 0 else f"/listing/{n}"
                client.get(path).close()
                time.sleep(0.003)
            client.get(f"/x/{HOSTILE}").close()
            recorder.close()
            if release == "r1":
                subprocess.run(
                    [str(BIN), "mark", MARKER_TEXT, "--log", str(log), "--release", "r2"],
                    check=True,
                    timeout=120,
                )
    finally:
        shop.close()
    return log
