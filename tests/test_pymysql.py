"""PyMySQL without an ORM, against MariaDB at 127.0.0.1:3306: one event per statement the
server saw, judged by the server's own per-session counters (``Questions``, ``Com_*``)."""

from __future__ import annotations

import os

import pytest

import ioprofiler
from ioprofiler.patching import is_ours
from ioprofiler.testing import assert_io
from tests.conftest import mysql_or_skip

pymysql = pytest.importorskip("pymysql")
# pymysql.ProgrammingError, not pymysql.err.ProgrammingError: once Django's MySQL backend has
# imported MySQLdb.converters (pymysql.install_as_MySQLdb()), pymysql.err names a second copy
# of that module, whose classes are not the ones PyMySQL raises.

DATABASE = f"iop_dbapi_{os.getpid()}"
COUNTERS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_begin",
    "Com_commit",
    "Com_rollback",
)


@pytest.fixture(scope="module")
def database():
    admin = mysql_or_skip()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {DATABASE}")
        cursor.execute(f"CREATE TABLE {DATABASE}.t (id INTEGER PRIMARY KEY AUTO_INCREMENT, v TEXT)")
        cursor.execute(
            f"CREATE PROCEDURE {DATABASE}.add_to(IN a INT, IN b INT) SELECT a + b AS total"
        )
    yield DATABASE
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    admin.close()


@pytest.fixture
def conn(database):
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=database)
    yield connection
    connection.close()


