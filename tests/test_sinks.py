"""The middleware's sink seam: with a sink attached every request is traced and handed over,
and the response is exactly what the application sent."""

from __future__ import annotations

import logging
import re
import threading

import flask
import pytest
from werkzeug.test import Client

from ioprofiler.sinks import FinishedRequest
from ioprofiler.wsgi import IOProfilerMiddleware
from tests.webapp import ShopApp

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


class Collect:
    """A sink that keeps what it is handed, and the thread it was handed on."""

    def __init__(self) -> None:
        self.requests: list[FinishedRequest] = []
        self.threads: list[int] = []
        self.closed = 0

    def handle(self, request: FinishedRequest) -> None:
        self.requests.append(request)
        self.threads.append(threading.get_ident())

    def close(self) -> None:
        self.closed += 1


class Broken(Collect):
    def handle(self, request: FinishedRequest) -> None:
        raise RuntimeError("the sink's own bug")


@pytest.fixture
def shop(sqlite_shards, memcached):
    app = ShopApp(sqlite_shards, memcached.address)
    app.cache.flush_all()
    return app


def fetch(app, url: str, environ=LOCAL, **kwargs):
    response = Client(app).open(url, environ_base=environ, **kwargs)
    data = response.get_data()
    response.close()
    return response, data


@pytest.mark.parametrize("url", ["/page", "/plain", "/api", "/stream", "/gzip", "/empty"])
def test_every_request_is_traced_and_the_response_is_unchanged(shop, url):
    bare, bare_body = fetch(shop, url)
    shop.cache.flush_all()
    sink = Collect()
    seen, body = fetch(IOProfilerMiddleware(shop, record=sink), url)
    assert (seen.status, body) == (bare.status, bare_body)
    (request,) = sink.requests
    echoed = [("X-Request-Id", request.request_id)]  # the one header added: records match
    assert sorted(seen.headers.items()) == sorted([*bare.headers.items(), *echoed])
    assert request.trace.count() >= 1 and not request.trace.recording
    assert request.status == bare.status_code
    assert (request.method, request.path, request.query) == ("GET", url, "")
    assert request.duration_ms == pytest.approx(request.trace.elapsed_ms)
    assert sink.threads == [threading.get_ident()]


def test_the_finished_request_describes_the_request(shop):
    sink = Collect()
    app = IOProfilerMiddleware(shop, record=sink, export=[Collect()])
    fetch(app, "/page?q=shoes&page=2", headers={"X-Request-Id": "req-42"})
    fetch(app, "/page")
    first, second = sink.requests
    assert (first.path, first.query, first.request_id) == ("/page", "q=shoes&page=2", "req-42")
    assert len(second.request_id) == 32 and second.request_id != first.request_id
    assert first.pid > 0 and first.host and first.started_at <= second.started_at
    assert first.trace.count(kind="db", target="dbshard01") == 1
    assert first.route is None
    assert app.sinks[1].requests[0] is first  # every sink gets the same request


def test_io_in_the_bodys_close_is_in_the_trace_the_sink_gets(shop):
    sink = Collect()
    fetch(IOProfilerMiddleware(shop, record=sink), "/close_query")
    assert shop.closed_bodies == 1
    assert sink.requests[0].trace.count(kind="db", target="dbshard04") == 1


def test_a_failing_application_is_delivered_as_a_500_and_its_error_propagates(shop):
    sink = Collect()
    with pytest.raises(ZeroDivisionError):
        fetch(IOProfilerMiddleware(shop, record=sink), "/boom")
    (request,) = sink.requests
    assert request.status == 500 and request.trace.count(kind="db") == 1


def test_a_failing_sink_is_logged_and_the_others_still_get_the_request(shop, caplog):
    good = Collect()
    with caplog.at_level(logging.ERROR, logger="ioprofiler"):
        response, _ = fetch(IOProfilerMiddleware(shop, export=[Broken(), good]), "/page")
    assert response.status_code == 200 and len(good.requests) == 1
    assert "the sink's own bug" in caplog.text


def test_profiled_and_refused_requests_reach_the_sinks_too(shop):
    sink = Collect()
    app = IOProfilerMiddleware(shop, record=sink)
    profiled, body = fetch(app, "/page?ioprofiler=1")
    assert b'id="ioprofiler-panel"' in body
    refused, body = fetch(app, "/page?ioprofiler=1", environ=REMOTE)
    assert b"ioprofiler-panel" not in body and "Server-Timing" not in refused.headers
    assert [r.status for r in sink.requests] == [200, 200]
    assert all(r.trace.count(kind="db") == 1 for r in sink.requests)


