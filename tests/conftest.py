"""Real servers for the tests: a private memcached per session, SQLite shard files,
MariaDB at 127.0.0.1:3306 when it answers (required when IOPROFILER_REQUIRE_MYSQL=1)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import ioprofiler
from ioprofiler.memcached import MemcachedNotInstalled, MemcachedProcess

SHARDS = ("dbshard01", "dbshard02", "dbshard03", "dbshard04")
pytest_plugins = ["pytester"]


def new_memcached(*extra_args: str) -> MemcachedProcess:
    try:
        return MemcachedProcess(*extra_args).start()
    except MemcachedNotInstalled as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def memcached() -> Iterator[MemcachedProcess]:
    server = new_memcached()
    yield server
    server.stop()


@pytest.fixture
def start_memcached() -> Iterator[object]:
    """Start more memcached servers for one test; all are stopped after it."""
    started: list[MemcachedProcess] = []

    def start(*extra_args: str) -> MemcachedProcess:
        server = new_memcached(*extra_args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def client(memcached):
    """A pymemcache client of the session's memcached."""
    from pymemcache.client.base import Client

    client = Client(memcached.address, default_noreply=False)
    yield client
    client.close()


@pytest.fixture
def key() -> str:
    """A key no other test uses, so tests never see each other's values."""
    return f"k{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _installed() -> Iterator[None]:
    from ioprofiler.targets import forget_servers

    ioprofiler.install()
    forget_servers()
    yield
    ioprofiler.configure(redact=False, callsite_skip=[], findings=ioprofiler.Thresholds())


@pytest.fixture
def sqlite_shards(tmp_path: Path):
    """Four SQLite shard files with a FavoriteListingUser table each."""
    import sqlalchemy as sa

    engines = {}
    for number, name in enumerate(SHARDS, start=1):
        engine = sa.create_engine(f"sqlite:///{tmp_path / name}.db")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE FavoriteListingUser (id INTEGER PRIMARY KEY, "
                "listing_id INTEGER NOT NULL, user_id INTEGER NOT NULL, note TEXT)"
            )
            conn.exec_driver_sql(
                "INSERT INTO FavoriteListingUser (listing_id, user_id) VALUES (?, ?)",
                [(5773453, number * 10 + i) for i in range(number)],
            )
        engines[name] = engine
    yield engines
    for engine in engines.values():
        engine.dispose()


def configure_django() -> None:
    """Django's settings for every test that uses Django: settings are made once per process,
    whichever test comes first. Databases are added per test (tests/test_django.py)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="ioprofiler-tests",
            ROOT_URLCONF="tests.test_frameworks",
            ALLOWED_HOSTS=["localhost", "testserver"],
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            DATABASES={},
            USE_TZ=True,
        )
    django.setup(set_prefix=False)


def engine_for_dialect(dialect_class: type, path: Path):
    """An engine on a SQLite file that uses ``dialect_class``, registered under its name."""
    import sys

    import sqlalchemy as sa
    from sqlalchemy.dialects import registry

    name = dialect_class.__name__.lower()
    setattr(sys.modules[__name__], dialect_class.__name__, dialect_class)
    registry.register(f"sqlite.{name}", __name__, dialect_class.__name__)
    return sa.create_engine(f"sqlite+{name}:///{path}")


def mysql_or_skip():
    """A PyMySQL connection factory for 127.0.0.1:3306, or skip (fail under CI's flag)."""
    try:
        import pymysql

        connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=3)
    except Exception as exc:
        reason = f"MariaDB/MySQL at 127.0.0.1:3306 (user root, no password) is not answering: {exc}"
        if os.environ.get("IOPROFILER_REQUIRE_MYSQL") == "1":
            pytest.fail(reason + " (IOPROFILER_REQUIRE_MYSQL=1 makes this a failure)")
        pytest.skip(reason)
    return connection