def counters(connection) -> dict[str, int]:
    """This session's counters; the SHOW itself is one Question and one Com_show_status."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS")
        status = dict(cursor.fetchall())
    return {name: int(status[name]) for name in COUNTERS}


def seen(connection, before: dict[str, int]) -> dict[str, int]:
    after = counters(connection)
    changed = {name: after[name] - before[name] for name in COUNTERS}
    changed["Questions"] -= 1  # the SHOW SESSION STATUS that read them
    return changed


def whats(trace) -> list[str]:
    return [e.line().split(" ms ", 1)[1] for e in trace.events]


def test_one_event_per_statement_the_server_counted(conn):
    before = counters(conn)
    with ioprofiler.profile() as trace:
        with conn.cursor() as cursor:
            conn.begin()
            cursor.execute("INSERT INTO t (v) VALUES (%s)", ("one",))
            # PyMySQL batches an INSERT ... VALUES into one statement ...
            cursor.executemany("INSERT INTO t (v) VALUES (%s)", [("a",), ("b",), ("c",)])
            # ... and sends any other statement once per row
            cursor.executemany("UPDATE t SET v = %s WHERE v = %s", [("A", "a"), ("B", "b")])
            cursor.executemany("UPDATE t SET v = %s", [])  # nothing sent
            conn.commit()
            cursor.execute("SELECT count(*) FROM t WHERE v = %(v)s", {"v": "A"})
            assert cursor.fetchone() == (1,)
            cursor.callproc("add_to", (2, 3))  # SET @_add_to_0=2,@_add_to_1=3; CALL add_to(...)
            assert cursor.fetchone() == (5,)
            while cursor.nextset():
                pass
            conn.rollback()
    counted = seen(conn, before)
    assert counted == {
        "Questions": len(trace.events),
        "Com_select": 2,  # and the procedure's own SELECT
        "Com_insert": 2,
        "Com_update": 2,
        "Com_begin": trace.count(kind="db", op="begin"),
        "Com_commit": trace.count(kind="db", op="commit"),
        "Com_rollback": trace.count(kind="db", op="rollback"),
    }, trace.text()
    assert whats(trace) == [
        "BEGIN",
        "INSERT INTO t (v) VALUES ('one')",
        "INSERT INTO t (v) VALUES ('a') -- executemany: 3 rows",
        "UPDATE t SET v = 'A' WHERE v = 'a'",
        "UPDATE t SET v = 'B' WHERE v = 'b'",
        "COMMIT",
        "SELECT count(*) FROM t WHERE v = 'A'",
        "SET @`_add_to_0`=2,@`_add_to_1`=3",
        "CALL `add_to`(@`_add_to_0`,@`_add_to_1`)",
        "ROLLBACK",
    ]
    assert {e.target for e in trace.events} == {DATABASE}
    assert trace.count(kind="db") == 7  # statements: budgets leave BEGIN/COMMIT/ROLLBACK out
    assert all(e.callsite.startswith("tests/test_pymysql.py:") for e in trace.events)
    with conn.cursor() as cursor:
        cursor.execute("DELETE FROM t")
    conn.commit()


def test_a_failing_statement_is_an_event_with_its_error_and_raises_unchanged(conn):
    with conn.cursor() as cursor:
        with pytest.raises(pymysql.ProgrammingError) as raw:
            cursor.execute("SELEC 1")
        with ioprofiler.profile() as trace:
            with pytest.raises(pymysql.ProgrammingError) as recorded:
                cursor.execute("SELEC 1")
            cursor.execute("SELECT 2")  # the connection still works
            assert cursor.fetchone() == (2,)
    assert recorded.value.args == raw.value.args
    assert recorded.value.args[0] == 1064
    (event, after) = trace.events
    assert event.error == "ProgrammingError" and "1064" in event.error_message
    assert event.line().endswith("SELEC 1 [ERROR ProgrammingError]")
    assert after.error is None


def test_connect_is_an_event_with_its_set_up_statements_inside(database):
    with ioprofiler.profile() as trace:
        connection = pymysql.connect(
            host="127.0.0.1",
            user="root",
            password="",
            database=database,
            init_command="SET @ioprofiler_init = 1",
            sql_mode="ANSI_QUOTES",
        )
    try:
        assert whats(trace) == [f"CONNECT root@127.0.0.1:3306/{database}"]
        assert trace.count(kind="db", op="connect") == 1 and trace.count(kind="db") == 0
        # init_command and sql_mode were sent inside it: the session saw them
        with connection.cursor() as cursor:
            cursor.execute("SELECT @ioprofiler_init, @@SESSION.sql_mode")
            assert cursor.fetchone() == (1, "ANSI_QUOTES")
    finally:
        connection.close()


def test_a_connect_that_fails_is_an_event_with_its_error():
    with ioprofiler.profile() as trace:
        with pytest.raises(pymysql.OperationalError):
            pymysql.connect(host="127.0.0.1", port=1, user="root", connect_timeout=2)
    (event,) = trace.events
    assert event.op == "connect" and event.error == "OperationalError"
    assert event.line().split(" ms ", 1)[1].startswith("CONNECT root@127.0.0.1:1 [ERROR")


def test_a_label_names_the_shard(conn, database):
    other = pymysql.connect(host="127.0.0.1", user="root", database=database)
    try:
        ioprofiler.label(other, "dbshard05")
        with ioprofiler.profile() as trace:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            with other.cursor() as cursor:
                cursor.execute("SELECT 1")
            other.commit()
        assert [e.target for e in trace.events] == [database, "dbshard05", "dbshard05"]
        assert trace.count(kind="db", target="dbshard05") == 1
        with pytest.raises(ValueError):
            ioprofiler.label(other, "dbshard05\r\n")
        with pytest.raises(ValueError):
            ioprofiler.label(other, " ")
    finally:
        other.close()


def test_budgets_and_the_listing_count_driver_statements(conn):
    with assert_io(db={DATABASE: 2}, commits=1):
        with conn.cursor() as cursor:
            cursor.execute("SELECT %s", (1,))
            cursor.execute("SELECT %s", (2,))
        conn.commit()


HOSTILE = [
    "O'Brien",
    "back\\slash\\",
    "new\nline\r\x1b[31m",
    "%s %(v)s %%",
    "*/ DROP TABLE t; --",
    "\x00zero",
    "\u202eright-to-left",
]


def test_hostile_values_reach_the_server_unchanged_and_show_as_literals(conn):
    with ioprofiler.profile() as trace:
        with conn.cursor() as cursor:
            for value in HOSTILE:
                cursor.execute("SELECT %s AS v, '100%%' AS pct", (value,))
                assert cursor.fetchone() == (value, "100%")
    lines = whats(trace)
    assert len(lines) == len(HOSTILE)
    for line in lines:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line
        assert line.startswith("SELECT ") and line.endswith(" AS v, '100%' AS pct")
    assert lines[0] == "SELECT 'O''Brien' AS v, '100%' AS pct"
    assert lines[4] == "SELECT '*/ DROP TABLE t; --' AS v, '100%' AS pct"


def test_nothing_is_recorded_without_a_trace(conn):
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
    conn.commit()
    with ioprofiler.profile() as trace:
        pass
    assert trace.events == []


def test_install_and_uninstall_are_exact():
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor, SSCursor

    from ioprofiler.recording import below

    classes = (Cursor, SSCursor, Connection)
    ioprofiler.uninstall()
    assert not below
    before = {(c, n): v for c in classes for n, v in vars(c).items()}
    assert "pymysql" in ioprofiler.install()
    assert "ioprofiler.integrations.pymysql" in below
    for owner, name in [
        (Cursor, "execute"),
        (Cursor, "executemany"),
        (Cursor, "callproc"),
        (Cursor, "_query"),
        (SSCursor, "_query"),
        (Connection, "connect"),
        (Connection, "commit"),
        (Connection, "rollback"),
        (Connection, "begin"),
        (Connection, "autocommit"),
    ]:
        assert is_ours(vars(owner)[name]), (owner, name)
    ioprofiler.install()  # idempotent: nothing wrapped twice
    assert not is_ours(vars(Cursor)["execute"].__wrapped__)
    ioprofiler.uninstall()
    after = {(c, n): v for c in classes for n, v in vars(c).items()}
    assert after.keys() == before.keys() and all(after[k] is v for k, v in before.items())
    assert not below
    ioprofiler.install()
