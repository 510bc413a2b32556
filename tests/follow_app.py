"""The shop with a page that loads its data after it has loaded, as pages do: three
same-origin fetches (one an N+1 JSON endpoint), one XHR swapping in an HTML fragment
(HTMX-style), and one fetch to another origin."""

from __future__ import annotations

import json

from werkzeug.wrappers import Response

from tests.webapp import PAGE, ShopApp

LOADS = """
<div id="swap"></div>
<script>
window.addEventListener("DOMContentLoaded", function () {
  var other = document.body.getAttribute("data-other");
  window.loaded = Promise.all([
    fetch("/api").then(function (r) { return r.json(); }),
    fetch("/listings?page=2", {method: "POST", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); }),
    fetch(new Request("/plain")).then(function (r) { return r.text(); }),
    new Promise(function (done) {
      var x = new XMLHttpRequest();
      x.open("GET", "/fragment");
      x.onload = function () {
        document.getElementById("swap").innerHTML = x.responseText;
        done();
      };
      x.send();
    }),
    fetch(other + "/elsewhere").then(function (r) { return r.text(); }),
  ]).then(function () { window.done = true; });
});
</script>
"""


class FollowedShop(ShopApp):
    PAGES = (*ShopApp.PAGES, "loads", "loads_under_csp", "loads_at_once", "listings", "fragment")
    NONCE = "r4nd0mN0nce"

    def __init__(self, *args, other_origin: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.other_origin = other_origin

    def loads(self, request):
        body = PAGE.format(LOADS).replace("<body>", f'<body data-other="{self.other_origin}">')
        return Response(body, mimetype="text/html")

    def loads_under_csp(self, request):
        """The same page under a strict policy with a nonce, as its own script has."""
        response = self.loads(request)
        body = response.get_data(as_text=True).replace("<script>", f'<script nonce="{self.NONCE}">')
        response.set_data(body)
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'nonce-{self.NONCE}'; "
            f"style-src 'nonce-{self.NONCE}'; connect-src 'self' {self.other_origin}"
        )
        return response

    def loads_at_once(self, request):
        """A script at the end of the body that fetches while the page is still parsed."""
        script = (
            "<script>window.loaded = Promise.all([fetch('/api'), fetch('/listings')])"
            ".then(function () { window.done = true; });</script>"
        )
        return Response(PAGE.format(script), mimetype="text/html")

    def listings(self, request):
        """Favorites counted one listing at a time: an N+1 finding."""
        counts = [self.count("dbshard01", listing_id) for listing_id in range(5773450, 5773456)]
        return Response(json.dumps({"favorites": counts}), mimetype="application/json")

    def fragment(self, request):
        self.cache.get("fragment:listing:5773453")
        return Response(
            f"<p class='swapped'>{self.count('dbshard02', 5773453)} favorites</p>",
            mimetype="text/html",
        )


class OtherOrigin:
    """A second site: records the headers of every request it gets, answers with CORS."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def __call__(self, environ, start_response):
        self.seen.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        response = Response("elsewhere", mimetype="text/plain")
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response(environ, start_response)
