"""Streamed HTTP bodies: an exchange's time runs until its body is read to the end or closed.

Against the werkzeug server of ``test_http`` on loopback: a chunked body, one held back by
a gate the test opens (so "the time covers the body" is shown by order, not by timing),
one cut short by the server. A body the application never finishes inside the trace keeps
the time to its headers, and its line says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from time import perf_counter_ns

import httpx
import pytest
import requests
import urllib3
from ioprofiler.integrations._http import BODY_CLOSED_EARLY, BODY_PENDING

import ioprofiler
from ioprofiler.render.json import render_json
from tests.test_http import CHUNKS, ITEMS, Server, whats

BODY = b"".join(CHUNKS)
PENDING = f"GET /gated → 200 ({BODY_PENDING})"


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def opened(server: Server) -> int:
    """Open the server's gate: the rest of the gated body is sent after this instant."""
    opened_ns = perf_counter_ns()
    server.gate.set()
    return opened_ns


def test_requests_stream_is_timed_until_the_body_is_read(server):
    with ioprofiler.profile() as trace:
        response = requests.get(server.url + "/gated", stream=True)
        assert whats(trace) == [PENDING]  # the headers are in, the body is not
        gate_ns = opened(server)
        assert b"".join(response.iter_content(chunk_size=None)) == BODY
    (event,) = trace.events
    assert event.end_ns > gate_ns  # the time includes the body sent after the gate opened
    assert whats(trace) == ["GET /gated → 200 (3.0 kB)"]
    assert (event.size, event.note) == (len(BODY), None)
    assert len(server.answered(1)) == 1


def test_urllib3_preload_content_false_read_stream_and_read_chunked(server):
    with urllib3.PoolManager() as pool, ioprofiler.profile() as trace:
        response = pool.request("GET", server.url + "/gated", preload_content=False)
        gate_ns = opened(server)
        assert response.read() == BODY
        for read in (lambda r: b"".join(r.stream(100)), lambda r: b"".join(r.read_chunked())):
            response = pool.request("GET", server.url + "/chunked", preload_content=False)
            assert read(response) == BODY
            response.release_conn()
        response = pool.request("GET", server.url + "/v1/items", preload_content=False)
        assert response.read(10) == ITEMS[:10]  # Content-Length: read in parts
        assert response.read() == ITEMS[10:]
    assert trace.events[0].end_ns > gate_ns
    assert whats(trace) == [
        "GET /gated → 200 (3.0 kB)",
        "GET /chunked → 200 (3.0 kB)",
        "GET /chunked → 200 (3.0 kB)",
        "GET /v1/items → 200 (3.1 kB)",
    ]
    assert [e.size for e in trace.events] == [len(BODY)] * 3 + [len(ITEMS)]


def test_httpx_stream_sync_and_async(server):
    async def read_async() -> bytes:
        async with httpx.AsyncClient() as client:
            async with client.stream("GET", server.url + "/chunked") as response:
                return b"".join([chunk async for chunk in response.aiter_bytes()])

    with httpx.Client() as client, ioprofiler.profile() as trace:
        with client.stream("GET", server.url + "/gated") as response:
            assert whats(trace) == [PENDING]
            gate_ns = opened(server)
            assert b"".join(response.iter_bytes()) == BODY
        request = client.build_request("GET", server.url + "/chunked")
        response = client.send(request, stream=True)
        assert response.read() == BODY
        assert asyncio.run(read_async()) == BODY
        assert client.get(server.url + "/chunked").content == BODY  # read inside get()
    assert trace.events[0].end_ns > gate_ns
    assert whats(trace) == ["GET /gated → 200 (3.0 kB)"] + ["GET /chunked → 200 (3.0 kB)"] * 3


def test_a_body_never_read_keeps_the_time_to_its_headers_and_says_so(server):
    client = httpx.Client()
    with ioprofiler.profile() as trace:
        response = requests.get(server.url + "/gated", stream=True)
        streamed = client.send(client.build_request("GET", server.url + "/gated"), stream=True)
    ended = [e.end_ns for e in trace.events]
    server.gate.set()
    assert response.content == BODY and streamed.read() == BODY  # after the trace closed
    response.close()
    client.close()
    assert whats(trace) == [PENDING, PENDING]
    assert [e.end_ns for e in trace.events] == ended  # a closed trace is left as it was
    assert all(e.size is None for e in trace.events)
    document = render_json(trace)
    assert document.count(f'"note": "{BODY_PENDING}"') == 2


def test_a_body_closed_before_its_end_says_how_much_was_read(server):
    first = len(CHUNKS[0])
    with ioprofiler.profile() as trace:
        with requests.get(server.url + "/gated", stream=True) as response:
            assert response.raw.read_chunked().__next__() == CHUNKS[0]
        with httpx.stream("GET", server.url + "/gated") as streamed:
            assert next(streamed.iter_raw()) == CHUNKS[0]
    assert whats(trace) == [f"GET /gated → 200 ({first} B read, {BODY_CLOSED_EARLY})"] * 2
    assert [e.size for e in trace.events] == [first, first]


def test_a_body_cut_short_by_the_server_is_an_error_after_the_status(server):
    with ioprofiler.profile() as trace:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(server.url + "/broken")
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(server.url + "/broken")
    first = len(CHUNKS[0])
    assert whats(trace) == [
        f"GET /broken → 200 ({first} B read, {BODY_CLOSED_EARLY}) [ERROR ProtocolError]",
        f"GET /broken → 200 ({first} B read, {BODY_CLOSED_EARLY}) [ERROR RemoteProtocolError]",
    ]


def test_a_response_without_a_body_ends_at_its_headers(server):
    with ioprofiler.profile() as trace:
        requests.head(server.url + "/v1/items", stream=True)
        with httpx.stream("HEAD", server.url + "/v1/items"):
            pass
        with urllib3.PoolManager() as pool:
            pool.request("HEAD", server.url + "/v1/items", preload_content=False)
    assert whats(trace) == ["HEAD /v1/items → 200 (0 B)"] * 3
