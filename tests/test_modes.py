"""What the parameter's value does: the modes keep the page's status; what turns it off."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import Client

from ioprofiler.wsgi import IOProfilerMiddleware
from tests.webapp import ShopApp

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture
def shop(sqlite_shards, memcached):
    return ShopApp(sqlite_shards, memcached.address)


def status_page(status: str):
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/html")])
        return [b"<html><body>not here</body></html>"]

    return app


@pytest.mark.parametrize("status", ["404 NOT FOUND", "500 Internal Server Error", "201 Created"])
@pytest.mark.parametrize("mode", ["text", "json"])
def test_text_and_json_keep_the_applications_status(status, mode):
    client = Client(IOProfilerMiddleware(status_page(status)))
    response = client.get(f"/gone?ioprofiler={mode}", environ_base=LOCAL)
    assert response.status == status
    body = response.get_data(as_text=True)
    if mode == "text":
        assert body.startswith(f"{status}\nGET /gone?ioprofiler=text\n")
    else:
        assert json.loads(body)["request"]["status"] == status


def test_a_routed_404_keeps_its_status_in_text_mode(shop):
    response = Client(IOProfilerMiddleware(shop)).get(
        "/no-such-page?ioprofiler=text", environ_base=LOCAL
    )
    assert response.status_code == 404
    assert response.mimetype == "text/plain"


@pytest.mark.parametrize("value", ["0", "00", "000", "off", "OFF", "false", "no", " No "])
def test_off_values_leave_the_page_alone(shop, value):
    response = Client(IOProfilerMiddleware(shop)).get(
        f"/page?ioprofiler={value}", environ_base=LOCAL
    )
    assert response.status_code == 200
    assert "ioprofiler-panel" not in response.get_data(as_text=True)
    assert "Server-Timing" not in response.headers
