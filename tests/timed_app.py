"""The app the "every request counted" test serves with gunicorn: each request sleeps a
duration its URL names and runs a statement on a SQLite file, behind the recorder; a timer
around the application (from the call until the server closes the body) writes every
request's duration, as the worker measured it, to ``IOP_TIMINGS/<pid>.app`` at the worker's
exit (one line per request: route and milliseconds), and a second timer around the middleware
to ``IOP_TIMINGS/<pid>.outer``: the recorder's figure lies between the two, however long a
busy machine keeps the worker away between them.

IOP_LOG (the recorder's log), IOP_DB (the SQLite file), IOP_TIMINGS (a directory),
IOP_SUMMARY_EVERY (the recorder's summary interval).
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

import sqlalchemy as sa

import ioprofiler
from ioprofiler.recorder import Recorder
from ioprofiler.wsgi import IOProfilerMiddleware

ROUTES = ("/fast/<int:ms>", "/slow/<int:ms>")


def shop(environ, start_response):
    """``/fast/12``, ``/slow/80``: sleep that many milliseconds, then one statement."""
    kind, ms = environ["PATH_INFO"].strip("/").split("/")
    environ["ioprofiler.route"] = f"/{kind}/<int:ms>"
    time.sleep(int(ms) / 1000)
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT ?", (int(ms),)).scalar()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


class Timed:
    """A timer around the application, as WSGI defines its time: from the call until the
    server closes the body. Durations are kept in memory and written at the worker's exit,
    so that writing them is not inside the time the recorder measures."""

    def __init__(self, app, name: str) -> None:
        self.app = app
        self.name = name
        self.measured: list[tuple[str, float]] = []
        atexit.register(self.write)

    def __call__(self, environ, start_response):
        start = time.perf_counter()
        body = self.app(environ, start_response)
        return TimedBody(body, lambda: self.stop(environ["ioprofiler.route"], start))

    def stop(self, route: str, start: float) -> None:
        self.measured.append((route, (time.perf_counter() - start) * 1000))

    def write(self) -> None:
        lines = "".join(f"{route} {ms:.6f}\n" for route, ms in self.measured)
        (Path(os.environ["IOP_TIMINGS"]) / f"{os.getpid()}.{self.name}").write_text(lines)


class TimedBody:
    def __init__(self, body, stop) -> None:
        self.body = body
        self.stop = stop

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()  # the middleware's own close: the request ends there, inside this timer
        self.stop()


ioprofiler.install()
engine = sa.create_engine(f"sqlite:///{os.environ['IOP_DB']}")
recorder = Recorder(
    os.environ["IOP_LOG"], summary_every=float(os.environ.get("IOP_SUMMARY_EVERY", "10"))
)
app = Timed(IOProfilerMiddleware(Timed(shop, "app"), record=recorder), "outer")
