"""redis-py's pipeline in ``WATCH`` mode, left without ``EXEC``: ``reset()`` (the ``with``
block's end) sends ``UNWATCH`` straight on the connection. That round trip is an event of
its own (op ``reset``), listed and timed, which counts and budgets leave out unless asked.

The judge is the server's own count of commands (``INFO commandstats``) on a redis-server
of this test session's own, which nothing else talks to.
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio

import ioprofiler
from tests.test_redis import HOST, own_server  # noqa: F401 - a fixture, asked for by name

COMMANDS = ("watch", "get", "unwatch", "multi", "exec")


def commands_run(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in COMMANDS}


def ran(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in COMMANDS if after[name] != before[name]}


def whats(trace) -> list[str]:
    return [event.line().split(" ms ", 1)[1] for event in trace.events]


def test_a_watch_pipeline_left_without_exec_lists_its_unwatch(request):
    server = request.getfixturevalue("own_server")
    client = redis.Redis(HOST, server.port)
    client.ping()
    before = commands_run(server.client)
    with ioprofiler.profile() as trace:
        with client.pipeline() as pipe:
            pipe.watch("stock")
            pipe.get("stock")
    assert ran(before, commands_run(server.client)) == {"watch": 1, "get": 1, "unwatch": 1}
    assert whats(trace) == [
        "Cache WATCH, keys: stock",
        "Cache MISS, keys: stock",
        "UNWATCH (pipeline reset)",
    ]
    assert trace.count(kind="cache") == 2
    assert trace.count(kind="cache", op="reset") == 1
    assert {event.target for event in trace.events} == {f"redis {HOST}:{server.port}/0"}
    client.close()


def test_a_watch_pipeline_that_executes_sends_no_unwatch(request):
    server = request.getfixturevalue("own_server")
    client = redis.Redis(HOST, server.port)
    client.ping()
    before = commands_run(server.client)
    with ioprofiler.profile() as trace:
        with client.pipeline() as pipe:
            pipe.watch("stock")
            pipe.multi()
            pipe.get("stock")
            pipe.execute()
    assert ran(before, commands_run(server.client)) == {"watch": 1, "multi": 1, "get": 1, "exec": 1}
    assert trace.count(kind="cache", op="reset") == 0
    client.close()


def test_an_asyncio_watch_pipeline_left_without_exec_lists_its_unwatch(request):
    server = request.getfixturevalue("own_server")

    async def optimistic_read() -> ioprofiler.Trace:
        client = redis.asyncio.Redis(host=HOST, port=server.port)
        await client.ping()
        with ioprofiler.profile() as trace:
            async with client.pipeline() as pipe:
                await pipe.watch("stock")
                await pipe.get("stock")
        await client.aclose()
        return trace

    before = commands_run(server.client)
    trace = asyncio.run(optimistic_read())
    assert ran(before, commands_run(server.client)) == {"watch": 1, "get": 1, "unwatch": 1}
    assert whats(trace) == [
        "Cache WATCH, keys: stock",
        "Cache MISS, keys: stock",
        "UNWATCH (pipeline reset)",
    ]
    assert trace.count(kind="cache") == 2
