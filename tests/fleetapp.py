"""A small sharded shop for the exporter tests: two routes over SQLite shards and memcached.

``/listing/<id>`` (route ``listing_show``): three statements on dbshard01, one on dbshard02,
a cache miss, a set and a hit. ``/cart`` (route ``cart``): two statements on dbshard03 and
one that fails (the application catches it).
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from pymemcache.client.base import Client
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ioprofiler.sinks import FinishedRequest

COUNT = sa.text("SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :id")


class FleetShop:
    def __init__(self, engines: dict[str, sa.Engine], cache_address: tuple[str, int]) -> None:
        self.engines = engines
        self.cache = Client(cache_address, default_noreply=False)
        self.urls = Map(
            [
                Rule("/listing/<int:listing_id>", endpoint="listing_show"),
                Rule("/cart", endpoint="cart"),
            ]
        )

    def __call__(self, environ, start_response):
        adapter = self.urls.bind_to_environ(environ)
        endpoint, values = adapter.match()
        environ["ioprofiler.route"] = endpoint
        body = getattr(self, endpoint)(Request(environ), **values)
        return Response(body, mimetype="text/plain")(environ, start_response)

    def count(self, shard: str, listing_id: int) -> int:
        with self.engines[shard].connect() as conn:
            return conn.execute(COUNT, {"id": listing_id}).scalar_one()

    def listing_show(self, request, listing_id: int) -> str:
        total = sum(self.count("dbshard01", listing_id + i) for i in range(3))
        total += self.count("dbshard02", listing_id)
        key = f"listing:{listing_id}"
        if self.cache.get(key) is None:
            self.cache.set(key, str(total))
        self.cache.get(key)
        return f"{total} favorites\n"

    def cart(self, request) -> str:
        total = self.count("dbshard03", 1) + self.count("dbshard03", 2)
        try:
            with self.engines["dbshard03"].connect() as conn:
                conn.exec_driver_sql("SELECT * FROM no_such_table")
        except sa.exc.OperationalError:
            pass
        return f"cart {total}\n"


class Collect:
    """A sink that keeps the finished requests, to compare with what an exporter sent."""

    def __init__(self) -> None:
        self.requests: list[FinishedRequest] = []
        self._lock = threading.Lock()

    def handle(self, request: FinishedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def close(self) -> None:
        pass
