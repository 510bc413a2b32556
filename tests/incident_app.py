"""A shop whose release changes between two load phases, for ``ioprofiler diff``'s tests.

Three routes over one SQLite file:

- ``/listing/<id>``: one statement; release :data:`AFTER` adds an N+1: one statement per
  related listing (:data:`RELATED`), sent from :func:`favorites`;
- ``/search``: one statement calling the SQLite function ``in_stock``, which in release
  :data:`AFTER` sleeps :data:`SLOW_MS` (slow by construction, whatever the machine's load);
- ``/home``: two statements and some Python work; the same in both releases.

``Shop(engine, release)`` serves in-process (the unit tests); served by gunicorn
(``tests.incident_app:app``) it reads ``IOP_DB``, ``IOP_LOG``, ``IOPROFILER_RELEASE``,
``IOP_SUMMARY_EVERY``, ``IOP_SLOW_MS`` (default 500) and ``IOP_TIMINGS``: a timer around
the application (from its call until the server closes the body) and one around the
recorder's middleware write every request's duration to ``IOP_TIMINGS/<pid>.app`` and
``<pid>.outer`` at the worker's exit.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

import sqlalchemy as sa

RELATED = 12
SLOW_MS = 40.0
BEFORE, AFTER = "1a2b3c", "4f2a1c"  # the two releases
ROUTES = ("/listing/<int:id>", "/search", "/home")
LISTING = "SELECT id, title, price, seller_id FROM Listing WHERE id = ?"
FAVORITES = "SELECT user_id, listing_id, created FROM FavoriteListingUser WHERE listing_id = ?"
SEARCH = "SELECT id, title FROM Listing WHERE id = ? AND in_stock(id)"
HOME_COUNT = "SELECT count(*) FROM Listing"
HOME_LATEST = "SELECT id, title FROM Listing ORDER BY id DESC LIMIT 10"


def create(path: str | os.PathLike[str]) -> None:
    """The database: 100 listings, three favorites each."""
    with sa.create_engine(f"sqlite:///{path}").begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS Listing (id INTEGER PRIMARY KEY, title TEXT, "
            "price INTEGER, seller_id INTEGER)"
        )
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS FavoriteListingUser (user_id INTEGER, "
            "listing_id INTEGER, created INTEGER)"
        )
        conn.exec_driver_sql("DELETE FROM Listing")
        conn.exec_driver_sql("DELETE FROM FavoriteListingUser")
        conn.exec_driver_sql(
            "INSERT INTO Listing VALUES (?, ?, ?, ?)",
            [(n, f"listing {n}", n * 100, n % 7) for n in range(1, 101)],
        )
        conn.exec_driver_sql(
            "INSERT INTO FavoriteListingUser VALUES (?, ?, ?)",
            [(u, n, 0) for n in range(1, 101) for u in range(3)],
        )


def engine_for(path: str | os.PathLike[str], release: str) -> sa.Engine:
    """An engine whose connections know ``in_stock``: instant before, slow after."""
    engine = sa.create_engine(f"sqlite:///{path}")
    pause = SLOW_MS / 1000 if release == AFTER else 0.0

    def in_stock(listing_id: int) -> int:
        if pause:
            time.sleep(pause)
        return 1

    @sa.event.listens_for(engine, "connect")
    def _functions(dbapi_connection, _record) -> None:
        dbapi_connection.create_function("in_stock", 1, in_stock)

    return engine


class Shop:
    """The WSGI application; ``release`` chooses what the routes do."""

    def __init__(self, engine: sa.Engine, release: str) -> None:
        self.engine = engine
        self.release = release

    def __call__(self, environ, start_response):
        parts = environ["PATH_INFO"].strip("/").split("/")
        with self.engine.connect() as conn:
            if parts[0] == "listing":
                environ["ioprofiler.route"] = "/listing/<int:id>"
                body = self.listing(conn, int(parts[1]))
            elif parts[0] == "search":
                environ["ioprofiler.route"] = "/search"
                body = self.search(conn)
            else:
                environ["ioprofiler.route"] = "/home"
                body = self.home(conn)
        data = body.encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))]
        )
        return [data]

    def listing(self, conn: sa.Connection, listing_id: int) -> str:
        row = conn.exec_driver_sql(LISTING, (listing_id,)).one()
        if self.release == AFTER:
            related = [(listing_id + n) % 100 + 1 for n in range(RELATED)]
            return f"{row.title}: {sum(favorites(conn, other) for other in related)}"
        return str(row.title)

    def search(self, conn: sa.Connection) -> str:
        return str(conn.exec_driver_sql(SEARCH, (7,)).all())

    def home(self, conn: sa.Connection) -> str:
        count = conn.exec_driver_sql(HOME_COUNT).scalar()
        latest = conn.exec_driver_sql(HOME_LATEST).all()
        work = sum(n * n for n in range(20_000))  # the page's own Python: load moves it
        return f"{count} {len(latest)} {work % 7}"


def favorites(conn: sa.Connection, listing_id: int) -> int:
    return len(conn.exec_driver_sql(FAVORITES, (listing_id,)).all())


class Timed:
    """A timer around a WSGI application, as WSGI defines its time: from the call until the
    server closes the body; kept in memory, written at the worker's exit (``IOP_TIMINGS``)."""

    def __init__(self, app, name: str) -> None:
        self.app = app
        self.name = name
        self.measured: list[str] = []
        atexit.register(self.write)

    def __call__(self, environ, start_response):
        start = time.perf_counter()
        body = self.app(environ, start_response)
        return _TimedBody(body, self, environ, start)

    def write(self) -> None:
        folder = Path(os.environ["IOP_TIMINGS"])
        (folder / f"{os.getpid()}.{self.name}").write_text("".join(self.measured))


class _TimedBody:
    def __init__(self, body, timer: Timed, environ, start: float) -> None:
        self.body, self.timer, self.environ, self.start = body, timer, environ, start

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
        ms = (time.perf_counter() - self.start) * 1000
        self.timer.measured.append(f"{self.environ['ioprofiler.route']} {ms:.6f}\n")


def _served():
    import ioprofiler
    from ioprofiler.recorder import Recorder
    from ioprofiler.wsgi import IOProfilerMiddleware

    ioprofiler.install()
    release = os.environ["IOPROFILER_RELEASE"]
    shop = Shop(engine_for(os.environ["IOP_DB"], release), release)
    recorder = Recorder(
        os.environ["IOP_LOG"],
        summary_every=float(os.environ.get("IOP_SUMMARY_EVERY", "10")),
        slow_ms=float(os.environ.get("IOP_SLOW_MS", "500")),
    )
    return Timed(IOProfilerMiddleware(Timed(shop, "app"), record=recorder), "outer")


if "IOP_LOG" in os.environ and "IOP_TIMINGS" in os.environ:
    app = _served()
