"""``follow_requests=True``: the panel lists the page's own fetch and XHR requests."""

from __future__ import annotations

import json
import threading

import pytest
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server
from werkzeug.test import Client

from ioprofiler import access
from ioprofiler.store import MemoryStore, new_id
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.browser import chromium_or_skip
from tests.follow_app import FollowedShop, OtherOrigin

PANEL = "document.getElementById('ioprofiler-panel')"
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
MARKED = {"X-IOProfiler-Follow": "1"}
SECRET = "a-secret-long-enough-for-token"


@pytest.fixture
def start_server():
    running = []

    def start(app) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def shop(sqlite_shards, memcached):
    return FollowedShop(sqlite_shards, memcached.address)


@pytest.fixture
def browser():
    driver = chromium_or_skip()
    yield driver
    driver.quit()


def rows_listed(browser, count: int) -> list[list[str]]:
    """The panel's rows of followed requests, once ``count`` are there."""
    script = (
        f"const r = {PANEL}.shadowRoot; return Array.from(r.querySelectorAll('tr.q'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent));"
    )
    WebDriverWait(browser, 20).until(
        lambda b: (
            b.execute_script("return window.done === true")
            and len(b.execute_script(script)) >= count
        )
    )
    return browser.execute_script(script)


def test_the_panel_lists_the_pages_own_requests_and_opens_their_listings(
    shop, start_server, browser
):
    other = OtherOrigin()
    shop.other_origin = start_server(other)
    base = start_server(IOProfilerMiddleware(shop, follow_requests=True))
    browser.get(f"{base}/loads?ioprofiler=1")
    rows = rows_listed(browser, 4)
    assert sorted((method, path, status) for method, path, status, *_ in rows) == [
        ("GET", "/api", "200 OK"),
        ("GET", "/fragment", "200 OK"),
        ("GET", "/plain", "200 OK"),
        ("POST", "/listings?page=2", "200 OK"),
    ]
    by_path = {row[1]: row for row in rows}
    assert by_path["/listings?page=2"][4] == "6" and "N+1" in by_path["/listings?page=2"][5]
    # on a loaded machine a stall may add a slow_call finding: look at the N+1 one
    assert by_path["/api"][4] == "1" and "N+1" not in by_path["/api"][5]
    assert by_path["/fragment"][4] == "2"  # a query and a cache read
    opened = browser.execute_script(
        f"""const r = {PANEL}.shadowRoot;
        const row = Array.from(r.querySelectorAll('tr.q'))
            .find(tr => tr.cells[1].textContent === '/listings?page=2');
        row.click();
        const box = row.nextElementSibling.querySelector('.body');
        return {{
            findings: box.querySelector('ol.f').textContent,
            calls: Array.from(box.querySelectorAll('table.l tr')).slice(1)
                .map(tr => tr.cells[5].textContent),
            bars: box.querySelectorAll('.bar i').length,
        }};"""
    )
    assert (
        "N+1 SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?" in (opened["findings"])
    )
    assert [c[c.index("SELECT") :] for c in opened["calls"] if "SELECT" in c] == [
        f"SELECT count(*) FROM FavoriteListingUser WHERE listing_id = {n}"
        for n in range(5773450, 5773456)
    ]
    assert opened["bars"] == len(opened["calls"])
    # the swapped-in fragment is the application's, without a panel of its own
    swapped = browser.execute_script("return document.getElementById('swap').innerHTML")
    assert swapped.startswith('<p class="swapped">') and "ioprofiler" not in swapped
    # the other site got the page's request, and nothing of ioprofiler's
    assert other.seen and all(
        "HTTP_X_IOPROFILER_FOLLOW" not in headers
        and "ioprofiler" not in headers.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").lower()
        for headers in other.seen
    )


def test_a_fetch_sent_while_the_page_is_parsed_is_followed(shop, start_server, browser):
    base = start_server(IOProfilerMiddleware(shop, follow_requests=True))
    browser.get(f"{base}/loads_at_once?ioprofiler=1")
    rows = rows_listed(browser, 2)
    assert sorted(row[1] for row in rows) == ["/api", "/listings"]


