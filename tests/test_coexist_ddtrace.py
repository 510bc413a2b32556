"""ddtrace's pymemcache and SQLAlchemy patches beside ioprofiler, in either install order:
both record every call (ddtrace's spans collected by a trace filter of its own API, sent
nowhere), and unpatching both restores everything."""

from __future__ import annotations

import os

import pytest

from tests.coexist import ORDERS, STATEMENTS, installed_in_order, require, run_statements

# Before ddtrace is imported: no agent, no telemetry, no remote configuration.
os.environ.setdefault("DD_TRACE_AGENT_URL", "http://127.0.0.1:9")
os.environ.setdefault("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false")
os.environ.setdefault("DD_REMOTE_CONFIGURATION_ENABLED", "false")
os.environ.setdefault("DD_TRACE_STARTUP_LOGS", "false")
ddtrace = require("ddtrace")

import pymemcache.client.base  # noqa: E402
import pymemcache.client.hash  # noqa: E402
from ddtrace.contrib.internal.pymemcache import patch as ddtrace_pymemcache  # noqa: E402
from ddtrace.contrib.internal.sqlalchemy import patch as ddtrace_sqlalchemy  # noqa: E402
from ddtrace.trace import TraceFilter, tracer  # noqa: E402

import ioprofiler  # noqa: E402
from ioprofiler.event import CONNECTION_OPS  # noqa: E402


class Collected(TraceFilter):
    """Every finished ddtrace span, kept here; nothing is sent."""

    def __init__(self) -> None:
        self.spans = []

    def process_trace(self, trace):
        self.spans.extend(trace)
        return None


@pytest.fixture
def spans():
    collected = Collected()
    tracer.configure(trace_processors=[collected])
    yield collected
    tracer.configure(trace_processors=[])


HASH_CLIENT = pymemcache.client.hash.HashClient


def patch_ddtrace():
    ddtrace.patch(pymemcache=True, sqlalchemy=True)


def unpatch_ddtrace():
    ddtrace_pymemcache.unpatch()
    ddtrace_sqlalchemy.unpatch()
    # ddtrace's unpatch() puts pymemcache.client.hash.Client where HashClient was.
    pymemcache.client.hash.HashClient = HASH_CLIENT


@pytest.mark.parametrize("order", ORDERS)
def test_pymemcache_both_record_in_either_order(order, spans, memcached):
    with installed_in_order(order, patch_ddtrace, unpatch_ddtrace) as stack:
        # Made after both: Client is ddtrace's proxy class; HashClient makes ddtrace
        # clients; PooledClient makes pymemcache's own (ddtrace does not see those).
        client = pymemcache.client.base.Client(memcached.address)
        hashed = pymemcache.client.hash.HashClient([memcached.address])
        pooled = pymemcache.client.base.PooledClient(memcached.address)
        with ioprofiler.profile() as trace:
            client.set("coexist", b"1", noreply=False)  # before the get on another socket
            assert hashed.get("coexist") == b"1"
            assert pooled.get("absent") is None
        assert [(s.name, s.resource) for s in spans.spans] == [
            ("memcached.command", "set"),
            ("memcached.command", "get"),
        ]
        assert [(e.op, e.hit) for e in trace.events if e.op not in CONNECTION_OPS] == [
            ("set", None),
            ("get", True),
            ("get", False),
        ]

        left = stack.remove_last()
        spans.spans.clear()
        client = pymemcache.client.base.Client(memcached.address)
        with ioprofiler.profile() as trace:
            assert client.get("coexist") == b"1"
        if left == "ioprofiler":
            assert (trace.count(), len(spans.spans)) == (1, 0)
        else:
            assert (trace.count(), len(spans.spans)) == (0, 1)


@pytest.mark.parametrize("order", ORDERS)
def test_sqlalchemy_both_record_in_either_order(order, spans, tmp_path):
    with installed_in_order(order, patch_ddtrace, unpatch_ddtrace):
        executed = run_statements(tmp_path / "dbshard01.db")
    statements = [span.resource for span in spans.spans if span.name == "sqlite.query"]
    assert statements == [e.statement for e in executed] == STATEMENTS
