"""Every event of a SQLAlchemy engine is named as its shard, whenever the engine was made.

Applications make their engines at import time and install ioprofiler later (the
middleware does it when it is built, FastAPI's at the first request). Those engines are
unlabelled, as the README's recipes leave them: their shard is their database's name, for
the CONNECT, the dialect's first-connect statements, the pool's ROLLBACK and what goes
straight to the driver below, on every pooled connection, for the connection's whole life.
"""

from __future__ import annotations

import os
import re

import pytest
import sqlalchemy as sa

import ioprofiler
from tests.conftest import mysql_or_skip

DATABASE = f"iop_targets_{os.getpid()}"
MYSQL_URL = f"mysql+pymysql://root@127.0.0.1:3306/{DATABASE}"


def made_before_install(url: str, **options) -> sa.Engine:
    """An engine made where applications make theirs: before ``ioprofiler.install()``."""
    ioprofiler.uninstall()
    try:
        return sa.create_engine(url, **options)
    finally:
        ioprofiler.install()


def targets(trace) -> set[str]:
    return {event.target for event in trace.events}


@pytest.fixture(scope="module")
def mysql_database():
    admin = mysql_or_skip()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {DATABASE}")
    yield DATABASE
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    admin.close()


def test_a_sqlite_engine_made_before_install_is_named_by_its_file(tmp_path):
    engine = made_before_install(f"sqlite:///{tmp_path / 'dbshard01.db'}")
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
    engine.dispose()

    ops = [event.op for event in trace.events]
    assert ops[0] == "connect" and "execute" in ops and ops[-1] == "rollback", trace.text()
    assert targets(trace) == {"dbshard01"}, trace.text()
    assert not re.search(r"^\s+sqlite\s", trace.text(), re.M)  # nor in the summary


def test_a_mariadb_engine_made_before_install_names_its_first_connection(mysql_database):
    engine = made_before_install(MYSQL_URL)
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 2")
        with engine.connect() as conn:  # the same pooled connection
            conn.exec_driver_sql("SELECT 3")
        raw = engine.raw_connection()  # its driver connection, below SQLAlchemy
        with raw.cursor() as cursor:
            cursor.execute("SELECT 4")
        raw.close()
    engine.dispose()

    described = [event.description() for event in trace.events]
    assert "SET NAMES utf8mb4 (connection set-up)" in described, trace.text()
    assert {"SELECT 2", "SELECT 3", "SELECT 4"} <= set(described), trace.text()
    assert targets(trace) == {DATABASE}, trace.text()


def test_a_connection_opened_outside_any_trace_keeps_its_engines_name(mysql_database):
    engine = made_before_install(MYSQL_URL)
    with engine.connect() as conn:  # the pool opens it at start-up, nothing recording
        conn.exec_driver_sql("SELECT 1")
    with ioprofiler.profile() as trace:
        raw = engine.raw_connection()
        with raw.cursor() as cursor:
            cursor.execute("SELECT 5")
        raw.close()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 6")
    engine.dispose()

    assert [event.description() for event in trace.events if event.is_call] == [
        "SELECT 5",
        "SELECT 6",
    ], trace.text()
    assert targets(trace) == {DATABASE}, trace.text()


def test_a_label_still_names_an_engine_made_before_install(mysql_database):
    engine = made_before_install(MYSQL_URL)
    ioprofiler.label(engine, "dbshard07")
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 7")
    engine.dispose()

    assert targets(trace) == {"dbshard07"}, trace.text()