def test_the_route_comes_from_the_app_the_route_option_or_flasks_rule(shop):
    def app_sets_it(environ, start_response):
        environ["ioprofiler.route"] = "/set/<id>"
        return shop(environ, start_response)

    sink = Collect()
    fetch(IOProfilerMiddleware(app_sets_it, record=sink), "/page")
    fetch(IOProfilerMiddleware(shop, record=sink, route=lambda env: "/by/option"), "/page")
    flask_app = flask.Flask(__name__)
    flask_app.add_url_rule("/item/<int:item_id>", "item", lambda item_id: f"item {item_id}")
    flask_app.wsgi_app = IOProfilerMiddleware(flask_app.wsgi_app, record=sink)
    response = flask_app.test_client().get("/item/7")
    assert response.text == "item 7"
    response.close()
    assert [r.route for r in sink.requests] == ["/set/<id>", "/by/option", "/item/<int:item_id>"]


def test_closing_the_middleware_closes_its_sinks_and_bad_sinks_are_refused(shop):
    record, exporter = Collect(), Collect()
    IOProfilerMiddleware(shop, record=record, export=[exporter]).close()
    assert (record.closed, exporter.closed) == (1, 1)
    with pytest.raises(TypeError, match="handle"):
        IOProfilerMiddleware(shop, record="/var/log/io.jsonl")
    with pytest.raises(TypeError, match="export"):
        IOProfilerMiddleware(shop, export=42)
    with pytest.raises(TypeError, match="route"):
        IOProfilerMiddleware(shop, route="/x")


def test_the_request_id_is_the_incoming_one_only_when_trusted_and_safe(shop):
    sink = Collect()
    trusting = IOProfilerMiddleware(shop, record=sink)
    wary = IOProfilerMiddleware(shop, record=sink, trust_request_id=False)
    incoming = {
        "req-42": (trusting, "req-42"),
        "req-43": (wary, None),  # not trusted: a new id
        "a" * 128: (trusting, "a" * 128),
        "a" * 129: (trusting, None),  # too long: a new id, not a cut one
        "two words": (trusting, None),
        "<script>": (trusting, None),
        "über": (trusting, None),
    }
    for sent, (app, expected) in incoming.items():
        response, _ = fetch(app, "/page", headers={"X-Request-Id": sent})
        echoed = response.headers["X-Request-Id"]
        assert echoed == sink.requests[-1].request_id
        if expected is None:
            assert re.fullmatch("[0-9a-f]{32}", echoed), sent
        else:
            assert echoed == expected


def test_the_surfaces_make_the_finished_request_the_dataclass_makes():
    """profiling.deliver stores a FinishedRequest's fields without its frozen __init__: the
    same object (fields, equality, hash, repr), and the constructor where that would not hold."""
    import contextvars
    import dataclasses

    from ioprofiler import profiling
    from ioprofiler.sinks import FinishedRequest
    from ioprofiler.trace import Trace

    assert profiling._finished_request is not FinishedRequest  # the fast path is in use
    values = (Trace(), "GET", "/p", "q=1", "/p/<id>", 200, 1.5, 2.25, "id", "host", 7,
              contextvars.copy_context(), None)  # fmt: skip
    fast, made = profiling._finished_request(*values), FinishedRequest(*values)
    assert type(fast) is FinishedRequest and fast == made and repr(fast) == repr(made)
    assert vars(fast) == vars(made)
    without_context = values[:-2] + (None, None)
    assert hash(profiling._finished_request(*without_context)) == hash(
        FinishedRequest(*without_context)
    )
    assert [f.name for f in dataclasses.fields(FinishedRequest)] == list(profiling._FINISHED_FIELDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.status = 500  # type: ignore[misc]


def test_new_request_ids_are_random_hex_and_never_repeat_nor_cross_a_fork():
    """Ids are drawn 64 to a system call: each is still 16 random bytes in hex, none is
    handed out twice, and a forked child draws its own."""
    import os

    from ioprofiler import sinks

    ids = [sinks.request_id(None) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert sinks.request_id("  req-7 ") == "req-7"
    assert len(sinks.request_id("req-7", trusted=False)) == 32
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: an id the parent's remaining ones do not hold
        os.write(write, sinks.request_id(None).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    later = [sinks.request_id(None) for _ in range(200)]
    assert len(child) == 32 and child not in ids + later


def test_status_codes_are_read_as_before_from_any_status_line():
    from ioprofiler import sinks

    for _ in range(2):  # the second time from what the first remembered
        assert sinks.status_code("404 Not Found") == 404
        assert sinks.status_code("200 OK") == 200
        assert sinks.status_code(None) == 500
        assert sinks.status_code("") == 500
        assert sinks.status_code("abc") == 500
        assert sinks.status_code("201") == 201
