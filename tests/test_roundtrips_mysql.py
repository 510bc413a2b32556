"""Round trips against MariaDB at 127.0.0.1:3306: each count equals what the server saw.

The server's own counters are the judge: ``Com_commit``, ``Com_rollback`` and
``Questions`` per session (SHOW SESSION STATUS on the connection the workload used), and
the global ``Connections``, which other test runs on the same server may move too: that
comparison is retried until a quiet moment. Database names are unique to this session.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import ioprofiler
from ioprofiler.render.json import render_json
from tests.conftest import mysql_or_skip
from tests.poolholder import HOLD_S, PoolHolder

DATABASE = f"iop_roundtrips_{os.getpid()}"
URL = f"mysql+pymysql://root@127.0.0.1:3306/{DATABASE}"
ASYNC_URL = f"mysql+aiomysql://root@127.0.0.1:3306/{DATABASE}"
COUNTERS = ("Com_commit", "Com_rollback", "Questions")


@pytest.fixture(scope="module")
def admin():
    """A connection of its own, made once: reading the server's counters opens nothing."""
    connection = mysql_or_skip()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {DATABASE}")
        cursor.execute(f"CREATE TABLE {DATABASE}.t (id INTEGER PRIMARY KEY AUTO_INCREMENT, v INT)")
    yield connection
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    connection.close()


@pytest.fixture
def engine(admin):
    """One pooled connection, already open: the workload's session is the one measured."""
    engine = sa.create_engine(URL, pool_size=1, max_overflow=0, pool_timeout=10)
    ioprofiler.label(engine, "dbshard01")
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    yield engine
    engine.dispose()


