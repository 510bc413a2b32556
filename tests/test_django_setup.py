"""Django on MariaDB (through PyMySQL) turns autocommit back on after each transaction:
``SET AUTOCOMMIT = 1``, a round trip of the connection, listed on the alias as set-up,
never one of the application's queries (nor Django's: ``assertNumQueries`` does not count it).
"""

from __future__ import annotations

import pytest

import ioprofiler
from ioprofiler.django import query_count
from tests.conftest import configure_django
from tests.test_django import (
    favorite_model,
    mariadb_shard,  # noqa: F401 - a fixture, asked for by name
    session_status,
)

django = pytest.importorskip("django")
configure_django()

from django.db import connections, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402


def test_autocommit_back_on_is_set_up_on_the_alias(request):
    alias = request.getfixturevalue("mariadb_shard")
    objects = favorite_model().objects.using(alias)
    connection = connections[alias]
    with connection.cursor() as cursor:
        before = session_status(cursor, "Questions")
        with ioprofiler.profile() as trace, CaptureQueriesContext(connection) as django_log:
            for user in (7, 8):
                with transaction.atomic(using=alias):
                    objects.create(listing_id=1, user_id=user)
        after = session_status(cursor, "Questions")

    described = [event.description() for event in trace.events]
    assert described.count("SET AUTOCOMMIT = 1 (connection set-up)") == 2, trace.text()
    assert {event.target for event in trace.events} == {alias}, trace.text()
    assert trace.count(kind="db") == 2  # the two INSERTs
    assert trace.count(kind="db", op="setup") == 2
    assert query_count(trace, alias) == len(django_log.captured_queries)
    assert after - before - 1 == len(trace.events)  # the SHOW that read the counter


def test_a_connection_opened_outside_a_trace_is_named_by_its_alias(request):
    alias = request.getfixturevalue("mariadb_shard")
    connection = connections[alias]
    connection.close()
    favorite_model().objects.using(alias).count()  # connects, nothing recording
    with ioprofiler.profile() as trace:
        with transaction.atomic(using=alias):
            favorite_model().objects.using(alias).create(listing_id=2, user_id=9)
    assert {event.target for event in trace.events} == {alias}, trace.text()
    assert trace.count(kind="db") == 1  # the INSERT
