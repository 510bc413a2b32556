"""A request that asked for a trace and got none says why, once, in the DEBUG log; the
client sees nothing of it."""

from __future__ import annotations

import logging

import pytest
from werkzeug.test import Client

from ioprofiler.wsgi import IOProfilerMiddleware
from tests.webapp import ShopApp

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture
def shop(sqlite_shards, memcached):
    return ShopApp(sqlite_shards, memcached.address)


def reasons(caplog, url: str, app, environ, method="GET", **options) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="ioprofiler"):
        response = Client(IOProfilerMiddleware(app, **options)).open(
            url, method=method, environ_base=environ
        )
        body = response.get_data()
        response.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "ioprofiler"]
    for line in lines:
        assert line.encode()[:40] not in body  # never in the response itself
    return lines


@pytest.mark.parametrize(
    ("environ", "options", "reason"),
    [
        (
            {"REMOTE_ADDR": "203.0.113.9"},
            {},
            "GET /page not profiled: client 203.0.113.9 is not allowed by loopback()",
        ),
        ({}, {}, "GET /page not profiled: the server gave no client address (REMOTE_ADDR"),
        (
            {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.7"},
            {},
            "GET /page not profiled: it came through a proxy (X-Forwarded-For) and "
            "trusted_proxies is empty",
        ),
        (
            {"REMOTE_ADDR": "10.0.0.2"},
            {"trusted_proxies": ["10.0.0.0/24"]},
            "GET /page not profiled: it came through trusted proxies only",
        ),
        (
            {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_IOPROFILER_TOKEN": "wrong"},
            {"allow": __import__("ioprofiler.access").access.token("0123456789abcdef")},
            "GET /page not profiled: client 127.0.0.1 is not allowed by token(",
        ),
    ],
)
def test_refused_clients_are_logged_with_the_reason(shop, caplog, environ, options, reason):
    lines = reasons(caplog, "/page?ioprofiler=1", shop, environ, **options)
    assert len(lines) == 1 and lines[0].startswith("ioprofiler: " + reason), lines


@pytest.mark.parametrize(
    ("url", "method", "options", "reason"),
    [
        ("/gzip?ioprofiler=1", "GET", {}, "the body is compressed (Content-Encoding: gzip)"),
        ("/large?ioprofiler=1", "GET", {}, "the body grew past max_inject_bytes (5,242,880"),
        (
            "/stream?ioprofiler=1",
            "GET",
            {"max_inject_bytes": 20},
            "the body grew past max_inject_bytes (20 bytes)",
        ),
        ("/api?ioprofiler=1", "GET", {}, "application/json is not HTML or text/plain"),
        ("/empty?ioprofiler=1", "GET", {}, "a 204 response's body is not changed"),
        ("/page?ioprofiler=1", "HEAD", {}, "a HEAD response has no body"),
    ],
)
def test_responses_sent_without_the_trace_are_logged_with_the_reason(
    shop, caplog, url, method, options, reason
):
    lines = reasons(caplog, url, shop, LOCAL, method=method, **options)
    path = url.split("?")[0]
    expected = f"ioprofiler: {method} {path} profiled, but sent without the trace: {reason}"
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_a_shown_trace_and_an_unasked_request_log_nothing(shop, caplog):
    assert reasons(caplog, "/page?ioprofiler=1", shop, LOCAL) == []
    assert reasons(caplog, "/page", shop, {"REMOTE_ADDR": "203.0.113.9"}) == []
    assert reasons(caplog, "/page?ioprofiler=off", shop, LOCAL) == []


def test_the_log_line_holds_no_query_values(shop, caplog):
    lines = reasons(caplog, "/page?ioprofiler=1&secret=hunter2", shop, {"REMOTE_ADDR": "192.0.2.1"})
    assert len(lines) == 1 and "hunter2" not in lines[0]