def test_under_a_strict_csp_with_a_nonce_the_panel_follows_the_page(shop, start_server, browser):
    shop.other_origin = start_server(OtherOrigin())
    base = start_server(IOProfilerMiddleware(shop, follow_requests=True))
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.__violations = []; document.addEventListener("
            "'securitypolicyviolation', e => window.__violations.push(e.violatedDirective));"
        },
    )
    browser.get(f"{base}/loads_under_csp?ioprofiler=1")
    rows = rows_listed(browser, 4)
    assert sorted(row[1] for row in rows) == ["/api", "/fragment", "/listings?page=2", "/plain"]
    browser.execute_script(f"{PANEL}.shadowRoot.querySelector('tr.q').click()")
    assert browser.execute_script("return window.__violations") == []


def test_requests_made_after_the_panel_is_collapsed_are_listed(shop, start_server, browser):
    base = start_server(IOProfilerMiddleware(shop, follow_requests=True))
    browser.get(f"{base}/page?ioprofiler=1")
    browser.execute_script(
        f"{PANEL}.shadowRoot.querySelector('summary').click();"
        "window.done = false; fetch('/listings').then(r => r.json())"
        ".then(() => { window.done = true; });"
    )
    rows = rows_listed(browser, 1)
    assert [row[:3] for row in rows] == [["GET", "/listings", "200 OK"]]
    summary = browser.execute_script(
        f"const r = {PANEL}.shadowRoot; "
        "return [r.querySelector('details').open, r.querySelector('summary').textContent];"
    )
    assert summary[0] is False and summary[1].endswith("1 request of this page")


def test_a_refused_client_gets_the_same_bytes_marked_or_not_and_no_id(shop):
    app = IOProfilerMiddleware(shop, follow_requests=True, allow=access.token(SECRET))
    plain = IOProfilerMiddleware(shop, allow=access.token(SECRET))
    wrong = {"X-IOProfiler-Token": "not-the-secret-at-all"}
    for path in ("/listings", "/fragment", "/page"):
        marked = Client(app).get(path, headers={**MARKED, **wrong}, environ_base=LOCAL)
        unmarked = Client(plain).get(path, headers=wrong, environ_base=LOCAL)
        assert marked.status == unmarked.status
        assert marked.headers == unmarked.headers and marked.data == unmarked.data
        assert "X-IOProfiler-Id" not in marked.headers
    allowed = Client(app).get("/listings", headers={**MARKED, "X-IOProfiler-Token": SECRET})
    allowed.close()
    trace_id = allowed.headers["X-IOProfiler-Id"]
    # a refused client asking for a kept trace gets the application's own 404
    refused = Client(app).get(f"/__ioprofiler__/traces/{trace_id}", headers={**MARKED, **wrong})
    unknown_path = Client(shop).get(f"/__ioprofiler__/traces/{trace_id}")
    assert (refused.status, refused.headers, refused.data) == (
        unknown_path.status,
        unknown_path.headers,
        unknown_path.data,
    )
    assert refused.status_code == 404


def test_unknown_and_expired_ids_get_the_applications_404(shop):
    now = [0.0]
    app = IOProfilerMiddleware(
        shop, follow_requests=True, store=MemoryStore(ttl=60, clock=lambda: now[0])
    )
    client = Client(app)
    response = client.get("/listings", headers=MARKED, environ_base=LOCAL)
    response.close()
    trace_id = response.headers["X-IOProfiler-Id"]
    assert len(trace_id) == 32 and int(trace_id, 16) >= 0
    url = f"/__ioprofiler__/traces/{trace_id}"
    found = client.get(url, headers=MARKED, environ_base=LOCAL)
    assert found.status_code == 200 and found.json["path"] == "/listings"
    assert found.headers["Cache-Control"] == "no-store"
    now[0] = 61.0
    for asked in (url, f"/__ioprofiler__/traces/{new_id()}", "/__ioprofiler__/traces/x"):
        gone = client.get(asked, headers=MARKED, environ_base=LOCAL)
        unknown_path = Client(shop).get(asked)
        assert (gone.status, gone.headers, gone.data) == (
            unknown_path.status,
            unknown_path.headers,
            unknown_path.data,
        )


def test_off_by_default_nothing_is_marked_kept_or_answered(shop):
    client = Client(IOProfilerMiddleware(shop))
    response = client.get("/listings", headers=MARKED, environ_base=LOCAL)
    assert "X-IOProfiler-Id" not in response.headers
    assert "Server-Timing" not in response.headers
    page = client.get("/page?ioprofiler=1", environ_base=LOCAL)
    assert b"data-follow" not in page.data and b"X-IOProfiler-Follow" not in page.data


