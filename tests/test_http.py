"""HTTP clients (urllib3, requests, httpx sync and async) against werkzeug servers the tests
start on loopback, plain and HTTPS with a self-signed certificate made here.

Each server counts the requests it answered, from its own access log, so "one event per
round trip" is checked against the server rather than against ourselves.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

import ioprofiler
from ioprofiler.analysis import summarize
from ioprofiler.findings import find
from ioprofiler.patching import is_ours
from ioprofiler.render.html import render_panel
from ioprofiler.render.json import render_json
from ioprofiler.response import server_timing
from ioprofiler.snapshot import snapshot_lines
from ioprofiler.testing import IOBudgetExceeded, assert_io

ITEMS = b'{"items": "%s"}' % (b"x" * 3087)  # 3,100 bytes: "3.1 kB"
CHUNKS = (b"first chunk;", b"x" * 2000, b"y" * 1000)  # 3,012 bytes, sent chunked
GATE_WAIT_S = 10  # how long the server waits for the test to open a gate, at most


def app(request: Request, gate: threading.Event) -> Response:
    if request.path == "/redirect":
        return Response(status=302, headers={"Location": "/v1/items"})
    if request.path == "/flaky":
        return Response(b"try again", status=503)
    if request.path == "/chunked":  # no Content-Length: HTTP/1.1 chunked encoding
        return Response(iter(CHUNKS), content_type="application/octet-stream")
    if request.path == "/gated":  # the first chunk, then the rest once the test opens the gate

        def gated() -> Iterator[bytes]:
            yield CHUNKS[0]
            gate.wait(GATE_WAIT_S)
            yield from CHUNKS[1:]

        return Response(gated(), content_type="application/octet-stream")
    if request.path == "/broken":  # promises 3,100 bytes, sends 12 and drops the connection

        def broken() -> Iterator[bytes]:
            yield CHUNKS[0]
            raise ConnectionAbortedError("the test server gives up")

        return Response(broken(), headers={"Content-Length": str(len(ITEMS))})
    return Response(ITEMS, content_type="application/json")


class Server:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[str] = []
        self.gate = threading.Event()
        log = self.requests
        gate = self.gate

        @Request.application
        def api(request: Request) -> Response:
            return app(request, gate)

        class Handler(WSGIRequestHandler):
            def log_request(self, code: object = "-", size: object = "-") -> None:
                log.append(f"{self.command} {self.path} {code}")

        self.server = make_server(
            "127.0.0.1", 0, api, threaded=True, request_handler=Handler, ssl_context=ssl_context
        )
        self.port = self.server.server_port
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answered(self, expected: int) -> list[str]:
        """The access log once it holds ``expected`` lines (the server logs after replying)."""
        deadline = time.monotonic() + 5
        while len(self.requests) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # and nothing more arrives
        return list(self.requests)

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(certificate) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    running = Server(context)
    yield running
    running.stop()


def whats(trace) -> list[str]:
    return [e.line().split(" ms ", 1)[1] for e in trace.events]


def test_requests_one_line_per_round_trip_without_query_values_or_credentials(server):
    url = f"http://ann:s3cret-pw@127.0.0.1:{server.port}/v1/items?id=7&token=s3cret-token"
    with ioprofiler.profile() as trace:
        response = requests.get(url, headers={"Authorization": "Bearer s3cret-header"})
    assert response.status_code == 200 and response.content == ITEMS
    assert whats(trace) == ["GET /v1/items?id=?&token=? → 200 (3.1 kB)"]
    (event,) = trace.events
    assert (event.kind, event.target, event.op, event.status, event.size) == (
        "http",
        f"http 127.0.0.1:{server.port}",
        "GET",
        200,
        len(ITEMS),
    )
    assert server.answered(1) == ["GET /v1/items?id=7&token=s3cret-token 200"]
    everything = trace.text(callsites=True) + render_json(trace) + server_timing(trace)
    assert "s3cret" not in everything and "id=7" not in everything
    assert event.callsite.startswith("tests/test_http.py:")


def test_each_redirect_is_a_round_trip_of_its_own(server):
    with ioprofiler.profile() as trace:
        assert requests.get(server.url + "/redirect").status_code == 200
        assert httpx.get(server.url + "/redirect", follow_redirects=True).status_code == 200
    hops = ["GET /redirect → 302 (0 B)", "GET /v1/items → 200 (3.1 kB)"]
    assert whats(trace) == hops + hops
    assert len(server.answered(4)) == trace.count(kind="http") == 4


def test_urllib3_redirects_are_round_trips_of_their_own(server):
    with urllib3.PoolManager() as pool, ioprofiler.profile() as trace:
        assert pool.request("GET", server.url + "/redirect").data == ITEMS
        streamed = pool.request("GET", server.url + "/redirect", preload_content=False)
        assert streamed.read() == ITEMS
    hops = ["GET /redirect → 302 (0 B)", "GET /v1/items → 200 (3.1 kB)"]
    assert whats(trace) == hops + hops
    assert len(server.answered(4)) == 4


def test_each_connect_retry_is_a_round_trip_of_its_own():
    retries = urllib3.Retry(total=2, connect=2, backoff_factor=0)
    with urllib3.PoolManager(retries=retries) as pool, ioprofiler.profile() as trace:
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            pool.request("GET", "http://127.0.0.1:1/v1/items?id=7")
    assert whats(trace) == ["GET /v1/items?id=? [ERROR NewConnectionError]"] * 3


def test_each_retry_is_a_round_trip_of_its_own(server):
    retries = urllib3.Retry(
        total=2, status_forcelist=[503], backoff_factor=0, raise_on_status=False
    )
    with urllib3.PoolManager(retries=retries) as pool, ioprofiler.profile() as trace:
        assert pool.request("GET", server.url + "/flaky?attempt=1").status == 503
    assert whats(trace) == ["GET /flaky?attempt=? → 503 (9 B)"] * 3
    assert len(server.answered(3)) == 3


def test_no_client_shows_credentials_auth_headers_or_query_values(server):
    secret_headers = {
        "Authorization": "Bearer s3cret-header",
        "Proxy-Authorization": "Basic s3cret-proxy",
        "Cookie": "session=s3cret-cookie",
    }
    path = "/v1/items?id=7&token=s3cret-token"
    with_userinfo = f"http://ann:s3cret-pw@127.0.0.1:{server.port}{path}"

    async def fetch_async() -> int:
        async with httpx.AsyncClient(auth=("ann", "s3cret-auth")) as client:
            response = await client.get(with_userinfo, headers=secret_headers)
            return response.status_code

    with ioprofiler.profile() as trace:
        with urllib3.PoolManager() as pool:
            assert pool.request("GET", with_userinfo, headers=secret_headers).status == 200
        assert requests.get(with_userinfo, headers=secret_headers, auth=("ann", "x")).ok
        assert httpx.get(with_userinfo, headers=secret_headers).status_code == 200
        response = httpx.get(
            server.url + "/v1/items", params={"id": 7, "token": "s3cret-token"}, auth=("a", "b")
        )
        assert response.status_code == 200
        assert asyncio.run(fetch_async()) == 200
    assert whats(trace) == ["GET /v1/items?id=?&token=? → 200 (3.1 kB)"] * 5
    assert len(server.answered(5)) == 5
    everything = (
        trace.text(callsites=True)
        + render_json(trace)
        + render_panel(trace)
        + server_timing(trace)
        + "".join(snapshot_lines(trace))
        + repr(trace.events)
    )
    assert "s3cret" not in everything and "id=7" not in everything and "ann" not in everything


def test_a_refused_connection_is_recorded_and_reraised_unchanged():
    with ioprofiler.profile() as trace:
        with pytest.raises(requests.ConnectionError):
            requests.get("http://127.0.0.1:1/v1/items?id=7", timeout=2)
        with pytest.raises(httpx.ConnectError):
            httpx.get("http://127.0.0.1:1/v1/items?id=7", timeout=2)
    assert [(e.error, e.description()) for e in trace.events] == [
        ("NewConnectionError", "GET /v1/items?id=? [ERROR NewConnectionError]"),
        ("ConnectError", "GET /v1/items?id=? [ERROR ConnectError]"),
    ]
    assert {e.target for e in trace.events} == {"http 127.0.0.1:1"}


def test_httpx_sync_and_async_clients(server):
    async def fetch() -> int:
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.post("/v1/items?page=2", json={"a": 1})
            return response.status_code

    with ioprofiler.profile() as trace:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/v1/items", params={"id": 7}).status_code == 200
        assert asyncio.run(fetch()) == 200
    assert whats(trace) == [
        "GET /v1/items?id=? → 200 (3.1 kB)",
        "POST /v1/items?page=? → 200 (3.1 kB)",
    ]
    assert len(server.answered(2)) == 2
    assert all(e.callsite and "test_http.py" in e.callsite for e in trace.events)


def test_https_with_a_self_signed_certificate(tls_server, certificate):
    cert_path, _ = certificate
    context = ssl.create_default_context(cafile=str(cert_path))

    async def fetch_async() -> int:
        async with httpx.AsyncClient(verify=context) as client:
            return (await client.get(tls_server.url + "/v1/items")).status_code

    with ioprofiler.profile() as trace:
        assert requests.get(tls_server.url + "/v1/items", verify=str(cert_path)).ok
        assert httpx.get(tls_server.url + "/v1/items", verify=context).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(tls_server.url + "/v1/items")  # not trusted without the certificate
        streamed = requests.get(tls_server.url + "/chunked", verify=str(cert_path), stream=True)
        assert b"".join(streamed.iter_content(chunk_size=None)) == b"".join(CHUNKS)
        assert asyncio.run(fetch_async()) == 200
    assert whats(trace)[:2] == ["GET /v1/items → 200 (3.1 kB)"] * 2
    assert trace.events[2].error == "SSLError"
    assert whats(trace)[3:] == ["GET /chunked → 200 (3.0 kB)", "GET /v1/items → 200 (3.1 kB)"]
    assert {e.target for e in trace.events} == {f"http 127.0.0.1:{tls_server.port}"}
    assert len(tls_server.answered(4)) == 4


def test_repeated_calls_to_one_url_shape_are_a_likely_n_plus_one(server):
    with ioprofiler.profile() as trace:
        with requests.Session() as session:
            for item in (1, 2, 3, 4, 5):  # n_plus_one_count (5) calls make a likely N+1
                session.get(f"{server.url}/v1/items/{item}")
    (repeat,) = summarize(trace).repeats
    assert (repeat.kind, repeat.shape, repeat.count, repeat.likely_n_plus_one) == (
        "http",
        "GET /v1/items/#",
        5,
        True,
    )
    assert f"repeated 5x on http 127.0.0.1:{server.port}, likely N+1: GET /v1/items/#" in (
        trace.text()
    )
    summary = json.loads(render_json(trace))["summary"]
    assert (summary["http_calls"], summary["calls"]) == (5, 5)
    assert "http;dur=" in server_timing(trace) and 'desc="5 calls"' in server_timing(trace)
    assert snapshot_lines(trace) == ["http|http: GET /v#/items/#"] * 5
    (finding,) = [f for f in find(trace) if f.kind == "n_plus_one"]
    assert finding.message.startswith(
        f"N+1 API calls: GET /v1/items/# called 5× on http 127.0.0.1:{server.port} ("
    )
    assert finding.events == tuple(trace.events)
    panel = render_panel(trace)
    # the finding's own heading in bold, once (never the kind's title before it: "N+1 N+1")
    assert '<b class="n1">N+1 API calls</b> GET /v1/items/# called 5×' in panel
    assert "N+1 N+1" not in panel and "likely N+1" in panel
    document = json.loads(render_json(trace))
    assert [f["events"] for f in document["findings"] if f["kind"] == "n_plus_one"] == [
        [1, 2, 3, 4, 5]
    ]


def test_four_calls_to_one_shape_are_no_n_plus_one_finding(server):
    with ioprofiler.profile() as trace, requests.Session() as session:
        for item in (1, 2, 3, 4):
            session.get(f"{server.url}/v1/items/{item}")
    assert not [f for f in find(trace) if f.kind == "n_plus_one"]


def test_http_budgets(server):
    with assert_io(http={"http 127.0.0.1:*": 1}):
        requests.get(server.url + "/v1/items")
    with pytest.raises(IOBudgetExceeded, match="http +all +exactly 0 +1"):
        with assert_io(http=0):
            requests.get(server.url + "/v1/items")


def test_nothing_is_recorded_without_a_trace(server):
    requests.get(server.url + "/v1/items")
    with ioprofiler.profile() as trace:
        pass
    assert trace.count() == 0


def test_install_and_uninstall_are_exact():
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.response import HTTPResponse

    classes = (HTTPConnectionPool, HTTPResponse, httpx.HTTPTransport, httpx.AsyncHTTPTransport)
    ioprofiler.uninstall()
    before = {(c, n): v for c in classes for n, v in vars(c).items()}
    assert {"urllib3", "httpx"} <= set(ioprofiler.install())
    assert is_ours(vars(HTTPConnectionPool)["_make_request"])
    for name in ("release_conn", "close", "_raw_read", "_handle_chunk"):
        assert is_ours(vars(HTTPResponse)[name])
    assert is_ours(vars(httpx.HTTPTransport)["handle_request"])
    ioprofiler.uninstall()
    after = {(c, n): v for c in classes for n, v in vars(c).items()}
    assert after.keys() == before.keys() and all(after[k] is v for k, v in before.items())
