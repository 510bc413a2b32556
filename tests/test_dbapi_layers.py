"""No double counting: SQLAlchemy and Django send their statements through PyMySQL and
psycopg, whose integrations are installed too. Each statement the server saw is one event,
recorded by the layer the application called: the ORM's, or the driver's for what goes to
the driver straight. A connection SQLAlchemy made is named by the engine's label either way,
so one shard is one target; a Django connection's driver events keep the database's name,
since Django's count (``query_count``, by alias) leaves them out.

The servers' own counters judge: MariaDB's per-session ``Questions``, PostgreSQL's statement
log (tests/pglog.py)."""

from __future__ import annotations

import asyncio
import os

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import ioprofiler
from ioprofiler.recording import below
from tests.conftest import mysql_or_skip
from tests.pglog import StatementLog, admin_or_skip, log_all

pymysql = pytest.importorskip("pymysql")
psycopg = pytest.importorskip("psycopg")

DATABASE = f"iop_dbapi_layers_{os.getpid()}"
HIDDEN = ("BEGIN", "DEALLOCATE ALL")  # psycopg's own, inside another call's event


@pytest.fixture(autouse=True)
def _drivers_installed():
    assert below == {
        "ioprofiler.integrations.pymysql": "pymysql",
        "ioprofiler.integrations.psycopg": "psycopg",
    }


@pytest.fixture(scope="module")
def mariadb():
    admin = mysql_or_skip()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {DATABASE}")
        cursor.execute(f"CREATE TABLE {DATABASE}.t (id INTEGER PRIMARY KEY AUTO_INCREMENT, v INT)")
    yield DATABASE
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    admin.close()


@pytest.fixture(scope="module")
def postgres():
    admin = admin_or_skip()
    admin.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={DATABASE}") as conn:
        conn.execute("CREATE TABLE t (id SERIAL PRIMARY KEY, v INT)")
    yield StatementLog(admin)
    admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin.close()


def questions(dbapi_connection) -> int:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        return int(cursor.fetchone()[1])


def statements_and_ends(trace) -> int:
    """Statements, commits and rollbacks: what MariaDB counts as Questions."""
    return sum(1 for e in trace.events if e.op != "connect")


# -- SQLAlchemy ---------------------------------------------------------------------------


def test_sqlalchemy_on_pymysql_one_event_per_question(mariadb):
    engine = sa.create_engine(
        f"mysql+pymysql://root@127.0.0.1:3306/{mariadb}", pool_size=1, max_overflow=0
    )
    ioprofiler.label(engine, "dbshard01")
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection  # the pooled PyMySQL connection
            before = questions(raw)
            with ioprofiler.profile() as trace:
                conn.exec_driver_sql("INSERT INTO t (v) VALUES (%s)", (1,))
                conn.exec_driver_sql("INSERT INTO t (v) VALUES (%s)", [(2,), (3,)])
                conn.execute(sa.text("SELECT count(*) FROM t WHERE v > :v"), {"v": 0}).all()
                conn.commit()
                with raw.cursor() as cursor:  # straight to the driver: the driver's event,
                    cursor.execute("SELECT %s", (7,))  # on the engine's connection: its name
                raw.commit()
            seen = questions(raw) - before - 1
    finally:
        engine.dispose()
    assert seen == statements_and_ends(trace) == 6, trace.text()
    assert [(e.target, e.line().split(" ms ", 1)[1]) for e in trace.events] == [
        ("dbshard01", "INSERT INTO t (v) VALUES (1)"),
        ("dbshard01", "INSERT INTO t (v) VALUES (2) -- executemany: 2 rows"),
        ("dbshard01", "SELECT count(*) FROM t WHERE v > 0"),
        ("dbshard01", "COMMIT"),
        ("dbshard01", "SELECT 7"),
        ("dbshard01", "COMMIT"),
    ]


