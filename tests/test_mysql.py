"""The shard tests over PyMySQL against MariaDB at 127.0.0.1:3306 (format paramstyle).

Skipped with the reason when no server answers; a failure when IOPROFILER_REQUIRE_MYSQL=1.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import ioprofiler
from tests.conftest import mysql_or_skip
from tests.test_sqlalchemy import COUNT, FavoriteListingUser, statements

SHARDS = ("dbshard01", "dbshard02")


@pytest.fixture(scope="module")
def mysql_shards():
    connection = mysql_or_skip()
    with connection.cursor() as cursor:
        for number, name in enumerate(SHARDS, start=1):
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {name}")
            cursor.execute(f"DROP TABLE IF EXISTS {name}.FavoriteListingUser")
            cursor.execute(
                f"CREATE TABLE {name}.FavoriteListingUser (id INTEGER AUTO_INCREMENT PRIMARY KEY,"
                " listing_id INTEGER NOT NULL, user_id INTEGER NOT NULL, note VARCHAR(200))"
            )
            for i in range(number):
                cursor.execute(
                    f"INSERT INTO {name}.FavoriteListingUser (listing_id, user_id) VALUES (%s, %s)",
                    (5773453, i),
                )
    connection.commit()
    connection.close()
    engines = {
        name: sa.create_engine(f"mysql+pymysql://root@127.0.0.1:3306/{name}") for name in SHARDS
    }
    yield engines
    for engine in engines.values():
        engine.dispose()


def test_each_mysql_shard_is_named_after_its_database(mysql_shards):
    with ioprofiler.profile() as trace:
        counts = {}
        for name, engine in mysql_shards.items():
            with engine.connect() as conn:
                counts[name] = conn.execute(sa.text(COUNT), {"listing_id": 5773453}).scalar_one()
    assert counts == {"dbshard01": 1, "dbshard02": 2}
    queries = [e for e in statements(trace) if e.statement.startswith("SELECT count")]
    assert [e.line().split(" ms ", 1)[1] for e in queries] == [
        "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773453"
    ] * 2
    assert [e.target for e in queries] == ["dbshard01", "dbshard02"]
    assert all(e.paramstyle == "pyformat" or e.paramstyle == "format" for e in queries)


def test_mysql_orm_writes_executemany_and_hostile_values(mysql_shards):
    engine = mysql_shards["dbshard02"]
    hostile = "</body><script>alert('x')</script> \\ %s"
    with ioprofiler.profile() as trace:
        with Session(engine) as session:
            session.add(FavoriteListingUser(listing_id=77, user_id=1))
            session.commit()
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO FavoriteListingUser (listing_id, user_id, note) VALUES (%s, %s, %s)",
                [(78, n, hostile) for n in range(3)],
            )
            stored = conn.exec_driver_sql(
                "SELECT note FROM FavoriteListingUser WHERE listing_id = %s LIMIT 1", (78,)
            ).scalar_one()
    assert stored == hostile
    sqls = [e.sql for e in statements(trace)]
    assert any("VALUES (77, 1)" in s for s in sqls), sqls
    many = next(e for e in statements(trace) if e.rows)
    assert many.rows == 3 and many.target == "dbshard02"
    assert many.sql.endswith("-- executemany: 3 rows")
    assert "'</body><script>alert(''x'')</script> \\\\ %s'" in many.sql


def test_a_failing_mysql_statement_is_recorded_and_raises(mysql_shards):
    engine = mysql_shards["dbshard01"]
    with ioprofiler.profile() as trace:
        with pytest.raises(sa.exc.ProgrammingError, match="doesn't exist"):
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT * FROM no_such_table")
    failing = [e for e in statements(trace) if e.error]
    assert [e.error for e in failing] == ["ProgrammingError"]
    assert failing[0].target == "dbshard01"