def test_only_profiled_requests_from_allowed_clients_are_kept(shop):
    store = MemoryStore()
    app = IOProfilerMiddleware(shop, follow_requests=True, store=store)
    client = Client(app)
    client.get("/listings", environ_base=LOCAL).close()  # not marked
    client.get("/listings", headers=MARKED, environ_base={"REMOTE_ADDR": "203.0.113.9"}).close()
    client.get("/page?ioprofiler=1", environ_base={"REMOTE_ADDR": "203.0.113.9"}).close()
    assert store.recent(10) == []
    client.get("/page?ioprofiler=1", environ_base=LOCAL).close()  # the page itself
    client.get("/listings", headers=MARKED, environ_base=LOCAL).close()  # its request
    kept = [json.loads(entry) for entry in store.recent(10)]
    assert [entry["path"] for entry in kept] == ["/listings", "/page?ioprofiler=1"]


def test_the_memory_store_keeps_its_byte_bound_dropping_the_oldest():
    store = MemoryStore(max_bytes=1000, ttl=60)
    ids = [new_id() for _ in range(5)]
    for trace_id in ids:
        store.put(trace_id, b"x" * 300)
    assert store.size == 900
    assert [store.get(i) is not None for i in ids] == [False, False, True, True, True]
    store.put(new_id(), b"x" * 1001)  # larger than the bound: not kept
    assert store.size == 900


def test_the_panel_uses_the_pages_csp_nonce_or_says_why_it_cannot_follow(shop):
    client = Client(IOProfilerMiddleware(shop, follow_requests=True))
    page = client.get("/csp?ioprofiler=1", environ_base=LOCAL).get_data(as_text=True)
    # the csp page's policy has a nonce but default-src 'none': no fetch to the site itself
    assert '<script nonce="abc123">' in page and '<style nonce="abc123">' in page
    assert "&#x27;self&#x27; is not in connect-src" in page and "data-follow" not in page


@pytest.mark.parametrize(
    "policy",
    ["script-src 'self'", "default-src 'self'", "script-src 'unsafe-inline' 'sha256-abc='"],
)
def test_a_csp_that_stops_inline_script_is_named_in_the_panel(policy):
    def app(environ, start_response):
        start_response(
            "200 OK", [("Content-Type", "text/html"), ("Content-Security-Policy", policy)]
        )
        return [b"<html><body>page</body></html>"]

    client = Client(IOProfilerMiddleware(app, follow_requests=True))
    page = client.get("/?ioprofiler=1", environ_base=LOCAL).get_data(as_text=True)
    assert "lets no inline script run and has no nonce" in page
    assert "data-follow" not in page and "X-IOProfiler-Follow" not in page


def test_a_listing_past_the_stores_bound_is_listed_with_a_note_saying_so(shop):
    store = MemoryStore(max_bytes=2000)  # the N+1 endpoint's listing is about 4 KB
    client = Client(IOProfilerMiddleware(shop, follow_requests=True, store=store))
    marked = client.get("/listings", headers=MARKED, environ_base=LOCAL)
    marked.close()
    url = f"/__ioprofiler__/traces/{marked.headers['X-IOProfiler-Id']}"
    entry = client.get(url, headers=MARKED, environ_base=LOCAL).json
    assert entry["calls"] == 6 and "N+1" in entry["findings"]
    assert "is past what the store keeps (2,000 bytes)" in entry["html"]
    assert "?ioprofiler=text" in entry["html"] and "SELECT" not in entry["html"]


def test_the_recent_requests_page_lists_the_kept_requests_newest_first(shop):
    client = Client(IOProfilerMiddleware(shop, follow_requests=True))
    client.get("/page?ioprofiler=1", environ_base=LOCAL).close()
    client.get("/listings", headers=MARKED, environ_base=LOCAL).close()
    client.get("/api?ioprofiler=json", environ_base=LOCAL).close()
    page = client.get("/__ioprofiler__/", environ_base=LOCAL)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    lines = [part.split("</summary>")[0] for part in html.split("<summary>")[1:]]
    assert [line.split("<span>")[0] for line in lines] == [
        "GET /api?ioprofiler=json &#8594; 200 OK",
        "GET /listings &#8594; 200 OK",
        "GET /page?ioprofiler=1 &#8594; 200 OK",
    ]
    assert '<b class="n1">N+1</b>' in lines[1] and "<span>6 calls</span>" in lines[1]
    assert "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773450" in html
    nonce = page.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<style nonce="{nonce}">' in html and "<script" not in html
    assert page.headers["Cache-Control"] == "no-store"


