"""Findings whose advice fits what they name: transactions and connection round trips are
never duplicates, repeats or N+1s; a loop of writes is told to batch them; a slow COMMIT
is told about durability, not indexes. The apps are written as users write them: Django's
``transaction.atomic()``, SQLAlchemy's ORM on unlabelled engines, SQLite and MariaDB."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import ioprofiler
from ioprofiler.analysis import summarize
from ioprofiler.findings import find
from tests.conftest import mysql_or_skip
from tests.test_django import favorite_model, mariadb_shard, shards  # noqa: F401 (fixtures)
from tests.test_findings import TIMING

MARIADB_DATABASE = f"ioprofiler_advice_{os.getpid()}"


class Base(DeclarativeBase):
    pass


class Favorite(Base):
    __tablename__ = "favorite"

    id: Mapped[int] = mapped_column(primary_key=True)
    listing_id: Mapped[int]
    user_id: Mapped[int]


def kinds(trace) -> list[str]:
    return [f.kind for f in find(trace) if f.kind not in TIMING]


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request, tmp_path) -> Iterator[sa.Engine]:
    """An engine as a user creates one, on a SQLite file or on MariaDB, with its table."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
    else:
        admin = mysql_or_skip()
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {MARIADB_DATABASE}")
        url = f"mysql+pymysql://root@127.0.0.1:3306/{MARIADB_DATABASE}"
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()
    if request.param == "mariadb":
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {MARIADB_DATABASE}")
        admin.close()


def test_two_atomic_blocks_are_no_duplicate(shards, mariadb_shard):  # noqa: F811
    from django.db import transaction

    Favorite = favorite_model()
    for alias in (shards[0], mariadb_shard):  # SQLite sends BEGIN as a statement
        with ioprofiler.profile() as trace:
            for user in (7, 8):
                with transaction.atomic(using=alias):
                    Favorite.objects.using(alias).create(listing_id=1, user_id=user)
        if alias == shards[0]:
            assert [e.statement for e in trace.events].count("BEGIN") == 2
        assert kinds(trace) == [], [f.message for f in find(trace)]
        assert [r.shape.split()[0] for r in summarize(trace).repeats] == ["INSERT"]


def test_savepoints_and_transactions_sent_as_sql_are_never_repeats(engine):
    with ioprofiler.profile() as trace:
        for user in range(6):
            with engine.begin() as conn:
                savepoint = conn.begin_nested()
                conn.execute(sa.insert(Favorite.__table__), {"listing_id": 1, "user_id": user})
                savepoint.commit()
    shapes = [r.shape for r in summarize(trace).repeats]
    assert len(shapes) == 1 and shapes[0].startswith("INSERT INTO favorite")
    # Time findings (a slow call, waits) may name a SAVEPOINT a loaded machine made slow;
    # the findings of repetition never do.
    repetition = ("n_plus_one", "duplicate", "serial_fanout")
    repeated = [e for f in find(trace) if f.kind in repetition for e in f.events]
    assert repeated and all("SAVEPOINT" not in e.statement for e in repeated)


def test_a_loop_of_orm_inserts_is_told_to_write_them_at_once(engine):
    with ioprofiler.profile() as trace:
        for user in range(6):
            with Session(engine) as session:
                session.add(Favorite(listing_id=5773453, user_id=user))
                session.commit()
    (finding,) = [f for f in find(trace) if f.kind == "n_plus_one"]
    assert finding.message.startswith("N+1: INSERT INTO favorite (listing_id, user_id) VALUES (")
    assert "executemany" in finding.hint and "bulk_save_objects" in finding.hint
    assert "selectinload" not in finding.hint
    assert kinds(trace) == ["n_plus_one"]


def test_a_loop_of_reads_is_still_told_to_load_them_at_once(engine):
    with ioprofiler.profile() as trace:
        with Session(engine) as session:
            for user in range(6):
                session.scalars(sa.select(Favorite).where(Favorite.user_id == user)).all()
    (finding,) = [f for f in find(trace) if f.kind == "n_plus_one"]
    assert "selectinload" in finding.hint and "executemany" not in finding.hint


def test_a_slow_commit_is_told_about_durability_not_indexes(engine):
    with ioprofiler.profile() as trace:
        with Session(engine) as session:
            session.add(Favorite(listing_id=1, user_id=1))
            session.commit()
    slow = {f.events[0].op: f for f in find(trace, slow_ms=0.0) if f.kind == "slow_call"}
    assert {"execute", "commit"} <= set(slow)
    assert "fsync" in slow["commit"].hint and "EXPLAIN" not in slow["commit"].hint
    assert slow["execute"].hint.startswith("EXPLAIN it")


def test_the_first_connect_of_a_pool_is_no_finding(engine):
    engine.dispose()  # a process starting: the pool holds no connection yet
    ioprofiler.configure(findings={"waits_ms": 0.0})  # however long the connect took
    with ioprofiler.profile() as trace:
        with Session(engine) as session:
            session.scalars(sa.select(Favorite)).all()
    assert [e.op for e in trace.events][0] == "connect"
    assert "waits" not in [f.kind for f in find(trace)]


def test_a_django_persistent_connection_is_no_wait_finding(shards):  # noqa: F811
    from django.db import connections

    from tests.test_django import add_database, remove_database

    ioprofiler.configure(findings={"waits_ms": 0.0})
    add_database("persistent", {**connections.settings[shards[0]], "CONN_MAX_AGE": 60})
    try:
        for alias, found in (("persistent", []), (shards[0], ["waits"])):
            connections[alias].close()
            with ioprofiler.profile() as trace:
                favorite_model().objects.using(alias).count()
            assert [e.op for e in trace.events] == ["connect", "execute"]
            assert [f.kind for f in find(trace) if f.kind == "waits"] == found
        (waits,) = [f for f in find(trace) if f.kind == "waits"]
        assert waits.hint.startswith("connections opened per request") and "CONN_MAX_AGE" in (
            waits.hint
        )
    finally:
        remove_database("persistent")
