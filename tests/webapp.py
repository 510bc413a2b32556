"""A small WSGI application for the middleware tests: SQLite shards and real memcached."""

from __future__ import annotations

import gzip
import json

import sqlalchemy as sa
from pymemcache.client.base import Client
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

HOSTILE = "<script>alert(1)</script>\"'</body>"
PAGE = "<!doctype html><html><head><title>Shop</title></head><body><h1>Listing</h1>{}</body></html>"


class ShopApp:
    def __init__(self, engines: dict[str, sa.Engine], cache_address: tuple[str, int]) -> None:
        self.engines = engines
        self.cache = Client(cache_address, default_noreply=False)
        self.seen_query_strings: list[str] = []
        self.request_traces: list[str | None] = []  # the trace the middleware handed over
        self.closed_bodies = 0
        self.urls = Map([Rule(f"/{name}", endpoint=name) for name in self.PAGES])

    PAGES = (
        "page",
        "plain",
        "api",
        "stream",
        "gzip",
        "large",
        "boom",
        "empty",
        "hostile",
        "close_query",
        "latin1",
        "csp",
        "late_start",
        "n_plus_one",
    )

    def count(self, shard: str, listing_id: int) -> int:
        with self.engines[shard].connect() as conn:
            return conn.execute(
                sa.text("SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :id"),
                {"id": listing_id},
            ).scalar_one()

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.seen_query_strings.append(environ.get("QUERY_STRING", ""))
        trace = environ.get("ioprofiler.trace")
        self.request_traces.append(None if trace is None else trace.name)
        if request.path == "/late_start":
            return self.late_start(start_response)
        try:
            endpoint, _ = self.urls.bind_to_environ(environ).match()
        except HTTPException as exc:
            return exc(environ, start_response)
        response = getattr(self, endpoint)(request)
        return response(environ, start_response)

    def page(self, request):
        favorites = self.count("dbshard01", 5773453)
        self.cache.get("Etsy_Cache_Results:c812331f123321:1121231")
        return Response(PAGE.format(f"<p>{favorites} favorites</p>"), mimetype="text/html")

    def n_plus_one(self, request):
        """Favorites counted one listing at a time: an N+1 finding."""
        counts = [self.count("dbshard01", listing_id) for listing_id in range(5773450, 5773456)]
        return Response(PAGE.format(f"<p>{sum(counts)} favorites</p>"), mimetype="text/html")

    def plain(self, request):
        return Response(f"favorites: {self.count('dbshard02', 5773453)}\n", mimetype="text/plain")

    def api(self, request):
        body = json.dumps({"favorites": self.count("dbshard03", 5773453)})
        return Response(body, mimetype="application/json")

    def stream(self, request):
        def generate():
            yield b"<html><body><ul>"
            for shard in ("dbshard01", "dbshard02", "dbshard03"):
                yield f"<li>{self.count(shard, 5773453)}</li>".encode()
            yield b"</ul></body></html>"

        return Response(generate(), mimetype="text/html")

    def gzip(self, request):
        data = gzip.compress(PAGE.format(self.count("dbshard01", 1)).encode(), mtime=0)
        response = Response(data, mimetype="text/html")
        response.headers["Content-Encoding"] = "gzip"
        return response

    def large(self, request):
        self.count("dbshard01", 1)
        return Response(PAGE.format("x" * (6 * 1024 * 1024)), mimetype="text/html")

    def boom(self, request):
        self.count("dbshard01", 1)
        raise ZeroDivisionError("the application's own failure")

    def empty(self, request):
        self.count("dbshard04", 1)
        return Response(status=204)

    def hostile(self, request):
        with self.engines["dbshard02"].begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO FavoriteListingUser (listing_id, user_id, note) "
                    "VALUES (:l, :u, :n)"
                ),
                {"l": 99, "u": 1, "n": HOSTILE},
            )
            conn.execute(
                sa.text(
                    "SELECT note FROM FavoriteListingUser WHERE note = '</body>' OR listing_id = :l"
                ),
                {"l": 99},
            ).scalar()
        self.cache.get("<script>alert(1)</script>".replace(" ", "_"))
        return Response(PAGE.format("<p>saved</p>"), mimetype="text/html")

    def close_query(self, request):
        app = self

        class Body:
            def __iter__(self):
                yield PAGE.format("body").encode()

            def close(self):
                app.closed_bodies += 1
                app.count("dbshard04", 7)

        return Response(Body(), mimetype="text/html", direct_passthrough=True)

    def latin1(self, request):
        self.count("dbshard01", 1)
        body = PAGE.format("Caf\xe9").encode("latin-1")
        return Response(body, content_type="text/html; charset=iso-8859-1")

    def csp(self, request):
        self.count("dbshard01", 1)
        response = Response(PAGE.format("strict"), mimetype="text/html")
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'nonce-abc123'; style-src 'nonce-abc123'"
        )
        return response

    def late_start(self, start_response):
        # A generator application: start_response is only called when iteration begins.
        self.count("dbshard01", 2)
        start_response("200 OK", [("Content-Type", "text/html")])
        yield PAGE.format("late").encode()
