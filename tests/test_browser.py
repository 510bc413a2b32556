"""A profiled page in headless Chromium: the panel is visible, isolated and complete."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from ioprofiler import access
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.browser import chromium_or_skip
from tests.webapp import ShopApp

PANEL = "document.getElementById('ioprofiler-panel')"


@pytest.fixture
def serve(sqlite_shards, memcached):
    """Start the shop behind the middleware on a loopback port; returns its base URL."""
    running = []

    def start(**options) -> str:
        app = IOProfilerMiddleware(ShopApp(sqlite_shards, memcached.address), **options)
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
def served(serve):
    return serve()


@pytest.fixture
def browser():
    driver = chromium_or_skip()
    yield driver
    driver.quit()


def test_the_panel_is_visible_with_its_listing(served, browser):
    # Any script that the hostile values managed to smuggle in would call alert().
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "window.__alerted = false; window.alert = () => { window.__alerted = true; };"},
    )
    browser.get(f"{served}/hostile?ioprofiler=1")
    state = browser.execute_script(
        f"""const host = {PANEL};
        const root = host.shadowRoot;
        const box = host.getBoundingClientRect();
        return {{
            shadow: root !== null,
            height: box.height,
            width: box.width,
            open: root.querySelector('details').open,
            text: root.textContent,
            bars: Array.from(root.querySelectorAll('.bar i')).map(b => b.style.width),
            alerts: window.__alerted,
        }};"""
    )
    assert state["shadow"] and state["open"]
    assert state["height"] > 100 and state["width"] > 500
    assert (
        "INSERT INTO FavoriteListingUser (listing_id, user_id, note) VALUES (99, 1,"
        in (state["text"])
    )
    assert "<script>alert(1)</script>" in state["text"]  # shown as text, never run
    assert "Cache MISS, keys: <script>alert(1)</script>" in state["text"]
    assert state["bars"] and all(width.endswith("%") for width in state["bars"])
    assert browser.execute_script("return document.querySelectorAll('script').length") == 1
    assert state["alerts"] is False


def test_the_pages_styles_do_not_reach_into_the_panel(served, browser):
    browser.get(f"{served}/page?ioprofiler=1")
    browser.execute_script(
        "const s = document.createElement('style');"
        "s.textContent = 'td, summary { color: rgb(255, 0, 0) !important; display: none; }';"
        "document.head.appendChild(s);"
    )
    color, display = browser.execute_script(
        f"const td = {PANEL}.shadowRoot.querySelector('td');"
        "const style = getComputedStyle(td); return [style.color, style.display];"
    )
    assert color != "rgb(255, 0, 0)" and display == "table-cell"


def test_a_refused_client_sees_the_plain_page(serve, browser):
    base = serve(allow=access.networks("10.0.0.0/8"))  # the browser comes from 127.0.0.1
    browser.get(f"{base}/page?ioprofiler=1")
    assert browser.execute_script(f"return {PANEL} === null")
    assert browser.find_element("tag name", "h1").text == "Listing"


def test_the_findings_block_tops_the_panel_and_its_link_highlights_the_calls(served, browser):
    browser.get(f"{served}/n_plus_one?ioprofiler=1")
    state = browser.execute_script(
        f"""const root = {PANEL}.shadowRoot;
        const block = root.querySelector('ol.f');
        const first = root.querySelector('.body').firstElementChild;
        const link = block.querySelector('a[data-calls]');
        link.click();
        return {{
            heading: first.textContent,
            top: block.getBoundingClientRect().top,
            tableTop: root.querySelector('table').getBoundingClientRect().top,
            visible: block.offsetHeight > 0,
            text: block.innerText,
            highlighted: Array.from(root.querySelectorAll('tr.hl')).map(r => r.id),
            linked: link.getAttribute('data-calls').split(' ').map(n => 'e' + n),
            queries: Array.from(root.querySelectorAll('tr.hl td:nth-child(6)'))
                .map(td => td.textContent),
            background: getComputedStyle(root.querySelector('tr.hl td')).backgroundColor,
            url: location.href,
        }};"""
    )
    assert state["heading"] == "Findings" and state["visible"]
    assert state["top"] < state["tableTop"]
    assert (
        "N+1 SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ? ran 6×"
        in (state["text"])
    )
    assert "fix: load the rows in one query" in state["text"]
    assert state["highlighted"] == state["linked"] and len(state["linked"]) == 6
    assert all("SELECT count(*) FROM FavoriteListingUser" in q for q in state["queries"])
    assert state["background"] == "rgb(255, 243, 191)"
    assert state["url"].endswith("/n_plus_one?ioprofiler=1")  # the page did not navigate
