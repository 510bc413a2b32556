"""Round trips and waits around the calls: COMMIT, ROLLBACK, CONNECT and POOL WAIT on
SQLite shard files, sync and async, and memcached connects. (Against MariaDB, with the
server's own counters: test_roundtrips_mysql.py.)"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from pymemcache.client.base import Client as MemcacheClient
from pymemcache.exceptions import MemcacheUnexpectedCloseError
from sqlalchemy.ext.asyncio import create_async_engine

import ioprofiler
from ioprofiler.testing import IOBudgetExceeded, assert_io
from tests.poolholder import HOLD_S, PoolHolder


def described(trace) -> list[str]:
    return [event.line().split(" ms ", 1)[1] for event in trace.events]


@pytest.fixture
def shard(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard01.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    yield engine
    engine.dispose()


def test_commit_and_rollback_each_show_once_and_counts_stay_statements(shard):
    with ioprofiler.profile() as trace:
        with shard.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (1)")
        with shard.connect() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (2)")
            conn.rollback()
    assert described(trace) == [
        "INSERT INTO t (v) VALUES (1)",
        "COMMIT",
        "ROLLBACK (connection returned to the pool)",
        "INSERT INTO t (v) VALUES (2)",
        "ROLLBACK",
        "ROLLBACK (connection returned to the pool)",
    ]
    assert trace.count(kind="db") == 2 and trace.count() == 2
    assert trace.count(kind="db", op="commit") == 1
    assert trace.count(kind="db", op="rollback") == 3
    assert [e.is_statement for e in trace.events] == [True, False, False, True, False, False]
    assert trace.duration_ms(kind="db", op="commit") == trace.events[1].duration_ms
    with shard.connect() as conn:
        assert conn.exec_driver_sql("SELECT v FROM t").scalars().all() == [1]


def test_savepoints_are_listed_as_the_statements_they_are(shard):
    with ioprofiler.profile() as trace:
        with shard.begin() as conn:
            nested = conn.begin_nested()
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (3)")
            nested.rollback()
            conn.begin_nested().commit()
    assert described(trace) == [
        "SAVEPOINT sa_savepoint_1",
        "INSERT INTO t (v) VALUES (3)",
        "ROLLBACK TO SAVEPOINT sa_savepoint_1",
        "SAVEPOINT sa_savepoint_2",
        "RELEASE SAVEPOINT sa_savepoint_2",
        "COMMIT",
        "ROLLBACK (connection returned to the pool)",
    ]
    assert trace.count(kind="db") == 5


def test_a_new_connection_is_a_connect_with_its_file(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard02.db'}")
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    engine.dispose()
    connect = trace.events[0]
    assert (connect.op, connect.target) == ("connect", "dbshard02")
    assert connect.description() == f"CONNECT {tmp_path / 'dbshard02.db'}"
    assert connect.duration_ms > 0
    assert trace.count(kind="db", op="connect") == 1 and trace.count(kind="db") == 1


def test_a_failed_connect_is_recorded_and_the_error_reaches_the_caller(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'dbshard03.db'}")
    with ioprofiler.profile() as trace:
        with pytest.raises(sa.exc.OperationalError, match="unable to open database file"):
            engine.connect()
    (connect,) = trace.events
    assert connect.op == "connect" and connect.error == "OperationalError"
    assert "unable to open database file" in connect.error_message
    assert connect.line().endswith("dbshard03.db [ERROR OperationalError]")


def test_an_exhausted_pool_shows_one_pool_wait_with_the_pools_state(tmp_path):
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'dbshard04.db'}", pool_size=1, max_overflow=0, pool_timeout=10
    )
    with engine.connect() as conn:  # the connection exists before the trace
        conn.exec_driver_sql("SELECT 1")
    with ioprofiler.profile() as quiet:
        with engine.connect() as conn:  # a checkout that did not wait: no event
            conn.exec_driver_sql("SELECT 2")
    assert [e.op for e in quiet.events] == ["execute", "rollback"]
    with PoolHolder(engine) as holder, ioprofiler.profile() as trace:
        holder.go()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 3")
    engine.dispose()
    waits = [e for e in trace.events if e.op == "pool_wait"]
    assert len(waits) == 1 and trace.events[0] is waits[0]
    holder.assert_waited_for(waits[0])
    assert waits[0].description() == (
        "POOL WAIT (QueuePool: 1 of 1 in use, overflow 0/0, timeout 10 s)"
    )
    text = trace.text()
    assert "1 pool wait" in text and "not in I/O" in text
    assert trace.count(kind="db", op="pool_wait") == 1 and trace.count(kind="db") == 1


def test_a_pool_timeout_is_recorded_with_its_error_and_raises_unchanged(tmp_path):
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'dbshard05.db'}", pool_size=1, max_overflow=0, pool_timeout=0.1
    )
    with PoolHolder(engine) as holder, ioprofiler.profile() as trace:
        holder.go()
        with pytest.raises(sa.exc.TimeoutError, match="QueuePool limit of size 1 overflow 0"):
            engine.connect()
    engine.dispose()
    (wait,) = trace.events
    assert wait.op == "pool_wait" and wait.error == "TimeoutError"
    assert wait.duration_ms >= 100 * 0.9
    assert "connection timed out" in wait.error_message
    assert wait.line().endswith("timeout 0.1 s) [ERROR TimeoutError]")


async def test_async_engines_show_connect_commit_rollback_and_pool_waits(tmp_path):
    import asyncio

    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'dbshard06.db'}",
        pool_size=1,
        max_overflow=0,
        pool_timeout=10,
    )
    ioprofiler.label(engine, "dbshard06")
    with ioprofiler.profile() as trace:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")

        held, go = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
                held.set()
                await go.wait()
                await asyncio.sleep(HOLD_S)  # begins once our checkout below is waiting

        holder = asyncio.create_task(hold())
        await held.wait()
        go.set()  # the holder runs again only when this task awaits: in the checkout
        async with engine.connect() as conn:
            await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            await conn.rollback()
        await holder
    await engine.dispose()
    ops = [e.op for e in trace.events if not e.is_statement]
    assert ops[0] == "connect" and "commit" in ops and "pool_wait" in ops
    waits = [e for e in trace.events if e.op == "pool_wait"]
    assert len(waits) == 1 and waits[0].target == "dbshard06"
    assert waits[0].duration_ms >= HOLD_S * 1000
    assert "AsyncAdaptedQueuePool: 1 of 1 in use" in waits[0].description()
    assert trace.count(kind="db", op="rollback") >= 1


def test_budgets_count_statements_unless_commits_or_connects_are_asked_for(shard):
    with assert_io(db=1):
        with shard.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (4)")
    with assert_io(db=1, commits=1, rollbacks=1, connects=0):
        with shard.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (5)")
    with pytest.raises(IOBudgetExceeded, match=r"commit +dbshard01 +exactly 0 +1"):
        with assert_io(commits={"dbshard01": 0}):
            with shard.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t (v) VALUES (6)")


# -- memcached: connects on first use, after a restart, and to nothing ----------------


def test_memcache_connects_on_first_use_and_counts_stay_calls(start_memcached):
    server = start_memcached()
    client = MemcacheClient(server.address)
    with ioprofiler.profile() as trace:
        client.set("k", b"v", noreply=False)
        assert client.get("k") == b"v"
    client.close()
    assert [(e.op, e.target) for e in trace.events] == [
        ("set", "memcache"),
        ("connect", "memcache"),
        ("get", "memcache"),
    ]
    connect = trace.events[1]
    assert connect.line().endswith(" ms CONNECT") and connect.duration_ms > 0
    assert trace.count(kind="cache") == 2 and trace.count(kind="cache", op="connect") == 1
    # made inside the SET, its time is part of the SET's: counted once in the totals
    assert trace.duration_ms(kind="cache") == pytest.approx(
        sum(e.duration_ms for e in trace.events if e.is_call)
    )
    assert "incl. 1 connect" in trace.text()


def test_memcache_reconnects_after_the_server_restarts_on_the_same_port(start_memcached):
    server = start_memcached()
    client = MemcacheClient(server.address)
    client.set("k", b"v", noreply=False)
    port = server.port
    server.restart()
    assert server.port == port
    with ioprofiler.profile() as trace:
        with pytest.raises((MemcacheUnexpectedCloseError, OSError)) as stale:
            client.get("k")  # the old socket: the server closed it
        assert client.get("k") is None  # a new connection to the new, empty server
    client.close()
    # the second GET opens the connection it needs: listed after it, in start order
    assert [e.op for e in trace.events] == ["get", "get", "connect"]
    failed_get, get, connect = trace.events
    assert failed_get.error == type(stale.value).__qualname__
    assert connect.error is None and get.hit is False
    assert trace.count(kind="cache", op="connect") == 1


def test_a_memcache_server_that_cannot_be_reached_is_a_failed_connect():
    from ioprofiler.memcached import free_port

    client = MemcacheClient(("127.0.0.1", free_port()), connect_timeout=1)
    with ioprofiler.profile() as trace:
        with pytest.raises(ConnectionRefusedError):
            client.get("k")
    get, connect = trace.events
    assert (get.op, get.error) == ("get", "ConnectionRefusedError")
    assert (connect.op, connect.error) == ("connect", "ConnectionRefusedError")
    assert connect.line().endswith(" ms CONNECT [ERROR ConnectionRefusedError]")


def test_the_panel_makes_a_pool_wait_stand_out(tmp_path):
    from ioprofiler.render.html import render_panel

    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'dbshard07.db'}", pool_size=1, max_overflow=0, pool_timeout=10
    )
    with PoolHolder(engine) as holder, ioprofiler.profile() as trace:
        holder.go()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 7")
    engine.dispose()
    panel = render_panel(trace)
    assert panel.count('<tr class="o pw') == 1  # the wait's row, marked (and slow)
    assert '<b class="pw">1 pool wait ' in panel  # in the header and the shard's row
    assert "POOL WAIT (QueuePool: 1 of 1 in use, overflow 0/0, timeout 10 s)" in panel
    assert "not in I/O" in panel


def test_the_io_budget_marker_takes_commits_and_connects(pytester, tmp_path):
    pytester.makepyfile(
        f"""
        import pytest
        import sqlalchemy as sa

        engine = sa.create_engine("sqlite:///{tmp_path / "dbshard08.db"}")

        @pytest.mark.io_budget(db=1, commits=1, connects=1)
        def test_within():
            with engine.begin() as conn:
                conn.exec_driver_sql("SELECT 1")

        @pytest.mark.io_budget(db=1, commits=0)
        def test_over():
            with engine.begin() as conn:
                conn.exec_driver_sql("SELECT 1")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*commit *all *exactly 0 *1 *EXCEEDED*"])


