"""The followed shop that the shared-store test serves with ``gunicorn -w 4``, configured by
environment variables (gunicorn imports it in each worker): IOP_SHARDS (a directory of
dbshard0N.db files), IOP_MEMCACHED (host:port), IOP_STORE (the store's URL). Each response
names the worker that served it in ``X-Worker``."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from ioprofiler.wsgi import IOProfilerMiddleware
from tests.conftest import SHARDS
from tests.follow_app import FollowedShop


class WorkerShop(FollowedShop):
    def __call__(self, environ, start_response):
        def with_worker(status, headers, *exc_info):
            return start_response(status, [*headers, ("X-Worker", str(os.getpid()))], *exc_info)

        return super().__call__(environ, with_worker)


_shards = Path(os.environ["IOP_SHARDS"])
_host, _port = os.environ["IOP_MEMCACHED"].rsplit(":", 1)
engines = {name: sa.create_engine(f"sqlite:///{_shards / name}.db") for name in SHARDS}
app = IOProfilerMiddleware(
    WorkerShop(engines, (_host, int(_port))),
    follow_requests=True,
    store=os.environ["IOP_STORE"],
)
