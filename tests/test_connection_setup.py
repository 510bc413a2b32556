"""What a library sends on its own to set up or check a connection is the connection's
round trip, not the application's statement.

SQLAlchemy's dialects set each new connection up (``SET NAMES``; the first connect's
version queries), ``pool_pre_ping`` checks a connection at every checkout, Django on
MariaDB turns autocommit back on after a transaction. They are listed, timed and counted
in I/O time (the servers count them too), but statement counts, budgets and snapshots
leave them out unless asked by op, so a budget never depends on the state of the pool.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import ioprofiler
from ioprofiler.snapshot import snapshot_lines
from ioprofiler.testing import assert_io
from ioprofiler.thresholds import Thresholds
from tests.conftest import mysql_or_skip
from tests.pglog import admin_or_skip

DATABASE = f"iop_setup_{os.getpid()}"
MYSQL_URL = f"mysql+pymysql://root@127.0.0.1:3306/{DATABASE}"
PG_DATABASE = f"{DATABASE}_pg"
POSTGRES_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"
BUDGET = {DATABASE: 2, PG_DATABASE: 2}
# A clean workload has no finding at all. The thresholds that a busy machine could cross
# (a slow call, unexplained time) are set out of reach so that no load makes one, while
# waits_ms=0 makes any connect that counts as a wait a finding: a pool's first connect
# must not be one, however long it took.
CLEAN = {"waits_ms": 0, "slow_ms": 1e9, "dominant_ms": 1e9, "unexplained_request_ms": 1e9}


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str]


@pytest.fixture(scope="module")
def databases():
    mysql_admin = mysql_or_skip()
    postgres_admin = admin_or_skip()
    with mysql_admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {DATABASE}")
        cursor.execute(f"CREATE TABLE {DATABASE}.orders (id INT PRIMARY KEY AUTO_INCREMENT,"
                       " item VARCHAR(40) NOT NULL)")  # fmt: skip
    postgres_admin.execute(f"CREATE DATABASE {PG_DATABASE}")
    yield
    with mysql_admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    postgres_admin.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    mysql_admin.close()
    postgres_admin.close()


def engines_made_at_import() -> tuple[sa.Engine, sa.Engine]:
    """Unlabelled engines with ``pool_pre_ping``, made before ``install()`` as apps do."""
    ioprofiler.uninstall()
    try:
        return (
            sa.create_engine(MYSQL_URL, pool_pre_ping=True),
            sa.create_engine(POSTGRES_URL, pool_pre_ping=True),
        )
    finally:
        ioprofiler.install()


def request(mysql: sa.Engine, postgres: sa.Engine, number: int) -> None:
    """A clean request: distinct queries, a transaction, an ORM flush, on both servers."""
    with mysql.connect() as conn:
        conn.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one()
    with Session(mysql) as session, session.begin():
        session.add_all([Order(item=f"book {number}"), Order(item=f"pen {number}")])
    with postgres.connect() as conn:
        conn.execute(sa.text("SELECT 6 * 7")).scalar_one()
    with postgres.begin() as conn:
        conn.execute(sa.text("SELECT 40 + :n"), {"n": number}).scalar_one()


def test_budgets_do_not_change_with_the_state_of_the_pool(databases):
    mysql, postgres = engines_made_at_import()
    try:
        # the first request opens both connections; every later checkout pings
        ioprofiler.configure(findings=CLEAN)
        with assert_io(db=BUDGET, strict=True, findings=[]) as fresh:
            request(mysql, postgres, 1)
        with assert_io(db=BUDGET, strict=True, findings=[]) as warm:
            request(mysql, postgres, 2)
    finally:
        ioprofiler.configure(findings=Thresholds())
        mysql.dispose()
        postgres.dispose()

    assert fresh.count(kind="db", op="connect") == 2 and warm.count(kind="db", op="connect") == 0
    assert fresh.count(kind="db", op="setup") > 2  # SET NAMES, SELECT VERSION(), ...
    assert warm.count(kind="db", op="setup") == 0
    assert (fresh.count(kind="db", op="ping"), warm.count(kind="db", op="ping")) == (2, 4)
    assert snapshot_lines(fresh) == snapshot_lines(warm)
    described = [event.description() for event in fresh.events]
    assert "SET NAMES utf8mb4 (connection set-up)" in described, fresh.text()
    assert "PING (pool pre-ping)" in [event.description() for event in warm.events]


def questions(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        return int(cursor.fetchone()[1])


def test_mariadb_counts_every_recorded_set_up_statement_and_ping(databases):
    engine = sa.create_engine(MYSQL_URL, pool_pre_ping=True, pool_size=1, max_overflow=0)
    try:
        with ioprofiler.profile() as trace:
            with engine.connect() as conn:  # a new connection: set up, not pinged
                conn.execute(sa.text("SELECT 1")).scalar_one()
            with engine.connect() as conn:  # the same connection, pinged
                conn.execute(sa.text("SELECT 2")).scalar_one()
        raw = engine.raw_connection()  # the same session, pinged outside the trace
        try:
            # less that ping and the SHOW STATUS that reads the counter
            seen = questions(raw.driver_connection) - 2
        finally:
            raw.close()
    finally:
        engine.dispose()

    round_trips = [event for event in trace.events if event.op != "connect"]
    assert seen == len(round_trips), trace.text()
    assert trace.count(kind="db") == 2
    assert trace.count(kind="db", op="ping") == 1
    assert trace.count(kind="db", op="setup") >= 1


def test_a_full_trace_still_counts_set_up_apart(databases):
    counts = []
    for max_events in (10_000, 1):  # the second keeps only the CONNECT, counts the rest
        engine = sa.create_engine(MYSQL_URL)
        try:
            with ioprofiler.profile(max_events=max_events) as trace:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1")).scalar_one()
        finally:
            engine.dispose()
        counts.append((trace.count(kind="db"), trace.count(kind="db", op="setup")))
    assert counts[0] == counts[1] and counts[0][0] == 1 and counts[0][1] > 2, counts
