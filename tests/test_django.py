"""Django's database layer: two shard aliases on SQLite files, and one on MariaDB.

Django's own count (``assertNumQueries``, ``CaptureQueriesContext``) and MariaDB's
per-session counters are the references, not ioprofiler's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import pytest

import ioprofiler
from ioprofiler.django import query_count
from ioprofiler.event import CONNECTION_OPS
from ioprofiler.patching import is_ours
from tests.conftest import configure_django, mysql_or_skip

django = pytest.importorskip("django")
configure_django()

from django.db import connections, models, transaction  # noqa: E402
from django.db.utils import DatabaseError, OperationalError  # noqa: E402
from django.test import TransactionTestCase  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402


@functools.lru_cache(maxsize=1)
def favorite_model() -> type:
    class Favorite(models.Model):
        listing_id = models.IntegerField()
        user_id = models.IntegerField(default=0)

        class Meta:
            app_label = "ioprofiler_tests"
            db_table = "favorite"

    return Favorite


def add_database(alias: str, settings: dict) -> None:
    connections.settings[alias] = connections.configure_settings({"default": {}, alias: settings})[
        alias
    ]


def remove_database(alias: str) -> None:
    connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


def create_table(alias: str) -> None:
    Favorite = favorite_model()
    with connections[alias].schema_editor() as editor:
        editor.create_model(Favorite)
    Favorite.objects.using(alias).bulk_create(
        [Favorite(listing_id=5773453, user_id=n) for n in range(3)]
    )


@pytest.fixture
def shards(tmp_path) -> Iterator[tuple[str, str]]:
    names = ("dbshard01", "dbshard02")
    for name in names:
        add_database(name, {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / name)})
        create_table(name)
    yield names
    for name in names:
        remove_database(name)


def whats(trace) -> list[str]:
    return [e.line().split(" ms ", 1)[1] for e in trace.events]


def test_orm_queries_are_listed_per_alias_with_their_values(shards):
    Favorite = favorite_model()
    with ioprofiler.profile() as trace:
        assert Favorite.objects.using("dbshard01").filter(listing_id=5773453).count() == 3
        assert list(
            Favorite.objects.using("dbshard02")
            .filter(user_id__in=[1, 2])
            .values_list("user_id", flat=True)
        ) == [1, 2]
    assert [e.target for e in trace.events] == ["dbshard01", "dbshard02"]
    assert whats(trace) == [
        'SELECT COUNT(*) AS "__count" FROM "favorite" WHERE "favorite"."listing_id" = 5773453',
        'SELECT "favorite"."user_id" AS "user_id" FROM "favorite" '
        'WHERE "favorite"."user_id" IN (1, 2)',
    ]
    assert trace.count(kind="db", target="dbshard01") == 1


def test_django_and_ioprofiler_count_the_same_queries(shards):
    Favorite = favorite_model()

    def page() -> None:
        for user in range(5):  # an N+1 (n_plus_one_count: 5), as Django's ORM makes them
            Favorite.objects.using("dbshard01").filter(user_id=user).exists()
        with connections["dbshard01"].cursor() as cursor:
            cursor.executemany("UPDATE favorite SET user_id = %s WHERE id = %s", [(7, 1), (8, 2)])
        list(Favorite.objects.using("dbshard02").all())

    case = TransactionTestCase()
    with ioprofiler.profile() as trace:
        with CaptureQueriesContext(connections["dbshard01"]) as first:
            with case.assertNumQueries(1, using="dbshard02"):
                page()
    assert trace.count(kind="db", target="dbshard01") == len(first.captured_queries) == 6
    assert trace.count(kind="db", target="dbshard02") == 1
    assert whats(trace)[5] == "UPDATE favorite SET user_id = 7 WHERE id = 1 -- executemany: 2 rows"
    assert "repeated 5x on dbshard01, likely N+1" in trace.text()


def test_transactions_savepoints_and_connects(shards):
    Favorite = favorite_model()
    connections["dbshard01"].close()
    with ioprofiler.profile() as trace:
        with transaction.atomic(using="dbshard01"):
            Favorite.objects.using("dbshard01").create(listing_id=1)
            with transaction.atomic(using="dbshard01"):
                Favorite.objects.using("dbshard01").create(listing_id=2)
        with pytest.raises(ZeroDivisionError):
            with transaction.atomic(using="dbshard01"):
                Favorite.objects.using("dbshard01").create(listing_id=3)
                1 / 0  # noqa: B018
    ops = [e.op for e in trace.events]
    assert ops[0] == "connect" and ops.count("commit") == 1 and ops.count("rollback") == 1
    assert whats(trace)[0] == f"CONNECT {connections['dbshard01'].settings_dict['NAME']}"
    statements = [e.statement.split(" ")[0] for e in trace.events if e.is_statement]
    assert statements == ["BEGIN", "INSERT", "SAVEPOINT", "INSERT", "RELEASE", "BEGIN", "INSERT"]
    assert Favorite.objects.using("dbshard01").filter(listing_id=3).count() == 0
    assert trace.count(kind="db", op="commit") == 1
    assert all(e.callsite.startswith("tests/test_django.py:") for e in trace.events)


def transactions_page(alias: str) -> None:
    """Queries, a transaction with a savepoint kept and one rolled back after a failing
    query, a transaction rolled back, an executemany."""
    objects = favorite_model().objects.using(alias)
    objects.filter(listing_id=5773453).count()
    with transaction.atomic(using=alias):
        objects.create(listing_id=1)
        with transaction.atomic(using=alias):
            objects.create(listing_id=2)
        with pytest.raises(DatabaseError):
            with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                cursor.execute("SELECT * FROM missing WHERE id = %s", [5])
    with pytest.raises(ZeroDivisionError):
        with transaction.atomic(using=alias):
            objects.create(listing_id=3)
            1 / 0  # noqa: B018
    with connections[alias].cursor() as cursor:
        cursor.executemany("UPDATE favorite SET user_id = %s WHERE id = %s", [(7, 1), (8, 2)])


def django_logged(trace, alias: str) -> list:
    return [e for e in trace.events if e.target == alias and e.op not in ("connect", "setup")]


def first_words(captured) -> list[str]:
    # executemany is logged as "2 times: UPDATE …"
    return [q["sql"].split(" times: ")[-1].split()[0] for q in captured]


def assert_counts_agree_with_django(alias: str) -> list[str]:
    """Django's log and ioprofiler's events, one for one; the first words of Django's."""
    with ioprofiler.profile() as trace, CaptureQueriesContext(connections[alias]) as django_log:
        transactions_page(alias)
    assert query_count(trace, alias) == len(django_log.captured_queries)
    words = first_words(django_log.captured_queries)
    events = django_logged(trace, alias)
    ours = [e.op.upper() if e.op in CONNECTION_OPS else e.statement.split()[0] for e in events]
    # a failed statement: SQLite's last_executed_query() gives Django None to log
    assert [w if w != "None" else "SELECT" for w in words] == ours
    failed = [e.statement for e in events if e.error is not None]
    assert failed == ["SELECT * FROM missing WHERE id = %s"]  # recorded, counted by both
    statements = sum(1 for e in events if e.is_statement)
    assert trace.count(kind="db", target=alias) == statements
    return ours