def test_the_recent_requests_page_is_the_applications_for_a_refused_client_or_when_off(shop):
    refused = Client(IOProfilerMiddleware(shop, follow_requests=True)).get(
        "/__ioprofiler__/", environ_base={"REMOTE_ADDR": "203.0.113.9"}
    )
    off = Client(IOProfilerMiddleware(shop)).get("/__ioprofiler__/", environ_base=LOCAL)
    plain = Client(shop).get("/__ioprofiler__/")
    for got in (refused, off):
        assert (got.status, got.headers, got.data) == (plain.status, plain.headers, plain.data)


def test_a_followed_trace_is_kept_before_the_client_has_the_body(shop):
    # The panel asks for the trace once the body has arrived, maybe of another worker,
    # while the server may not yet have closed the response: the trace is kept by then.
    client = Client(IOProfilerMiddleware(shop, follow_requests=True))
    marked = client.get("/listings", headers=MARKED, environ_base=LOCAL, buffered=False)
    body = b"".join(marked.iter_encoded())  # read, not closed
    assert json.loads(body)["favorites"]
    url = f"/__ioprofiler__/traces/{marked.headers['X-IOProfiler-Id']}"
    assert client.get(url, headers=MARKED, environ_base=LOCAL).json["calls"] == 6
    assert "db;dur=" in marked.headers["Server-Timing"]
    marked.close()


def test_the_demo_shops_page_loaded_by_fetch_shows_its_requests_in_the_panel(
    tmp_path, memcached, start_server, browser
):
    from pymemcache.client.base import Client as MemcacheClient

    from demo_app.app import ShopApp
    from demo_app.shop import Shop

    demo = Shop.from_urls(f"sqlite:///{tmp_path}/{{shard}}.db", MemcacheClient(memcached.address))
    base = start_server(IOProfilerMiddleware(ShopApp(demo), follow_requests=True))
    browser.get(f"{base}/browse/7?ioprofiler=1")
    WebDriverWait(browser, 20).until(
        lambda b: b.execute_script("return document.body.getAttribute('data-loaded')") == "yes"
    )
    script = (
        f"return Array.from({PANEL}.shadowRoot.querySelectorAll('tr.q'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent));"
    )
    WebDriverWait(browser, 20).until(lambda b: len(b.execute_script(script)) == 5)
    rows = browser.execute_script(script)
    by_path = {row[1]: row for row in rows}
    assert "N+1" in by_path["/api/shop/7"][5]
    assert sum(path.startswith("/api/listing/") for path in by_path) == 4
    demo.close()


def test_with_a_recorder_the_recent_requests_page_lists_its_kept_requests_too(shop, tmp_path):
    from ioprofiler.recorder import Recorder

    log = tmp_path / "io.jsonl"
    recorder = Recorder(log, max_calls=3)  # the N+1 endpoint's 6 statements: kept
    app = IOProfilerMiddleware(shop, follow_requests=True, record=recorder)
    client = Client(app)
    client.get("/listings?page=2", environ_base=LOCAL).close()  # neither marked nor asked
    client.get("/api", environ_base=LOCAL).close()  # not kept: one statement
    recorder.flush()
    html = client.get("/__ioprofiler__/", environ_base=LOCAL).get_data(as_text=True)
    assert "the 0 requests kept" in html
    assert f"The 1 request last kept in {log}, newest first" in html
    assert "GET /listings?page=? &#8594; 200" in html and "/api" not in html
    assert "listing_id = ?" in html and '<b class="n1">N+1</b>' in html
    app.close()


def test_the_marking_script_goes_just_before_the_pages_first_script(shop):
    client = Client(IOProfilerMiddleware(shop, follow_requests=True))
    page = client.get("/loads_at_once?ioprofiler=1", environ_base=LOCAL).get_data(as_text=True)
    before, marker, after = page.partition("<script>(function(){if(window.__ioprofiler)")
    assert before == "<!doctype html><html><head><title>Shop</title></head><body><h1>Listing</h1>"
    assert marker and after.split("</script>", 1)[1].startswith("<script>window.loaded =")
    plain = client.get("/page?ioprofiler=1", environ_base=LOCAL).get_data(as_text=True)
    assert plain.count("<script") == 1  # no page script: the panel's marks the requests
