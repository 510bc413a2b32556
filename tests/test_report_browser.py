"""The report in headless Chromium: its charts and deploy marker are drawn, a request opens
in place and the way back works (its button, Escape, the browser's back), nothing breaks
its Content-Security-Policy, and at 800 px nothing is wider than the window.

Screenshots of the overview and of an opened request are written to the test's directory,
and to docs/images/report-overview.png and report-request.png when
``IOPROFILER_REPORT_SCREENSHOTS=docs/images`` (``IOPROFILER_REPORT_SECONDS=40`` makes the
log span more time, as the screenshots in docs/report.md were made).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import chromium_or_skip
from tests.incident import write_incident_log

BIN = Path(sys.executable).with_name("ioprofiler")
SCREENSHOT_WIDTH = 1000

# Any script smuggled in would call alert(); every CSP violation is counted.
WATCH = """window.__alerted = false; window.alert = () => { window.__alerted = true; };
window.__violations = [];
document.addEventListener('securitypolicyviolation',
    e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"""

# Elements wider than the window, or reaching past its right edge (in the open dialog too).
OVERFLOWING = """const width = document.documentElement.clientWidth;
return [...document.querySelectorAll('body *')]
    .filter(e => e.getClientRects().length && e.getBoundingClientRect().right > width + 1)
    .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + e.className)
    .slice(0, 10);"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("incident")
    seconds = float(os.environ.get("IOPROFILER_REPORT_SECONDS", "1.5"))
    log = write_incident_log(directory, seconds=seconds, summary_every=max(0.1, seconds / 40))
    output = directory / "report.html"
    done = subprocess.run(
        [str(BIN), "report", str(log), "-o", str(output), "--title", "ioprofiler: the incident"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return output


@pytest.fixture
def browser():
    driver = chromium_or_skip()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
    yield driver
    driver.quit()


def wait_for(browser, script: str, timeout: float = 30.0):
    """The script's value once it is truthy (a busy machine may take its time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = browser.execute_script(script)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def open_state(browser) -> dict:
    return browser.execute_script(
        """const d = document.getElementById('request');
        const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
        return {open: d.open, hash: location.hash, title: d.querySelector('h2').textContent,
                cause: (d.querySelector('p.cause') || {}).textContent,
                calls: d.querySelectorAll('table.l tr').length - 1,
                bars: [...d.querySelectorAll('.bar i')].map(b => b.style.width),
                repeated: ids.filter((id, n) => ids.indexOf(id) !== n),
                current: (document.querySelector('table.requests tr.current') || {}).id};"""
    )


def save(browser, path: Path, name: str) -> None:
    browser.save_screenshot(str(path.with_name(name)))
    wanted = os.environ.get("IOPROFILER_REPORT_SCREENSHOTS")
    if wanted:
        browser.save_screenshot(str(Path(wanted) / name))


def test_the_overview_draws_its_charts_and_the_marker_and_a_request_opens_in_place(report, browser):
    browser.set_window_size(SCREENSHOT_WIDTH, 900)
    browser.get(report.as_uri())
    charts = browser.execute_script(
        """return [...document.querySelectorAll('figure.chart')].map(f => ({
            id: f.id,
            points: [...f.querySelectorAll('path.line')].map(p => +p.dataset.points),
            segments: [...f.querySelectorAll('path.line')].map(p => p.getTotalLength()),
            marker: [...f.querySelectorAll('g.marker line')].map(l => {
                const box = l.getBoundingClientRect(); return [box.height, box.x];}),
            svg: f.querySelector('svg').getBoundingClientRect().width}));"""
    )
    assert [c["id"] for c in charts] == ["chart-rate", "chart-p95", "chart-io"]
    for chart in charts:
        assert max(chart["points"]) >= 5 and max(chart["segments"]) > 100, chart
        (marker,) = chart["marker"]
        assert marker[0] > 80  # a vertical line across the chart
        assert chart["svg"] > 700
    assert len({round(c["marker"][0][1]) for c in charts}) == 1  # at one time on every chart
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(SCREENSHOT_WIDTH, min(height, 1500))
    save(browser, report, "report-overview.png")

    browser.set_window_size(SCREENSHOT_WIDTH, 900)
    slowest = browser.execute_script(
        "const row = document.querySelector('table.requests tbody tr');"
        "row.cells[2].click(); return row.id;"
    )
    state = wait_for(browser, "return document.getElementById('request').open") and open_state(
        browser
    )
    assert state["open"] and state["hash"] == "#r1" and state["current"] == slowest == "row-r1"
    assert state["cause"].startswith("cause: ") and state["calls"] >= 2
    assert state["title"].startswith("GET /") and not state["repeated"]
    assert state["bars"] and all(width.endswith("%") for width in state["bars"])

    browser.execute_script("document.getElementById('back').click()")
    closed = wait_for(browser, "return !document.getElementById('request').open")
    assert closed and browser.execute_script("return location.hash") == ""
    # the slowest request whose cause is the N+1, opened from the top causes: the screenshot
    browser.execute_script(
        "[...document.querySelectorAll('#causes tr')].find(r => r.textContent.startsWith("
        "'N+1 ')).querySelector('a').click()"
    )
    assert wait_for(browser, "return document.getElementById('request').open")
    assert open_state(browser)["cause"].startswith("cause: N+1: ")
    save(browser, report, "report-request.png")
    assert browser.execute_script("return window.__violations") == []
    assert browser.execute_script("return window.__alerted") is False


def test_the_way_back_is_the_browsers_back_and_escape_and_a_link_opens_a_request(report, browser):
    browser.get(report.as_uri())
    browser.execute_script("document.querySelector('a[href=\"#r2\"]').click()")
    assert wait_for(browser, "return document.getElementById('request').open")
    assert open_state(browser)["hash"] == "#r2"
    browser.back()
    assert wait_for(browser, "return !document.getElementById('request').open")
    assert browser.execute_script("return location.hash") == ""

    # a top cause's link opens its slowest request; a finding's link marks its calls
    browser.execute_script("document.querySelector('#causes a[href^=\"#r\"]').click()")
    assert wait_for(browser, "return document.getElementById('request').open")
    marked = browser.execute_script(
        """const link = document.querySelector('#request a[data-calls]');
        if (!link) return null;
        link.click();
        return [document.querySelectorAll('#request tr.hl').length,
                link.dataset.calls.split(' ').length, location.hash];"""
    )
    if marked is not None:  # the slowest request of the top cause had a finding
        assert marked[0] == marked[1] and marked[2].startswith("#r")
    from selenium.webdriver.common.keys import Keys

    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    assert wait_for(browser, "return !document.getElementById('request').open")

    browser.get(report.as_uri() + "#r3")  # a link to a request opens it
    assert wait_for(browser, "return document.getElementById('request').open")
    assert open_state(browser)["current"] == "row-r3"
    assert browser.execute_script("return window.__violations") == []


def test_at_800_px_nothing_is_wider_than_the_window(report, browser):
    browser.set_window_size(800, 900)
    browser.get(report.as_uri())
    assert browser.execute_script("return document.documentElement.clientWidth") <= 800
    assert browser.execute_script(OVERFLOWING) == []
    browser.execute_script("document.querySelector('table.requests tbody tr').click()")
    assert wait_for(browser, "return document.getElementById('request').open")
    assert browser.execute_script(OVERFLOWING) == []
    dialog = browser.execute_script(
        "const d = document.getElementById('request'); return [d.scrollWidth, d.clientWidth];"
    )
    assert dialog[0] <= dialog[1]
    # sorting by a column: the fastest first, then the slowest again
    browser.execute_script("document.getElementById('back').click()")
    assert wait_for(browser, "return !document.getElementById('request').open")
    ms = "return [...document.querySelectorAll('table.requests tbody tr')].map(r => +r.cells[4].dataset.v)"  # noqa: E501
    slowest_first = browser.execute_script(ms)
    button = "document.querySelectorAll('table.requests thead button')[4].click()"
    browser.execute_script(button)
    browser.execute_script(button)
    assert browser.execute_script(ms) == sorted(slowest_first)