def test_sqlalchemy_on_psycopg_sync_and_async_one_event_per_statement(postgres):
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"
    engine = sa.create_engine(url, pool_size=1, max_overflow=0)
    ioprofiler.label(engine, "dbshard09")
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            log_all(raw)
            since = postgres.end()
            with ioprofiler.profile() as trace:
                conn.exec_driver_sql("INSERT INTO t (v) VALUES (%(v)s)", {"v": 1})
                conn.execute(sa.text("SELECT count(*) FROM t WHERE v > :v"), {"v": 0}).all()
                conn.commit()
                raw.execute("SELECT %s::int", (7,))  # straight to the driver
                raw.commit()
                conn.rollback()
            ran = postgres.statements(raw.info.backend_pid, since, expected=8)
    finally:
        engine.dispose()
    assert [(e.target, e.line().split(" ms ", 1)[1]) for e in trace.events] == [
        ("dbshard09", "INSERT INTO t (v) VALUES (1)"),
        ("dbshard09", "SELECT count(*) FROM t WHERE v > 0"),
        ("dbshard09", "COMMIT"),
        ("dbshard09", "SELECT 7::int"),
        ("dbshard09", "COMMIT"),
    ]
    # the last rollback found no transaction open: psycopg sent nothing, SQLAlchemy listed it
    assert ran == [
        "BEGIN",
        "INSERT INTO t (v) VALUES ($1)",
        "SELECT count(*) FROM t WHERE v > $1",
        "COMMIT",
        "BEGIN",
        "SELECT $1::int",
        "COMMIT",
    ]

    async def run_async() -> tuple[object, list[str]]:
        engine = create_async_engine(url.replace("psycopg", "psycopg_async"), pool_size=1)
        ioprofiler.label(engine, "dbshard10")
        try:
            async with engine.connect() as conn:
                raw = (await conn.get_raw_connection()).driver_connection
                await raw.execute("SET log_statement = 'all'")
                await raw.commit()
                since = postgres.end()
                with ioprofiler.profile() as trace:
                    await conn.exec_driver_sql("SELECT %(v)s::int", {"v": 5})
                    await conn.commit()
                    await raw.execute("SELECT %s::int", (6,))
                    await raw.rollback()
                ran = postgres.statements(raw.info.backend_pid, since, expected=6)
        finally:
            await engine.dispose()
        return trace, ran

    trace, ran = asyncio.run(run_async())
    assert [(e.target, e.line().split(" ms ", 1)[1]) for e in trace.events] == [
        ("dbshard10", "SELECT 5::int"),
        ("dbshard10", "COMMIT"),
        ("dbshard10", "SELECT 6::int"),
        ("dbshard10", "ROLLBACK"),
    ]
    assert [s for s in ran if s not in HIDDEN] == [
        "SELECT $1::int",
        "COMMIT",
        "SELECT $1::int",
        "ROLLBACK",
    ]


@pytest.mark.parametrize("driver", ["psycopg", "pymysql"])
def test_sqlalchemy_connects_once(postgres, mariadb, driver):
    if driver == "psycopg":
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"
        raw_on_connect = []
    else:
        url = f"mysql+pymysql://root@127.0.0.1:3306/{mariadb}"
        # SQLAlchemy's MySQL dialect sets the character set on every new connection on the
        # DB-API cursor itself, outside its statements: the driver's event, on the shard,
        # marked as the connection's set-up
        raw_on_connect = [("dbshard11", "SET NAMES utf8mb4 (connection set-up)")]
    engine = sa.create_engine(url)
    ioprofiler.label(engine, "dbshard11")
    try:
        with engine.connect() as conn:  # the first connect initialises the dialect
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        with ioprofiler.profile() as trace:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()
    lines = [(e.target, e.line().split(" ms ", 1)[1]) for e in trace.events]
    assert lines[0][0] == "dbshard11" and lines[0][1].startswith("CONNECT ")
    assert lines[1:-1] == [*raw_on_connect, ("dbshard11", "SELECT 1")]
    assert lines[-1][0] == "dbshard11" and lines[-1][1].startswith("ROLLBACK")


# -- Django -------------------------------------------------------------------------------


django = pytest.importorskip("django")


@pytest.fixture
def django_alias(request, mariadb, postgres):
    from tests.test_django import add_database, create_table, remove_database

    engine = request.param
    alias = f"dbshard_{engine}"
    if engine == "mysql":
        pymysql.install_as_MySQLdb()
        settings = {"ENGINE": "django.db.backends.mysql", "NAME": mariadb}
        settings.update(USER="root", HOST="127.0.0.1", PORT=3306)
    else:
        settings = {"ENGINE": "django.db.backends.postgresql", "NAME": DATABASE}
        settings.update(USER="postgres", HOST="127.0.0.1", PORT=5432)
    add_database(alias, settings)
    try:
        create_table(alias)
        yield alias
    finally:
        from django.db import connections

        with connections[alias].cursor() as cursor:
            cursor.execute("DROP TABLE favorite")
        remove_database(alias)


def _server_statements(alias: str, postgres_log: StatementLog, work) -> tuple[object, list]:
    """Run ``work`` in a trace; what the server ran on that connection meanwhile."""
    from django.db import connections

    connection = connections[alias]
    connection.ensure_connection()
    raw = connection.connection
    if connection.vendor == "mysql":
        before = questions(raw)
        with ioprofiler.profile() as trace:
            work()
        return trace, questions(raw) - before - 1
    log_all(raw)
    since = postgres_log.end()
    with ioprofiler.profile() as trace:
        work()
    return trace, postgres_log.statements(raw.info.backend_pid, since)


