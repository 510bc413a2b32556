"""SQLAlchemy shards on real SQLite files: Core, ORM, executemany, errors, asyncio, sharding."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import ioprofiler
from tests.conftest import engine_for_dialect


def statements(trace) -> list:
    """The statements, without the connects and transaction ends around them."""
    return [event for event in trace.events if event.is_statement]


COUNT = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :listing_id"
LINE = re.compile(r"^\[(?P<target>[^\]]+)\] (?P<ms>\d+\.\d{3}) ms (?P<what>.*)$")


class Base(DeclarativeBase):
    pass


class FavoriteListingUser(Base):
    __tablename__ = "FavoriteListingUser"
    id: Mapped[int] = mapped_column(primary_key=True)
    listing_id: Mapped[int]
    user_id: Mapped[int]


def count_favorites(engine, listing_id=5773453) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(COUNT), {"listing_id": listing_id}).scalar_one()


def test_each_shard_is_named_after_its_file(sqlite_shards):
    with ioprofiler.profile() as trace:
        counts = {name: count_favorites(engine) for name, engine in sqlite_shards.items()}
    assert counts == {"dbshard01": 1, "dbshard02": 2, "dbshard03": 3, "dbshard04": 4}
    assert [e.target for e in statements(trace)] == list(sqlite_shards)
    for name in sqlite_shards:
        assert trace.count(kind="db", target=name) == 1
    line = statements(trace)[0].line()
    match = LINE.match(line)
    assert match, line
    assert match["target"] == "dbshard01"
    assert match["what"] == "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773453"


def test_results_are_the_same_with_and_without_a_trace(sqlite_shards):
    engine = sqlite_shards["dbshard03"]
    query = sa.select(FavoriteListingUser).order_by(FavoriteListingUser.id)
    with Session(engine) as session:
        plain = [(f.id, f.user_id) for f in session.scalars(query)]
    with ioprofiler.profile(), Session(engine) as session:
        traced = [(f.id, f.user_id) for f in session.scalars(query)]
    assert plain == traced == [(1, 30), (2, 31), (3, 32)]


def test_label_names_a_shard(sqlite_shards, tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop_index.db'}")
    ioprofiler.label(engine, "index")
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    assert statements(trace)[0].target == "index"
    assert statements(trace)[0].line().startswith("[index] ")


def test_label_refuses_what_is_not_an_engine():
    with pytest.raises(TypeError, match="takes a SQLAlchemy Engine"):
        ioprofiler.label(object(), "x")
    with pytest.raises(ValueError, match="non-empty string"):
        ioprofiler.label(sa.create_engine("sqlite://"), "")


def test_orm_queries_and_flushes_are_recorded(sqlite_shards):
    engine = sqlite_shards["dbshard02"]
    with ioprofiler.profile() as trace:
        with Session(engine) as session:
            session.add(FavoriteListingUser(listing_id=1, user_id=2))
            session.commit()
            found = session.scalars(
                sa.select(FavoriteListingUser).where(FavoriteListingUser.listing_id == 1)
            ).all()
    assert len(found) == 1
    sqls = [e.sql for e in statements(trace)]
    assert any(s.startswith('INSERT INTO "FavoriteListingUser"') and "(1, 2)" in s for s in sqls)
    assert any(s.endswith('WHERE "FavoriteListingUser".listing_id = 1') for s in sqls), sqls
    assert {e.target for e in statements(trace)} == {"dbshard02"}


def test_executemany_records_one_call_with_its_row_count(sqlite_shards):
    engine = sqlite_shards["dbshard01"]
    rows = [(9, n) for n in range(250)]
    with ioprofiler.profile() as trace:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO FavoriteListingUser (listing_id, user_id) VALUES (?, ?)", rows
            )
    (event,) = statements(trace)
    assert event.op == "executemany"
    assert event.rows == 250
    assert event.sql == (
        "INSERT INTO FavoriteListingUser (listing_id, user_id) VALUES (9, 0) "
        "-- executemany: 250 rows"
    )
    assert count_favorites(engine, 9) == 250


def test_a_failing_statement_is_recorded_and_raises_unchanged(sqlite_shards):
    engine = sqlite_shards["dbshard04"]
    ioprofiler.uninstall()
    with pytest.raises(sa.exc.OperationalError) as plain:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT * FROM no_such_table")
    ioprofiler.install()
    with ioprofiler.profile() as trace:
        with pytest.raises(sa.exc.OperationalError) as traced:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT * FROM no_such_table")
    assert str(traced.value) == str(plain.value)
    assert type(traced.value.orig) is type(plain.value.orig)
    (event,) = statements(trace)
    assert event.error == "OperationalError"
    assert "no such table" in event.error_message
    assert event.line().endswith("SELECT * FROM no_such_table [ERROR OperationalError]")
    assert "1 error" in trace.text()


def test_engines_created_before_install_are_covered(tmp_path):
    ioprofiler.uninstall()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard09.db'}")
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    ioprofiler.install()
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 2")
    assert [e.line().split(" ms ")[1] for e in statements(trace)] == ["SELECT 2"]
    assert statements(trace)[0].target == "dbshard09"


def test_in_memory_and_unnamed_databases_get_a_readable_name():
    from ioprofiler.integrations.sqlalchemy import name_for_url

    assert name_for_url(sa.make_url("sqlite://")) == "sqlite:memory"
    assert name_for_url(sa.make_url("sqlite:////data/dbshard07.db")) == "dbshard07"
    assert name_for_url(sa.make_url("mysql+pymysql://root@db5/dbshard05")) == "dbshard05"
    assert name_for_url(sa.make_url("postgresql://db6")) == "db6"


def test_redaction_hides_values(sqlite_shards):
    ioprofiler.configure(redact=True)
    with ioprofiler.profile() as trace:
        count_favorites(sqlite_shards["dbshard01"])
    assert (
        statements(trace)[0]
        .line()
        .endswith("SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?")
    )
    assert "5773453" not in trace.text()


def test_n_plus_one_across_one_shard_is_flagged(sqlite_shards):
    engine = sqlite_shards["dbshard02"]
    with ioprofiler.profile() as trace:
        for listing_id in (1, 2, 3, 4):
            count_favorites(engine, listing_id)
        count_favorites(engine, 1)
    text = trace.text()
    assert (
        "repeated 5x on dbshard02, likely N+1, 1 identical: "
        "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ?"
    ) in text


async def test_async_engine_records_with_label_and_callsite(tmp_path):
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'shard_async.db'}")
    ioprofiler.label(engine, "dbshard05")

    async def load(conn, value):
        return (await conn.execute(sa.text("SELECT :v"), {"v": value})).scalar_one()

    with ioprofiler.profile() as trace:
        async with engine.connect() as conn:
            values = [await load(conn, 1), await load(conn, 2)]
    await engine.dispose()
    assert values == [1, 2]
    assert [e.line().split(" ms ")[1] for e in statements(trace)] == ["SELECT 1", "SELECT 2"]
    assert {e.target for e in statements(trace)} == {"dbshard05"}
    assert statements(trace)[0].callsite.endswith(" in load"), statements(trace)[0].callsite


def test_horizontal_sharding_shows_the_shard_of_each_query(sqlite_shards):
    from sqlalchemy.ext.horizontal_shard import ShardedSession

    def shard_for(listing_id: int) -> str:
        return f"dbshard0{listing_id % 4 + 1}"

    def shard_chooser(mapper, instance, clause=None):
        return shard_for(instance.listing_id)

    def identity_chooser(mapper, primary_key, *, lazy_loaded_from, execution_options, **kw):
        return list(sqlite_shards)

    def execute_chooser(context):
        for column, _op, value in _where_values(context.statement):
            if column == "listing_id":
                return [shard_for(value)]
        return list(sqlite_shards)

    session = ShardedSession(
        shards=sqlite_shards,
        shard_chooser=shard_chooser,
        identity_chooser=identity_chooser,
        execute_chooser=execute_chooser,
    )
    with ioprofiler.profile() as trace:
        for listing_id in (100, 101, 102, 103):
            session.add(FavoriteListingUser(listing_id=listing_id, user_id=1))
        session.commit()
        found = session.scalars(
            sa.select(FavoriteListingUser).where(FavoriteListingUser.listing_id == 102)
        ).all()
    session.close()
    assert [f.listing_id for f in found] == [102]
    inserts = [e for e in statements(trace) if e.statement.startswith("INSERT")]
    assert [(e.target, e.params[0]) for e in inserts] == [
        ("dbshard01", 100),
        ("dbshard02", 101),
        ("dbshard03", 102),
        ("dbshard04", 103),
    ]
    selects = [e for e in statements(trace) if e.statement.startswith("SELECT")]
    assert [e.target for e in selects] == ["dbshard03"]


def _where_values(statement):
    from sqlalchemy.sql import operators, visitors

    for node in visitors.iterate(statement.whereclause):
        if isinstance(node, sa.sql.elements.BinaryExpression) and node.operator is operators.eq:
            column, value = node.left, node.right
            if isinstance(column, sa.Column) and hasattr(value, "value"):
                yield column.key, node.operator, value.value


def test_a_dialect_override_that_calls_super_records_one_statement(tmp_path):
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    class PoliteDialect(SQLiteDialect_pysqlite):
        def do_execute(self, cursor, statement, parameters, context=None):
            return super().do_execute(cursor, statement, parameters, context)

        def do_executemany(self, cursor, statement, parameters, context=None):
            return super().do_executemany(cursor, statement, parameters, context)

    engine = engine_for_dialect(PoliteDialect, tmp_path / "polite.db")
    with ioprofiler.profile() as trace:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", [(1,), (2,)])
            conn.exec_driver_sql("SELECT a FROM t WHERE a = ?", (1,)).all()
    assert [e.sql for e in statements(trace)] == [
        "CREATE TABLE t (a INTEGER)",
        "INSERT INTO t VALUES (1) -- executemany: 2 rows",
        "SELECT a FROM t WHERE a = 1",
    ]


def test_callsites_stay_right_across_different_paths_into_sqlalchemy(sqlite_shards):
    engine = sqlite_shards["dbshard01"]

    def through_core():
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).all()

    def through_orm():
        with Session(engine) as session:
            session.scalars(sa.select(FavoriteListingUser).limit(1)).all()

    def through_a_helper():
        through_core()

    with ioprofiler.profile() as trace:
        for _ in range(3):  # the second round onwards takes the remembered path
            through_core()
            through_orm()
            through_a_helper()
    sites = [e.callsite.rsplit(" in ", 1)[1] for e in statements(trace)]
    assert sites == ["through_core", "through_orm", "through_core"] * 3