def session_counters(engine) -> dict[str, int]:
    """The pooled connection's own counters (outside any trace)."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SHOW SESSION STATUS WHERE Variable_name IN ('Com_commit', 'Com_rollback', 'Questions')"
        ).all()
    return {name: int(value) for name, value in rows}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in COUNTERS}


def workload(engine) -> None:
    """Commits, rollbacks (the app's and the pool's), savepoints and a two-phase commit."""
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t (v) VALUES (1)")
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO t (v) VALUES (2)")
        conn.rollback()
    with engine.begin() as conn:
        nested = conn.begin_nested()
        conn.exec_driver_sql("INSERT INTO t (v) VALUES (3)")
        nested.rollback()
        conn.begin_nested().commit()
        conn.exec_driver_sql("INSERT INTO t (v) VALUES (%s)", [(4,), (5,)])
    with engine.connect() as conn:
        xa = conn.begin_twophase()
        conn.exec_driver_sql("INSERT INTO t (v) VALUES (6)")
        xa.prepare()
        xa.commit()
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()


def test_counts_equal_the_servers_session_counters(engine):
    # Reading the counters is a statement and a rollback of its own: measure that first.
    baseline = delta(session_counters(engine), session_counters(engine))
    before = session_counters(engine)
    with ioprofiler.profile() as trace:
        workload(engine)
    seen = delta(before, session_counters(engine))
    seen = {name: seen[name] - baseline[name] for name in COUNTERS}

    commits = trace.count(kind="db", op="commit")
    rollbacks = trace.count(kind="db", op="rollback")
    statements = trace.count(kind="db")
    assert seen == {
        "Com_commit": commits,
        "Com_rollback": rollbacks,
        "Questions": statements + commits + rollbacks,
    }, trace.text()
    # 2 engine.begin() blocks commit (the XA one ends with XA COMMIT, a statement); 2
    # rollbacks end a transaction left open, 4 are the pool's resets on check-in
    assert (commits, rollbacks) == (2, 6)
    assert sum(1 for e in trace.events if e.op == "rollback" and e.detail is True) == 4
    assert trace.count(kind="db", op="connect") == 0  # the pool held its connection
    lines = [e.line().split(" ms ", 1)[1] for e in trace.events]
    assert lines[:3] == [
        "INSERT INTO t (v) VALUES (1)",
        "COMMIT",
        "ROLLBACK (connection returned to the pool)",
    ]
    assert "ROLLBACK TO SAVEPOINT sa_savepoint_1" in lines and "SAVEPOINT sa_savepoint_2" in lines
    # MySQL's two-phase steps are statements: listed once, as the XA statements sent
    assert [line.split(" '")[0] for line in lines if line.startswith("XA ")] == [
        "XA BEGIN",
        "XA END",
        "XA PREPARE",
        "XA COMMIT",
    ]
    assert not [e for e in trace.events if e.op.endswith("_twophase")]


def global_connections(admin) -> int:
    with admin.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
        return int(cursor.fetchone()[1])


def test_connects_equal_the_servers_connections_and_never_show_the_password(admin):
    good = sa.create_engine(URL, poolclass=NullPool)  # every checkout is a new connection
    bad = sa.create_engine(URL.replace("root@", "root:s3cret-pw@"), poolclass=NullPool)
    ioprofiler.label(good, "dbshard01")
    ioprofiler.label(bad, "dbshard01")
    attempts = []
    for _ in range(10):  # other test runs may connect meanwhile: retry for a quiet moment
        before = global_connections(admin)
        with ioprofiler.profile() as trace:
            for _ in range(3):
                with good.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
            with pytest.raises(sa.exc.OperationalError, match="Access denied") as refused:
                bad.connect()
        seen = global_connections(admin) - before
        ours = trace.count(kind="db", op="connect")
        attempts.append((seen, ours))
        if seen == ours:
            break
        time.sleep(0.2)
    assert attempts[-1][0] == attempts[-1][1] == 4, attempts
    connects = [e for e in trace.events if e.op == "connect"]
    assert [e.error for e in connects] == [None, None, None, "OperationalError"]
    assert all(
        e.description().startswith(f"CONNECT root@127.0.0.1:3306/{DATABASE}") for e in connects
    )
    assert "Access denied" in connects[-1].error_message
    assert refused.value.orig.args[0] == 1045  # the driver's own error, unchanged
    everything = trace.text() + render_json(trace) + repr([e.detail for e in trace.events])
    assert "s3cret-pw" not in everything
    good.dispose()
    bad.dispose()


def test_a_pool_held_by_another_thread_shows_one_pool_wait(engine):
    with PoolHolder(engine) as holder, ioprofiler.profile() as trace:
        holder.go()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 2")
    waits = [e for e in trace.events if e.op == "pool_wait"]
    assert len(waits) == 1 and waits[0] is trace.events[0]
    holder.assert_waited_for(waits[0])
    assert waits[0].line().startswith("[dbshard01] ")
    assert waits[0].description() == (
        "POOL WAIT (QueuePool: 1 of 1 in use, overflow 0/0, timeout 10 s)"
    )
    document = json.loads(render_json(trace))
    assert document["events"][0]["detail"]["checked_out"] == 1
    assert document["summary"]["ops"]["pool_wait"]["count"] == 1


def test_a_pool_timeout_is_recorded_and_reaches_the_caller_unchanged(admin):
    engine = sa.create_engine(URL, pool_size=1, max_overflow=0, pool_timeout=0.1)
    with PoolHolder(engine) as holder, ioprofiler.profile() as trace:
        holder.go()
        with pytest.raises(sa.exc.TimeoutError) as timed_out:
            engine.connect()
    engine.dispose()
    assert "QueuePool limit of size 1 overflow 0 reached" in str(timed_out.value)
    (wait,) = trace.events
    assert (wait.op, wait.error) == ("pool_wait", "TimeoutError")
    assert wait.duration_ms >= 100 * 0.9
    assert wait.error_message == str(timed_out.value)


async def test_async_mariadb_commit_rollback_connect_and_pool_wait(admin):
    engine = create_async_engine(ASYNC_URL, pool_size=1, max_overflow=0, pool_timeout=10)
    ioprofiler.label(engine, "dbshard01")

    async def status() -> dict[str, int]:
        async with engine.connect() as conn:
            result = await conn.exec_driver_sql(
                "SHOW SESSION STATUS WHERE Variable_name IN "
                "('Com_commit', 'Com_rollback', 'Questions')"
            )
            return {name: int(value) for name, value in result.all()}

    with ioprofiler.profile() as opening:
        first = await status()
    baseline = delta(first, await status())
    before = await status()
    with ioprofiler.profile() as trace:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO t (v) VALUES (7)")
        async with engine.connect() as conn:
            await conn.exec_driver_sql("INSERT INTO t (v) VALUES (8)")
            await conn.rollback()

        held, go = asyncio.Event(), asyncio.Event()

        async def hold_async() -> None:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
                held.set()
                await go.wait()
                await asyncio.sleep(HOLD_S)  # begins once our checkout below is waiting

        holder = asyncio.create_task(hold_async())
        await held.wait()
        go.set()
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 3")
        await holder
    seen = delta(before, await status())
    await engine.dispose()

    connect = opening.events[0]
    assert connect.op == "connect" and connect.target == "dbshard01"
    assert connect.description() == f"CONNECT root@127.0.0.1:3306/{DATABASE}"
    commits = trace.count(kind="db", op="commit")
    rollbacks = trace.count(kind="db", op="rollback")
    assert {name: seen[name] - baseline[name] for name in COUNTERS} == {
        "Com_commit": commits,
        "Com_rollback": rollbacks,
        "Questions": trace.count(kind="db") + commits + rollbacks,
    }, trace.text()
    waits = [e for e in trace.events if e.op == "pool_wait"]
    assert len(waits) == 1 and waits[0].duration_ms >= HOLD_S * 1000
    assert "AsyncAdaptedQueuePool: 1 of 1 in use" in waits[0].description()
