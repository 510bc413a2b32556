"""psycopg 3 without an ORM, sync and asyncio, against PostgreSQL at 127.0.0.1:5432: every
statement the server ran (its statement log, tests/pglog.py) is in an event."""

from __future__ import annotations

import os

import pytest

import ioprofiler
from ioprofiler.patching import is_ours
from ioprofiler.testing import assert_io
from tests.pglog import StatementLog, admin_or_skip, log_all

psycopg = pytest.importorskip("psycopg")

DATABASE = f"iop_dbapi_{os.getpid()}"


@pytest.fixture(scope="module")
def admin():
    connection = admin_or_skip()
    connection.execute(f"CREATE DATABASE {DATABASE}")
    yield connection
    connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    connection.close()


@pytest.fixture(scope="module")
def server_log(admin):
    return StatementLog(admin)


def connect(**kwargs):
    return psycopg.connect(f"host=127.0.0.1 user=postgres dbname={DATABASE}", **kwargs)


@pytest.fixture
def conn(admin):
    connection = connect()
    connection.execute("CREATE TABLE IF NOT EXISTS t (id SERIAL PRIMARY KEY, v TEXT)")
    connection.execute("DELETE FROM t")
    connection.commit()
    yield connection
    connection.close()


def whats(trace) -> list[str]:
    return [e.line().split(" ms ", 1)[1] for e in trace.events]


HIDDEN = ("BEGIN", "DEALLOCATE ALL")  # sent by psycopg inside another call's event


def server_count(trace) -> int:
    """Statements the events stand for: an executemany's rows each ran on the server."""
    return sum(e.rows or 1 for e in trace.events if e.op != "connect")


def test_every_statement_the_server_ran_is_in_an_event(conn, server_log):
    log_all(conn)
    since = server_log.end()
    with ioprofiler.profile() as trace:
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO t (v) VALUES (%s)", ("one",))
            # one pipeline, one round trip: every row an execution on the server
            cursor.executemany("INSERT INTO t (v) VALUES (%s)", [("a",), ("b",), ("c",)])
            conn.commit()
            conn.commit()  # no transaction open: psycopg sends nothing, and there is no event
            cursor.execute("SELECT count(*) FROM t WHERE v = %(v)s", {"v": "a"})
            assert cursor.fetchone() == (1,)
            conn.rollback()
    assert whats(trace) == [
        "INSERT INTO t (v) VALUES ('one')",
        "INSERT INTO t (v) VALUES ('a') -- executemany: 3 rows",
        "COMMIT",
        "SELECT count(*) FROM t WHERE v = 'a'",
        "ROLLBACK",
    ]
    ran = server_log.statements(conn.info.backend_pid, since, expected=10)
    # psycopg's own round trips are inside the events that made them: the BEGIN opening a
    # transaction in its first statement's, and the DEALLOCATE ALL that drops the statements
    # prepared in a transaction rolled back (executemany prepares) in the ROLLBACK's
    assert ran == [
        "BEGIN",
        "INSERT INTO t (v) VALUES ($1)",
        "INSERT INTO t (v) VALUES ($1)",
        "INSERT INTO t (v) VALUES ($1)",
        "INSERT INTO t (v) VALUES ($1)",
        "COMMIT",
        "BEGIN",
        "SELECT count(*) FROM t WHERE v = $1",
        "ROLLBACK",
        "DEALLOCATE ALL",
    ]
    assert len([s for s in ran if s not in HIDDEN]) == server_count(trace) == 7
    assert {e.target for e in trace.events} == {DATABASE}
    assert trace.count(kind="db") == 3
    assert trace.count(kind="db", op="commit") == trace.count(kind="db", op="rollback") == 1
    assert all(e.callsite.startswith("tests/test_psycopg.py:") for e in trace.events)


def test_connection_execute_sql_objects_and_binary_placeholders(conn):
    from psycopg import sql

    with ioprofiler.profile() as trace:
        conn.execute("SELECT %b::text, %t::int", ("x", 7))
        query = sql.SQL("SELECT {} FROM t WHERE v = %s").format(sql.Identifier("v"))
        conn.execute(query, ("zz",)).fetchall()
        with conn.cursor(name="server_side") as cursor:  # a server-side cursor: DECLARE
            cursor.execute("SELECT v FROM t")
            cursor.fetchall()
    assert whats(trace) == [
        "SELECT 'x'::text, 7::int",
        "SELECT \"v\" FROM t WHERE v = 'zz'",
        "SELECT v FROM t",
    ]


def test_a_failing_statement_is_an_event_with_its_error_and_raises_unchanged(conn):
    with ioprofiler.profile() as trace:
        with pytest.raises(psycopg.errors.SyntaxError) as recorded:
            conn.execute("SELEC 1")
        conn.rollback()
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert recorded.value.sqlstate == "42601"
    event = trace.events[0]
    assert event.error == "SyntaxError" and "SELEC" in event.error_message
    assert whats(trace) == ["SELEC 1 [ERROR SyntaxError]", "ROLLBACK", "SELECT 2"]


