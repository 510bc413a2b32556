"""Two-phase steps that are not statements: psycopg's ``tpc_*`` calls, against PostgreSQL at
127.0.0.1:5432 (db ``test``, trust). Skipped with the reason when no server answers (a
failure under ``IOPROFILER_REQUIRE_POSTGRES=1``, as in CI)."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

import ioprofiler
from tests.pglog import admin_or_skip

URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLE = f"iop_roundtrips_{os.getpid()}"


@pytest.fixture
def engine():
    engine = sa.create_engine(URL, connect_args={"connect_timeout": 3})
    ioprofiler.label(engine, "dbshard09")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {TABLE} (v INTEGER)")
    except sa.exc.OperationalError as exc:
        engine.dispose()
        admin_or_skip()  # skips, or fails under IOPROFILER_REQUIRE_POSTGRES=1, with the reason
        raise AssertionError(f"PostgreSQL answers but the test table failed: {exc}") from exc
    yield engine
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {TABLE}")
    engine.dispose()


def test_two_phase_steps_made_below_sql_are_events_of_their_own(engine):
    engine.dispose()  # the next checkout connects, inside the trace
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            xa = conn.begin_twophase()
            conn.exec_driver_sql(f"INSERT INTO {TABLE} VALUES (1)")
            xa.rollback()
    lines = [e.line().split(" ms ", 1)[1] for e in trace.events]
    assert lines[0] == "CONNECT postgres@127.0.0.1:5432/test"
    assert lines[-4:] == [
        "BEGIN TWO-PHASE",
        f"INSERT INTO {TABLE} VALUES (1)",
        "ROLLBACK TWO-PHASE",
        "ROLLBACK (connection returned to the pool)",
    ]
    assert all(e.target == "dbshard09" for e in trace.events)
    assert trace.count(kind="db", op="begin_twophase") == 1
    assert trace.count(kind="db", op="rollback_twophase") == 1
    assert "1 two-phase begin" in trace.text()
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {TABLE}").scalar_one() == 0