def test_a_hashclient_server_coming_back_is_a_connect(start_memcached):
    from pymemcache.client.hash import HashClient

    first, second = start_memcached(), start_memcached()
    client = HashClient([first.address, second.address], dead_timeout=0, retry_timeout=0)
    key = next(
        k for k in (f"k{n}" for n in range(1000)) if client._get_client(k).server == second.address
    )
    client.set(key, b"1", noreply=False)
    second.stop()
    with ioprofiler.profile() as down:
        with pytest.raises((MemcacheUnexpectedCloseError, OSError)):
            client.get(key)
    second.restart()
    with ioprofiler.profile() as back:
        assert client.get(key) is None  # the server came back empty
    client.close()
    assert [e.op for e in down.events if e.is_call] == ["get"] and down.events[0].error
    assert [(e.op, e.error) for e in back.events] == [("get", None), ("connect", None)]
    assert back.events[1].server == second.address


def test_connect_addresses_never_take_a_password_from_any_drivers_arguments():
    from ioprofiler.integrations.sqlalchemy import connect_address

    mysqlclient = {"host": "10.0.0.5", "port": 3306, "user": "shop", "passwd": "pw", "db": "s1"}
    assert connect_address((), mysqlclient) == ("shop", "10.0.0.5", 3306, "s1")
    psycopg = {"host": "db", "user": "shop", "password": "pw", "dbname": "s2"}
    assert connect_address((), psycopg) == ("shop", "db", None, "s2")
    odbc = ("DRIVER={ODBC Driver 18};SERVER=db;UID=shop;PWD=pw",)  # pyodbc's one string
    assert connect_address(odbc, {}) == (None, None, None, None)
    assert connect_address(("/data/dbshard01.db",), {}, file_first=True)[3] == (
        "/data/dbshard01.db"
    )