def test_connect_is_an_event_named_by_the_database(admin):
    with ioprofiler.profile() as trace:
        connection = connect()
        connection.close()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect("host=127.0.0.1 port=1 user=postgres dbname=nowhere connect_timeout=2")
    assert whats(trace) == [
        f"CONNECT postgres@127.0.0.1:5432/{DATABASE}",
        "CONNECT postgres@127.0.0.1:1/nowhere [ERROR OperationalError]",
    ]
    assert [e.target for e in trace.events] == [DATABASE, "nowhere"]
    assert trace.count(kind="db", op="connect") == 2 and trace.count(kind="db") == 0


async def test_async_connections_and_cursors(admin, server_log):
    with ioprofiler.profile() as trace:
        connection = await psycopg.AsyncConnection.connect(
            f"host=127.0.0.1 user=postgres dbname={DATABASE}"
        )
    try:
        await connection.execute("SET log_statement = 'all'")
        await connection.commit()
        ioprofiler.label(connection, "dbshard07")
        since = server_log.end()
        with ioprofiler.profile() as work:
            async with connection.cursor() as cursor:
                await cursor.execute("SELECT %s::int + 1", (41,))
                assert await cursor.fetchone() == (42,)
                await cursor.executemany("SELECT %s::int", [(1,), (2,)])
                with pytest.raises(psycopg.errors.UndefinedTable):
                    await cursor.execute("SELECT * FROM missing_table")
                await connection.rollback()
                await connection.commit()  # nothing open: no event
        ran = server_log.statements(connection.info.backend_pid, since, expected=7)
    finally:
        await connection.close()
    assert whats(trace) == [f"CONNECT postgres@127.0.0.1:5432/{DATABASE}"]
    assert whats(work) == [
        "SELECT 41::int + 1",
        "SELECT 1::int -- executemany: 2 rows",
        "SELECT * FROM missing_table [ERROR UndefinedTable]",
        "ROLLBACK",
    ]
    assert {e.target for e in work.events} == {"dbshard07"}
    assert ran == [
        "BEGIN",
        "SELECT $1::int + 1",
        "SELECT $1::int",
        "SELECT $1::int",
        "SELECT * FROM missing_table",
        "ROLLBACK",
        "DEALLOCATE ALL",
    ]
    assert len([s for s in ran if s not in HIDDEN]) == server_count(work)


def test_a_label_names_the_shard_and_budgets_and_snapshots_see_it(conn):
    from ioprofiler.snapshot import snapshot_lines

    ioprofiler.label(conn, "dbshard09")
    with assert_io(db={"dbshard09": 2}, commits=1) as trace:
        conn.execute("SELECT %s", (1,))
        conn.execute("SELECT %s", (2,))
        conn.commit()
    assert {e.target for e in trace.events} == {"dbshard09"}
    assert snapshot_lines(trace)[:2] == ["db|dbshard09: SELECT #", "db|dbshard09: SELECT #"]


HOSTILE = [
    "O'Brien",
    "back\\slash\\",
    "new\nline\r\x1b[31m",
    "%s %(v)s %%",
    "*/ DROP TABLE t; --",
    "$$ dollar $tag$",
    "\u202eright-to-left",
]


def test_hostile_values_reach_the_server_unchanged_and_show_as_literals(conn):
    with ioprofiler.profile() as trace:
        for value in HOSTILE:
            assert conn.execute("SELECT %s::text AS v, '100%%' AS pct", (value,)).fetchone() == (
                value,
                "100%",
            )
    lines = whats(trace)
    assert len(lines) == len(HOSTILE)
    for line in lines:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line
        assert line.startswith("SELECT ") and line.endswith("::text AS v, '100%' AS pct")
    assert lines[0] == "SELECT 'O''Brien'::text AS v, '100%' AS pct"
    assert lines[4] == "SELECT '*/ DROP TABLE t; --'::text AS v, '100%' AS pct"


def test_nothing_is_recorded_without_a_trace(conn):
    conn.execute("SELECT 1")
    conn.commit()
    with ioprofiler.profile() as trace:
        pass
    assert trace.events == []


def test_install_and_uninstall_are_exact():
    from psycopg import (
        AsyncConnection,
        AsyncCursor,
        AsyncServerCursor,
        Connection,
        Cursor,
        ServerCursor,
    )

    from ioprofiler.recording import below

    classes = (Cursor, ServerCursor, AsyncCursor, AsyncServerCursor, Connection, AsyncConnection)
    ioprofiler.uninstall()
    assert not below
    before = {(c, n): v for c in classes for n, v in vars(c).items()}
    module_connect = psycopg.connect
    assert "psycopg" in ioprofiler.install()
    assert "ioprofiler.integrations.psycopg" in below
    for owner in classes:
        if owner in (Connection, AsyncConnection):
            names = ("commit", "rollback", "connect")
        elif owner in (Cursor, AsyncCursor):
            names = ("execute", "executemany")
        else:
            names = ("execute",)
        for name in names:
            assert is_ours(vars(owner)[name]), (owner, name)
    assert is_ours(vars(psycopg)["connect"])
    ioprofiler.uninstall()
    after = {(c, n): v for c in classes for n, v in vars(c).items()}
    assert after.keys() == before.keys() and all(after[k] is v for k, v in before.items())
    assert psycopg.connect is module_connect
    assert not below
    ioprofiler.install()
