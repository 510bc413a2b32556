"""Small things a careful reader checks: counts read "1 query", "2 calls"; redaction is the
same in every rendering, and event.params keeps what was recorded."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa
from pymemcache.client.base import Client
from rich.console import Console

import ioprofiler
from ioprofiler import snapshot
from ioprofiler.render.html import render_panel
from ioprofiler.render.json import render_json
from ioprofiler.response import server_timing
from ioprofiler.testing import IOBudgetExceeded, assert_io

SECRET = "sekrit-4711"


@pytest.fixture
def shard(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/dbshard01.db")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    yield engine
    engine.dispose()


def one_query_one_cache_call(shard, memcached):
    cache = Client(memcached.address)
    with ioprofiler.profile() as trace:
        with shard.connect() as conn:
            conn.exec_driver_sql("SELECT id FROM users WHERE name = ?", (SECRET,)).all()
        cache.get("user:1")
    return trace


def console_text(trace) -> str:
    out = io.StringIO()
    Console(file=out, width=300, color_system=None).print(trace)
    return out.getvalue()


def test_one_of_each_reads_in_the_singular_everywhere(shard, memcached):
    trace = one_query_one_cache_call(shard, memcached)
    statements = [e for e in trace.events if e.is_statement]
    assert len(statements) == 1
    timing = server_timing(trace)
    assert "db;dur=" in timing and 'desc="1 query, ' in timing
    assert 'desc="1 call, 0 hits, 1 miss, ' in timing
    assert "dbshard01: 1 query" in timing and "memcache: 1 call" in timing
    assert "1 query" in render_panel(trace) and "1 cache call" in render_panel(trace)
    header = console_text(trace).splitlines()[0]
    assert "1 query, 1 cache call" in header, header
    assert "db 1 query" in trace.text() and "cache 1 call" in trace.text()
    assert "queries" not in timing + header and "1 calls" not in timing + header


def test_redaction_hides_values_in_every_rendering_and_keeps_event_params(shard, memcached):
    ioprofiler.configure(redact=True)
    trace = one_query_one_cache_call(shard, memcached)
    with pytest.raises(IOBudgetExceeded) as failure:
        with assert_io(db=0):
            with shard.connect() as conn:
                conn.exec_driver_sql("SELECT id FROM users WHERE name = ?", (SECRET,)).all()
    shown = {
        "listing": trace.text(callsites=True),
        "sql": trace.events[0].sql or "",
        "panel": render_panel(trace),
        "json": render_json(trace),
        "console": console_text(trace),
        "budget failure": str(failure.value),
        "snapshot": "\n".join(snapshot.snapshot_lines(trace, hits=True)),
    }
    for rendering, text in shown.items():
        assert SECRET not in text, rendering
    assert "name = ?" in shown["listing"] and "name = ?" in shown["budget failure"]
    statement = next(e for e in trace.events if e.is_statement)
    assert statement.params == (SECRET,)  # the process keeps what it recorded (README)