@pytest.mark.parametrize("django_alias", ["mysql", "postgresql"], indirect=True)
def test_django_one_event_per_statement(django_alias, postgres):
    from django.db import connections, transaction
    from django.test.utils import CaptureQueriesContext

    from tests.test_django import favorite_model

    Favorite = favorite_model()
    connection = connections[django_alias]

    def work() -> None:
        with CaptureQueriesContext(connection) as captured:
            for user in range(3):
                Favorite.objects.using(django_alias).filter(user_id=user).count()
            with transaction.atomic(using=django_alias):
                Favorite.objects.using(django_alias).create(listing_id=9, user_id=9)
            with connection.cursor() as cursor:
                cursor.executemany(
                    "UPDATE favorite SET user_id = %s WHERE id = %s", [(7, 1), (8, 2)]
                )
        work.captured = [query["sql"] for query in captured.captured_queries]
        with connection.connection.cursor() as cursor:  # straight to the driver
            cursor.execute("SELECT %s", (5,))
        connection.connection.rollback()

    trace, server = _server_statements(django_alias, postgres, work)
    # what goes straight to the driver is on the alias too: its connection is the alias's
    assert {e.target for e in trace.events} == {django_alias}, trace.text()
    whats = [e.line().split(" ms ", 1)[1] for e in trace.events]
    if connection.vendor == "mysql":
        # Django lists its BEGIN (autocommit off); turning autocommit back on it does not:
        # PyMySQL sends it, the driver's event, connection set-up
        drivers = ["SET AUTOCOMMIT = 1 (connection set-up)", "SELECT 5", "ROLLBACK"]
    else:  # psycopg switches autocommit without a round trip, and rolls back nothing
        drivers = ["SELECT 5"]
    assert [w for w in whats if w in drivers] == drivers, trace.text()
    ours = [e for e, what in zip(trace.events, whats, strict=True) if what not in drivers]
    # Django's own count: its statements, BEGIN and COMMIT, one event each
    assert len(ours) == len(work.captured) and "BEGIN" in work.captured
    if connection.vendor == "mysql":
        # Django lists its executemany as one event; PyMySQL sent the UPDATE once per row
        assert server == statements_and_ends(trace) + 1, trace.text()
    else:
        # Django's BEGIN event stands for the BEGIN psycopg sends before the transaction's
        # first statement; Django lists its executemany as one event, psycopg ran both rows
        executed = [s for s in server if s != "DEALLOCATE ALL"]
        assert executed.count("BEGIN") == trace.count(kind="db", op="begin") == 1
        assert len(executed) == statements_and_ends(trace) + 1, (executed, trace.text())


def test_the_mark_is_set_only_for_cursors_a_driver_integration_records(tmp_path, mariadb):
    """The ORM's mark (recording.inside) costs every statement: a cursor of a driver no
    integration records (sqlite3, and classes derived from its cursor, like Django's) goes
    without it; PyMySQL's and psycopg's cursors, and adapters or proxies that hide what they
    wrap, get it."""
    import sqlite3

    import wrapt

    from ioprofiler.recording import add_below, cursor_reaches_below, inside, remove_below

    class DjangoLikeCursor(sqlite3.Cursor):
        pass

    class Adapter:  # an asyncio adapter's cursor: says nothing of the driver below
        pass

    plain = sqlite3.connect(":memory:")
    admin = mysql_or_skip()
    pymysql_cursor = admin.cursor().__class__
    try:
        assert cursor_reaches_below[plain.cursor().__class__] is False
        assert cursor_reaches_below[DjangoLikeCursor(plain).__class__] is False
        proxy = wrapt.ObjectProxy(plain.cursor())  # passes __class__ on
        assert cursor_reaches_below[proxy.__class__] is False
        assert cursor_reaches_below[pymysql_cursor] is True
        assert cursor_reaches_below[Adapter] is True
        odd = type("OddCursor", (sqlite3.Cursor,), {"__module__": 42})  # not a module name
        assert cursor_reaches_below[odd] is True  # cannot tell: marked, and no error raised
        remove_below("ioprofiler.integrations.pymysql")  # the answers follow what is installed
        assert cursor_reaches_below[pymysql_cursor] is False
    finally:
        add_below("ioprofiler.integrations.pymysql", "pymysql")
        plain.close()
        admin.close()
    assert cursor_reaches_below[pymysql_cursor] is True

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard01.db'}")

    @sa.event.listens_for(engine, "connect")
    def _mark_reader(dbapi_connection, record):
        dbapi_connection.create_function("inside_mark", 0, lambda: int(inside.get()))

    url = f"mysql+pymysql://root@127.0.0.1:3306/{mariadb}"
    mysql_engine = sa.create_engine(url)
    try:
        with ioprofiler.profile() as trace:
            with engine.connect() as conn:  # runs inside the statement: sees the mark
                assert conn.exec_driver_sql("SELECT inside_mark()").scalar() == 0
            with mysql_engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()
        mysql_engine.dispose()
    statements = [e.sql for e in trace.events if e.is_statement]
    assert statements.count("SELECT inside_mark()") == 1 and statements.count("SELECT 1") == 1
