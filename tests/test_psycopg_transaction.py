"""psycopg 3's ``with conn.transaction():`` sends BEGIN and COMMIT (ROLLBACK when the block
raises; SAVEPOINT and RELEASE when nested) itself: each an event, judged by the server's own
statement log (tests/pglog.py), sync and asyncio."""

from __future__ import annotations

import asyncio

import pytest

import ioprofiler
from tests.pglog import log_all
from tests.test_psycopg import DATABASE, admin, server_log  # noqa: F401 - fixtures, by name

psycopg = pytest.importorskip("psycopg")
CONNINFO = f"host=127.0.0.1 user=postgres dbname={DATABASE}"


def whats(trace) -> list[str]:
    return [event.line().split(" ms ", 1)[1] for event in trace.events]


def test_a_transaction_block_is_begin_and_commit_events(request):
    log = request.getfixturevalue("server_log")
    with psycopg.connect(CONNINFO, autocommit=True) as conn:
        log_all(conn)
        since = log.end()
        with ioprofiler.profile() as trace:
            with conn.transaction():
                conn.execute("SELECT 1")
                with conn.transaction():
                    conn.execute("SELECT 2")
            with pytest.raises(KeyError), conn.transaction():
                conn.execute("SELECT 3")
                raise KeyError("the block fails")
        ran = log.statements(conn.info.backend_pid, since, expected=9)

    assert whats(trace) == [
        "BEGIN",
        "SELECT 1",
        'SAVEPOINT "_pg3_2"',
        "SELECT 2",
        'RELEASE "_pg3_2"',
        "COMMIT",
        "BEGIN",
        "SELECT 3",
        "ROLLBACK",
    ]
    assert ran == whats(trace), (ran, trace.text())
    assert trace.count(kind="db") == 5  # statements; savepoints are statements
    assert [trace.count(kind="db", op=op) for op in ("begin", "commit", "rollback")] == [2, 1, 1]
    assert {event.target for event in trace.events} == {DATABASE}
    assert all(e.callsite.startswith("tests/test_psycopg_transaction.py:") for e in trace.events)


def test_an_asyncio_transaction_block_is_begin_and_commit_events(request):
    log = request.getfixturevalue("server_log")

    async def block() -> tuple[ioprofiler.Trace, list[str]]:
        conn = await psycopg.AsyncConnection.connect(CONNINFO, autocommit=True)
        await conn.execute("SET log_statement = 'all'")
        since = log.end()
        with ioprofiler.profile() as trace:
            async with conn.transaction():
                await conn.execute("SELECT 4")
        ran = log.statements(conn.info.backend_pid, since, expected=3)
        await conn.close()
        return trace, ran

    trace, ran = asyncio.run(block())
    assert whats(trace) == ran == ["BEGIN", "SELECT 4", "COMMIT"]
    assert trace.count(kind="db") == 1


def test_a_commit_the_server_refuses_is_an_event_with_an_error_and_raises_unchanged(request):
    request.getfixturevalue("admin")  # the database
    with psycopg.connect(CONNINFO, autocommit=True) as conn:
        conn.execute("CREATE TABLE parent (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE child (p int REFERENCES parent DEFERRABLE INITIALLY DEFERRED)")
        try:
            with ioprofiler.profile() as trace:
                with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
                    conn.execute("INSERT INTO child VALUES (1)")  # checked at COMMIT
        finally:
            conn.execute("DROP TABLE child, parent")
    commit = trace.events[-1]
    assert (commit.op, commit.error is not None) == ("commit", True), trace.text()
    assert commit.duration_ms is not None