def test_query_count_is_what_assert_num_queries_counts_on_sqlite(shards):
    words = assert_counts_agree_with_django("dbshard01")
    # SQLite: BEGIN is a statement; the failing query is counted by both
    assert words == [
        "SELECT", "BEGIN", "INSERT", "SAVEPOINT", "INSERT", "RELEASE", "SAVEPOINT", "SELECT",
        "ROLLBACK", "RELEASE", "COMMIT", "BEGIN", "INSERT", "ROLLBACK", "UPDATE",
    ]  # fmt: skip
    with ioprofiler.profile() as trace:
        with TransactionTestCase().assertNumQueries(15, using="dbshard01"):
            transactions_page("dbshard01")
    assert query_count(trace, "dbshard01") == 15
    assert trace.count(kind="db", target="dbshard01") == 13  # the statements
    assert trace.count(kind="db", target="dbshard01", op="commit") == 1


def test_an_error_is_recorded_and_reraised_unchanged(shards):
    with ioprofiler.profile() as trace:
        with pytest.raises(OperationalError, match="no such table") as raised:
            with connections["dbshard01"].cursor() as cursor:
                cursor.execute("SELECT * FROM missing WHERE id = %s", [5])
    (event,) = trace.events
    assert event.error == "OperationalError" and event.error_message == str(raised.value)
    assert event.line().endswith("SELECT * FROM missing WHERE id = 5 [ERROR OperationalError]")


def test_nothing_is_recorded_without_a_trace(shards):
    with ioprofiler.profile() as trace:
        with trace.paused():
            favorite_model().objects.using("dbshard01").count()
    assert trace.count() == 0


