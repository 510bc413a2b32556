"""``ioprofiler report``: one self-contained HTML file, an overview first (charts from the
summary records, deploy markers, top causes, regressions), then the kept requests slowest
first, each opening in place. Read here as HTML; tests/test_report_browser.py opens it.

The log is an incident's, written by a real Recorder over real SQLite (tests/incident.py).
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
from collections import Counter
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ioprofiler.cause import cause_of
from ioprofiler.cli.report import bucket_seconds, regressions
from ioprofiler.logread import records
from ioprofiler.recorder import Recorder
from ioprofiler.render.report import render_report, short_ids
from tests.incident import HOSTILE, MARKER_TEXT, write_incident_log

BIN = Path(sys.executable).with_name("ioprofiler")


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    return write_incident_log(tmp_path_factory.mktemp("incident"))


@pytest.fixture(scope="module")
def report(log) -> str:
    output = log.with_name("report.html")
    done = subprocess.run(
        [str(BIN), "report", str(log), "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(" kept requests\n")
    return output.read_text()


class Ids(HTMLParser):
    """Element ids in the document, and in each template apart."""

    def __init__(self) -> None:
        super().__init__()
        self.document: list[str] = []
        self.templates: list[list[str]] = []
        self.depth = 0  # inside a <template>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if tag == "template":
            self.depth += 1
            if self.depth == 1:
                self.templates.append([])
                self.document.append(ident or "")
                return
        if ident is not None:
            (self.templates[-1] if self.depth else self.document).append(ident)

    def handle_endtag(self, tag: str) -> None:
        if tag == "template":
            self.depth -= 1


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_report_allows_only_its_own_style_and_script_and_fetches_nothing(report):
    (style,) = re.findall(r"<style>(.*?)</style>", report, re.S)
    (script,) = re.findall(r"<script>(.*?)</script>", report, re.S)
    (policy,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', report)
    assert policy.startswith("default-src 'none'; ")
    assert f"style-src {_sha256(style)};" in policy and f"script-src {_sha256(script)};" in policy
    assert report.count("<script") == 1 and report.count("<style") == 1
    assert "http://" not in report and "https://" not in report and " src=" not in report
    assert " style=" not in report and " onclick=" not in report.lower()


def test_everything_from_the_log_is_escaped(report):
    assert HOSTILE not in report and "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    assert MARKER_TEXT not in report  # the marker's text too, in the charts and the list


def test_element_ids_are_unique_in_the_page_and_in_each_request(report):
    ids = Ids()
    ids.feed(report)
    repeated = [i for i, n in Counter(ids.document).items() if n > 1]
    assert not repeated and len(ids.templates) > 10
    assert all(len(set(t)) == len(t) for t in ids.templates)
    assert {"overview", "causes", "requests", "request", "back"} <= set(ids.document)


def test_the_overview_charts_rate_p95_and_io_by_target_with_the_deploy_marker(report):
    for chart in ("chart-rate", "chart-p95", "chart-io"):
        figure = re.search(rf'<figure class="chart" id="{chart}">(.*?)</figure>', report, re.S)
        assert figure is not None
        points = [int(n) for n in re.findall(r'data-points="(\d+)"', figure.group(1))]
        assert points and max(points) >= 5, chart
        assert figure.group(1).count('<g class="marker">') == 1
        assert "deploy r2 &lt;script&gt;" in figure.group(1)
    io = re.search(r'id="chart-io">(.*?)</figure>', report, re.S).group(1)  # type: ignore[union-attr]
    assert re.findall(r'data-series="([^"]+)"', io)[:2] == ["dbshard03", "dbshard01"]
    assert "Releases: r1 (" in report and "), r2 (" in report
    assert '<ul class="markers"><li>marker ' in report


def test_the_list_is_slowest_first_with_short_ids_local_times_and_each_cause(log, report):
    kept = {r["id"]: r for r in records(log)}
    rows = re.findall(r'<tr id="row-(r\d+)" data-r="\1"[^>]*>(.*?)</tr>', report, re.S)
    assert len(rows) == len(kept)
    durations = [float(re.findall(r'class="n" data-v="([\d.]+)"', cells)[0]) for _, cells in rows]
    assert durations == sorted(durations, reverse=True)
    for ref, cells in rows:
        ident = re.search(r'class="id" data-v="([^"]+)"', cells).group(1)  # type: ignore[union-attr]
        shown = re.search(rf'<a href="#{ref}" title="{ident}">([^<]+)</a>', cells)
        assert shown is not None and len(shown.group(1)) == 8 and ident.startswith(shown.group(1))
        cause = re.search(r'<td class="c" data-v="[^"]*" title="([^"]*)"', cells)
        assert cause is not None
        assert cause.group(1) == escape(cause_of(kept[ident]).line())
        assert f'<template id="{ref}" ' in report
    assert re.search(r'<td class="t" data-v="[\d.]+" title="[^"]+">\d\d:\d\d:\d\d</td>', report)


def test_the_top_causes_link_their_slowest_request(report):
    section = re.search(r'<section id="causes">(.*?)</section>', report, re.S)
    assert section is not None
    assert "<b>N+1</b> SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?" in (
        section.group(1)
    )
    links = re.findall(r'<a href="#(r\d+)">slowest</a>', section.group(1))
    assert links and all(f'<template id="{ref}" ' in report for ref in links)
    assert "<h3>Statement shapes by total time, every request</h3>" in section.group(1)


def test_regressions_are_shown_when_given_and_escaped():
    assert 'id="regressions"' not in render_report([], "empty")
    html = render_report([], "two releases", regressions=["/listing p95 180 → 420 ms <b>"])
    assert '<section id="regressions"><h2>Regressions</h2>' in html
    assert "<li>/listing p95 180 → 420 ms &lt;b&gt;</li>" in html


def test_the_regressions_section_is_ioprofiler_diffs_between_the_two_releases(log, report):
    """r2 added an N+1 on /listing and a slow statement on /search: the report names both,
    with the words ``ioprofiler diff`` prints, and only when the log holds two releases."""
    two = {"r1": [1.0, 2.0], "r2": [3.0, 4.0]}
    lines = regressions(str(log), two)
    assert len(lines) == 2, lines
    assert any(line.startswith("/listing") and "FavoriteListingUser" in line for line in lines)
    assert any(line.startswith("/search") and "on dbshard03" in line for line in lines)
    section = re.search(r'<section id="regressions">(.*?)</section>', report, re.S)
    assert section is not None
    for line in lines:
        assert escape(line, quote=False) in section.group(1) or escape(line) in section.group(1)
    assert regressions(str(log), {"r1": [1.0, 2.0]}) == []  # one release: nothing compared


def test_a_log_without_summaries_says_why_there_are_no_charts(sqlite_shards, tmp_path):
    path = tmp_path / "io.jsonl"
    recorder = Recorder(path, slow_ms=0, summary_every=None)
    from werkzeug.test import Client

    from ioprofiler.wsgi import IOProfilerMiddleware

    def app(environ, start_response):
        with sqlite_shards["dbshard01"].connect() as conn:
            conn.exec_driver_sql("SELECT 1").all()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    Client(IOProfilerMiddleware(app, record=recorder)).get("/").close()
    recorder.close()
    output = tmp_path / "r.html"
    done = subprocess.run(
        [str(BIN), "report", str(path), "-o", str(output)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    html = output.read_text()
    assert "No summary records in this log and time" in html and "<svg" not in html
    assert html.count('<tr id="row-r') == 1


def test_buckets_hold_two_summaries_and_about_ninety_points_at_most():
    assert bucket_seconds(3600, 10) == 60
    assert bucket_seconds(600, 10) == 30  # two 10 s summaries a bucket, not one
    assert bucket_seconds(3, 0.1) == 0.2
    assert bucket_seconds(7 * 86400, 10) == 7200
    assert short_ids(["4f2a1c9e0001", "4f2a1c9e0002", "77"]) == {
        "4f2a1c9e0001": "4f2a1c9e0001",
        "4f2a1c9e0002": "4f2a1c9e0002",
        "77": "77",
    }
    assert short_ids(["4f2a1c9e0001", "5f2a1c9e0002"])["4f2a1c9e0001"] == "4f2a1c9e"
