"""The demo shop's HTML: plain string templates, every value escaped."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body{margin:0;font:16px/1.5 Georgia,'Times New Roman',serif;color:#2d2a26;background:#faf7f2}
header{background:#f1641e;color:#fff;padding:14px 28px;display:flex;gap:24px;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:bold}
header .brand{font-size:24px;letter-spacing:.5px}
main{max-width:980px;margin:24px auto;padding:0 20px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:16px}
.card{background:#fff;border:1px solid #e7e0d6;border-radius:8px;padding:14px}
.card a{color:#222;text-decoration:none;font-weight:bold}
.muted{color:#7a7166;font-size:14px}
.price{font-size:22px;color:#1c7c54}
.hint{background:#fff8e1;border:1px solid #f3d98b;padding:10px 14px;border-radius:6px;
font-size:14px}
code{background:#f1ece4;padding:1px 4px;border-radius:3px}
"""


LAYOUT_TAIL = "</main></body></html>"


def layout(title: str, body: str) -> str:
    return layout_head(title) + body + LAYOUT_TAIL


def layout_head(title: str) -> str:
    """The page up to the start of its content, for pages that stream the rest."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)} · Sharded Shop</title><style>{STYLE}</style></head><body>"
        "<header><a class='brand' href='/'>Sharded Shop</a>"
        "<a href='/shop/7'>A shop (N+1)</a><a href='/shop/7?fixed=1'>Same shop, batched</a>"
        "<a href='/slow'>Slow page</a><a href='/broken/5773401'>Failing query</a>"
        "<a href='/stream'>Streamed</a><a href='/browse/7'>Loaded by fetch</a></header><main>"
    )


def _price(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def home(featured: list[dict[str, Any]]) -> str:
    cards = "".join(
        f"<div class='card'><a href='/listing/{item['listing_id']}'>{escape(item['title'])}</a>"
        f"<div class='muted'>listing {item['listing_id']} on {escape(item['shard'])} · "
        f"<a href='/shop/{item['shop_id']}'>shop {item['shop_id']}</a></div>"
        f"<div class='muted'>{_favorites(item['favorites'])}</div></div>"
        for item in featured
    )
    hint = (
        "<p class='hint'>Add <code>?ioprofiler=1</code> to any URL to see every shard query and "
        "memcache call this page made, inline. <code>?ioprofiler=text</code> gives the listing "
        "as plain text, <code>?ioprofiler=json</code> as JSON.</p>"
    )
    return layout("Featured", f"<h1>Featured listings</h1>{hint}<div class='grid'>{cards}</div>")


def _favorites(count: int | None) -> str:
    if count is None:
        return "favorites not cached yet"
    return f"{count} favorite{'s' if count != 1 else ''}"


def listing(item: dict[str, Any]) -> str:
    shop = item["shop"]
    body = (
        f"<h1>{escape(item['title'])}</h1>"
        f"<p class='price'>{_price(item['price_cents'])}</p>"
        f"<p>Sold by <a href='/shop/{shop['shop_id']}'>{escape(shop['name'])}</a> · "
        f"{_favorites(item['favorites'])}</p>"
        f"<p class='muted'>listing {item['listing_id']} lives on {escape(item['shard'])}; "
        "the page's data is cached in memcached: reload to see a HIT and no query.</p>"
    )
    return layout(item["title"], body)


def shop(data: dict[str, Any], fans: list[str], fixed: bool) -> str:
    cards = "".join(
        f"<div class='card'><a href='/listing/{item['listing_id']}'>{escape(item['title'])}</a>"
        f"<div class='price'>{_price(item['price_cents'])}</div></div>"
        for item in data["listings"]
    )
    how = (
        "batched: one index query and one query per shard"
        if fixed
        else "one query per fan, each on the fan's own shard: an N+1 "
        f"(<a href='/shop/{data['shop_id']}?fixed=1'>see it batched</a>)"
    )
    people = ", ".join(escape(login) for login in fans) or "nobody yet"
    body = (
        f"<h1>{escape(data['name'])}</h1><p class='muted'>shop {data['shop_id']} on "
        f"{escape(data['shard'])}</p><div class='grid'>{cards}</div>"
        f"<h2>Fans</h2><p>{people}</p><p class='hint'>Fans are loaded {how}.</p>"
    )
    return layout(data["name"], body)


def message(title: str, text: str) -> str:
    return layout(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


BROWSE_SCRIPT = """
window.addEventListener("DOMContentLoaded", function () {
  var shop = document.body.querySelector("[data-shop]").getAttribute("data-shop");
  fetch("/api/shop/" + shop).then(function (r) { return r.json(); }).then(function (data) {
    document.getElementById("name").textContent = data.name;
    document.getElementById("fans").textContent = data.fans.join(", ") || "nobody yet";
    // one after the other: the demo shares one memcached client, which is not thread-safe
    var items = [];
    return data.listings.slice(0, 4).reduce(function (done, item) {
      return done.then(function () {
        return fetch("/api/listing/" + item.listing_id).then(function (r) { return r.json(); })
          .then(function (listing) { items.push(listing); });
      });
    }, Promise.resolve()).then(function () { return items; });
  }).then(function (items) {
    var grid = document.getElementById("listings");
    items.forEach(function (item) {
      var card = document.createElement("div");
      card.className = "card";
      card.textContent = item.title + " · " + item.shard;
      grid.appendChild(card);
    });
    document.body.setAttribute("data-loaded", "yes");
  });
});
"""


def browse(shop_id: int) -> str:
    """A shop page whose data arrives by fetch once it has loaded, as many pages' does."""
    body = (
        f"<h1 id='name' data-shop='{shop_id}'>Loading…</h1>"
        "<p class='hint'>This page loads its data with <code>fetch</code> after it has "
        "loaded. With <code>?ioprofiler=1</code> the panel lists each of those requests "
        "(the demo runs with <code>follow_requests=True</code>): open the shop's JSON, "
        "with its N+1, from there.</p>"
        "<div class='grid' id='listings'></div><h2>Fans</h2><p id='fans'>…</p>"
        f"<script>{BROWSE_SCRIPT}</script>"
    )
    return layout("Loaded by fetch", body)
