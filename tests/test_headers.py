"""Every header the profiler writes is safe, whatever the shards and servers are named.

A database name comes from the engine URL (here: the SQLite file's name), so a hostile
name needs no label: the files below are real, and a real server sends the response.
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

import ioprofiler
from ioprofiler.response import MAX_SERVER_TIMING
from ioprofiler.wsgi import IOProfilerMiddleware

HOSTILE_NAMES = (
    "shard\r\nSet-Cookie: x=1",
    "shard\nX-Injected: 1",
    "shard\rX-Injected: 2",
    'quote"back\\slash',
    "esc\x1b[31mred\x07",
    "line\u2028sep\u0085nel\x7fdel",
    "caf\u00e9-\u4e2d\u6587-\U0001f600",
    'semi;dur=1, fake;desc="x"',
    "tab\there",
    "long-" * 48,
)
# RFC 8941 sf-string: printable ASCII, with '"' and '\' escaped by a backslash
SF_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'
TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
ENTRY = re.compile(rf"{TOKEN}(?:;dur=\d+\.\d{{3}})?;desc=({SF_STRING})")


def parse_server_timing(value: str) -> list[str]:
    """The descriptions of a Server-Timing value, unquoted; fails on anything malformed."""
    descriptions, at = [], 0
    while True:
        match = ENTRY.match(value, at)
        assert match, value[at:]
        descriptions.append(re.sub(r"\\([\"\\])", r"\1", match.group(1)[1:-1]))
        at = match.end()
        if at == len(value):
            return descriptions
        assert value.startswith(", ", at), value[at:]
        at += 2


def make_app(engines: list[sa.Engine]):
    def app(environ, start_response):
        for engine in engines:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
        if environ["PATH_INFO"] == "/api":
            start_response(status, [("Content-Type", "application/json")])
            return [b"{}"]
        start_response(status, [("Content-Type", "text/html; charset=utf-8")])
        return [b"<html><body>shop</body></html>"]

    return app


def raw_get(port: int, target: str) -> tuple[list[bytes], bytes]:
    """The header lines exactly as the server sent them, and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


@pytest.fixture
def serve():
    servers = []

    def start(app) -> int:
        server = make_server("127.0.0.1", 0, IOProfilerMiddleware(app), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_port

    yield start
    for server in servers:
        server.shutdown()


def hostile_engines(folder: Path) -> list[sa.Engine]:
    engines = []
    for number, name in enumerate(HOSTILE_NAMES):
        path = folder / str(number)
        path.mkdir()
        engines.append(sa.create_engine(sa.URL.create("sqlite", database=str(path / f"{name}.db"))))
    return engines


@pytest.mark.parametrize(
    "url",
    [
        "/?ioprofiler=1",
        "/?ioprofiler=text",
        "/?ioprofiler=json",
        "/api?ioprofiler=1",
        "/missing?ioprofiler=1",
    ],
)
def test_hostile_database_names_cannot_inject_headers(tmp_path, serve, url):
    engines = hostile_engines(tmp_path)
    port = serve(make_app(engines))
    lines, _ = raw_get(port, url)
    names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    assert b"set-cookie" not in names and b"x-injected" not in names, lines
    for line in lines:
        assert re.fullmatch(rb"[\x20-\x7e\t]+", line), line  # one printable line each
    timing = next(line for line in lines if line.lower().startswith(b"server-timing:"))
    value = timing.split(b":", 1)[1].strip().decode("ascii")
    descriptions = parse_server_timing(value)
    # each shard is still recognisable, its control characters written as escapes
    assert "shard\\r\\nSet-Cookie: x=1: 1 query" in descriptions
    assert 'quote"back\\slash: 1 query' in descriptions
    assert "esc\\x1b[31mred\\x07: 1 query" in descriptions
    assert "caf\\xe9-\\u4e2d\\u6587-\\U0001f600: 1 query" in descriptions
    long = next(d for d in descriptions if d.startswith("long-"))
    assert long.endswith("...") and len(long) <= 100
    for engine in engines:
        engine.dispose()


def test_server_timing_stays_short_with_many_shards(tmp_path, serve):
    engines = []
    for number in range(80):
        engine = sa.create_engine(f"sqlite:///{tmp_path}/s{number}.db")
        ioprofiler.label(engine, f"dbshard{number:03d}-" + "x" * 40)
        engines.append(engine)
    port = serve(make_app(engines))
    lines, _ = raw_get(port, "/?ioprofiler=1")
    timing = next(line for line in lines if line.lower().startswith(b"server-timing:"))
    assert len(timing) < MAX_SERVER_TIMING + 200
    assert b"dbshard000-" in timing
    listed = timing.count(b"db-dbshard")
    assert 0 < listed < 80
    assert f'more;desc="{80 - listed} targets not listed"'.encode() in timing
    for engine in engines:
        engine.dispose()


@pytest.mark.parametrize(
    "name", ["shard\r\nSet-Cookie: x=1", "a\nb", "nul\x00", "esc\x1b", "nel\x85", "ls\u2028"]
)
def test_a_label_with_control_characters_is_refused(tmp_path, name):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/a.db")
    with pytest.raises(ValueError, match="control characters"):
        ioprofiler.label(engine, name)
    ioprofiler.label(engine, 'quotes " and \\ and caf\u00e9 are fine')
    with ioprofiler.profile() as trace, engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert trace.events[0].target == 'quotes " and \\ and caf\u00e9 are fine'
    engine.dispose()