@pytest.fixture
def mariadb_shard() -> Iterator[str]:
    import pymysql

    admin = mysql_or_skip()
    database = f"ioprofiler_django_{os.getpid()}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    pymysql.install_as_MySQLdb()  # Django's MySQL backend on PyMySQL
    add_database(
        "dbshard05",
        {
            "ENGINE": "django.db.backends.mysql",
            "NAME": database,
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": 3306,
        },
    )
    try:
        create_table("dbshard05")
        yield "dbshard05"
    finally:
        remove_database("dbshard05")
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()


def session_status(cursor, name: str) -> int:
    cursor.execute("SHOW SESSION STATUS LIKE %s", [name])
    return int(cursor.fetchone()[1])


def test_mariadb_counts_the_statements_ioprofiler_lists(mariadb_shard):
    Favorite = favorite_model()
    connection = connections[mariadb_shard]
    with connection.cursor() as cursor:
        before = session_status(cursor, "Com_select"), session_status(cursor, "Com_insert")
        with ioprofiler.profile() as trace:
            for user in range(3):
                Favorite.objects.using(mariadb_shard).filter(user_id=user).count()
            Favorite.objects.using(mariadb_shard).create(listing_id=9, user_id=9)
        after = session_status(cursor, "Com_select"), session_status(cursor, "Com_insert")
    selects = sum(1 for e in trace.events if e.statement.startswith("SELECT"))
    inserts = sum(1 for e in trace.events if e.statement.startswith("INSERT"))
    assert (after[0] - before[0], after[1] - before[1]) == (selects, inserts) == (3, 1)
    assert {e.target for e in trace.events} == {"dbshard05"}
    assert whats(trace)[0] == (
        "SELECT COUNT(*) AS `__count` FROM `favorite` WHERE `favorite`.`user_id` = 0"
    )


def test_query_count_is_what_assert_num_queries_counts_on_mariadb(mariadb_shard):
    connection = connections[mariadb_shard]
    with connection.cursor() as cursor:
        before = session_status(cursor, "Com_commit"), session_status(cursor, "Com_rollback")
        words = assert_counts_agree_with_django(mariadb_shard)
        after = session_status(cursor, "Com_commit"), session_status(cursor, "Com_rollback")
    # MySQL: BEGIN is Django turning autocommit off, a connection op of ours
    assert words == [
        "SELECT", "BEGIN", "INSERT", "SAVEPOINT", "INSERT", "RELEASE", "SAVEPOINT", "SELECT",
        "ROLLBACK", "RELEASE", "COMMIT", "BEGIN", "INSERT", "ROLLBACK", "UPDATE",
    ]  # fmt: skip
    # the server's own counters: one COMMIT, one ROLLBACK (ROLLBACK TO SAVEPOINT is a statement)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_a_new_connection_is_a_connect_event_naming_its_server(mariadb_shard):
    connection = connections[mariadb_shard]
    connection.close()
    with ioprofiler.profile() as trace:
        assert favorite_model().objects.using(mariadb_shard).count() == 3
    assert [e.op for e in trace.events] == ["connect", "execute"]
    database = connection.settings_dict["NAME"]
    assert whats(trace)[0] == f"CONNECT root@127.0.0.1:3306/{database}"
    assert trace.count(kind="db", target=mariadb_shard) == 1
    assert trace.count(kind="db", target=mariadb_shard, op="connect") == 1


def test_a_stored_procedure_call_is_one_event(mariadb_shard):
    connection = connections[mariadb_shard]
    with connection.cursor() as cursor:
        cursor.execute("CREATE PROCEDURE count_favorites() SELECT COUNT(*) FROM favorite")
        with ioprofiler.profile() as trace, CaptureQueriesContext(connection) as django_log:
            cursor.callproc("count_favorites")
            assert cursor.fetchone() == (3,)
    assert whats(trace) == ["CALL count_favorites"]
    assert trace.events[0].op == "callproc"
    assert len(django_log.captured_queries) == query_count(trace, mariadb_shard) == 0


def test_install_and_uninstall_are_exact():
    from django.db.backends.base import base
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

    classes = (CursorWrapper, CursorDebugWrapper, BaseDatabaseWrapper, base)
    ioprofiler.uninstall()
    before = {(c, n): v for c in classes for n, v in vars(c).items()}
    assert "django" in ioprofiler.install()
    assert is_ours(vars(CursorWrapper)["execute"])
    assert is_ours(base.debug_transaction)
    assert "execute" not in {n for n, v in vars(CursorDebugWrapper).items() if is_ours(v)}
    ioprofiler.uninstall()
    after = {(c, n): v for c in classes for n, v in vars(c).items()}
    assert after.keys() == before.keys() and all(after[k] is v for k, v in before.items())
