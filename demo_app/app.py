"""The demo shop as a werkzeug WSGI application.

>>> app = ShopApp(Shop.from_urls("sqlite:///data/{shard}.db", Client(("127.0.0.1", 11211))))
>>> app = IOProfilerMiddleware(app)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import sqlalchemy as sa
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import NotFound as HTTPNotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from demo_app import pages
from demo_app.data import SHARDS
from demo_app.shop import NotFound, Shop

log = logging.getLogger("demo_app")

URLS = Map(
    [
        Rule("/", endpoint="home"),
        Rule("/listing/<int:listing_id>", endpoint="listing"),
        Rule("/shop/<int:shop_id>", endpoint="shop"),
        Rule("/slow", endpoint="slow"),
        Rule("/broken/<int:listing_id>", endpoint="broken"),
        Rule("/api/listing/<int:listing_id>", endpoint="api_listing"),
        Rule("/browse/<int:shop_id>", endpoint="browse"),
        Rule("/api/shop/<int:shop_id>", endpoint="api_shop"),
        Rule("/stream", endpoint="stream"),
    ]
)


def html(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/html")


# The shop's two query helpers are never the interesting callsite: their callers are.
CALLSITE_SKIP = ["demo_app.shop:_query", "demo_app.shop:_index"]


class ShopApp:
    """Routes requests to the shop's pages."""

    def __init__(self, shop: Shop) -> None:
        self.store = shop

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            endpoint, values = URLS.bind_to_environ(environ).match()
            response = getattr(self, endpoint)(request, **values)
        except NotFound as exc:
            response = html(pages.message("Not found", str(exc)), 404)
        except HTTPNotFound:
            response = html(pages.message("Not found", f"nothing at {request.path}"), 404)
        except HTTPException as exc:
            return exc(environ, start_response)
        return response(environ, start_response)

    def home(self, request: Request) -> Response:
        return html(pages.home(self.store.featured()))

    def listing(self, request: Request, listing_id: int) -> Response:
        return html(pages.listing(self.store.listing(listing_id)))

    def shop(self, request: Request, shop_id: int) -> Response:
        data = self.store.shop(shop_id)
        fixed = request.args.get("fixed") == "1"
        fans = self.store.shop_fans_batched(data) if fixed else self.store.shop_fans(data)
        return html(pages.shop(data, fans, fixed))

    def slow(self, request: Request) -> Response:
        seconds = self.store.slow_report()
        return html(pages.message("A slow page", f"Its query on dbshard03 took {seconds} s."))

    def broken(self, request: Request, listing_id: int) -> Response:
        item = self.store.listing(listing_id)
        try:
            reviews = self.store.reviews(listing_id)
            note = f"{len(reviews)} reviews"
        except sa.exc.DBAPIError:
            log.info("reviews are unavailable for listing %s", listing_id)
            note = "Reviews could not be loaded (the query failed; the page carries on)."
        return html(pages.message(item["title"], note))

    def api_listing(self, request: Request, listing_id: int) -> Response:
        return Response(json.dumps(self.store.listing(listing_id)), mimetype="application/json")

    def browse(self, request: Request, shop_id: int) -> Response:
        """A page that loads its data after it has loaded, by fetch (follow_requests)."""
        return html(pages.browse(shop_id))

    def api_shop(self, request: Request, shop_id: int) -> Response:
        """The shop's listings and fans as JSON, the fans loaded one query each (an N+1)."""
        data = self.store.shop(shop_id)
        fans = self.store.shop_fans(data)
        listings = [{k: item[k] for k in ("listing_id", "title")} for item in data["listings"]]
        body = {"name": data["name"], "listings": listings, "fans": fans}
        return Response(json.dumps(body), mimetype="application/json")

    def stream(self, request: Request) -> Response:
        def generate() -> Iterator[str]:
            yield pages.layout_head("Streamed") + "<h1>Shards, counted while streaming</h1><ul>"
            for shard in SHARDS:
                counts = self.store.shard_counts(shard)
                summary = ", ".join(f"{count} {table}" for table, count in counts.items())
                yield f"<li>{shard}: {summary}</li>"
            yield "</ul>" + pages.LAYOUT_TAIL

        return Response(generate(), mimetype="text/html")
