"""What the newer integrations' patch points cost: redis-py, urllib3, httpx, Django's cursor,
PyMySQL and psycopg.

    python benchmarks/integrations.py              # or: --rounds 15

First each wrapper alone around a trivial method, no trace open, against a bare wrapt
pass-through with the same ``enabled`` hook (the floor of any wrapt patch): the idle cost
every call pays once ioprofiler is installed. Then the statement wrappers alone with a
trace open (what recording one statement costs, the call itself free): SQLAlchemy's
``do_execute`` and Django's ``execute`` with no driver integration installed and with one
(they then mark their calls, ``recording.inside``), and the PyMySQL and psycopg cursors'.
Then real calls, paired (see paired.py): a Redis ``GET`` on 127.0.0.1:6379 (skipped when no
Redis answers) and a statement through Django's cursor on a SQLite file, raw / installed
(no trace) / recording.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Callable, Iterator

import wrapt
from ioprofiler.integrations import _redis_cluster as redis_cluster
from ioprofiler.integrations import django as django_integration
from ioprofiler.integrations import httpx as httpx_integration
from ioprofiler.integrations import psycopg as psycopg_integration
from ioprofiler.integrations import pymysql as pymysql_integration
from ioprofiler.integrations import redis as redis_integration
from ioprofiler.integrations import sqlalchemy as sqlalchemy_integration
from ioprofiler.integrations import urllib3 as urllib3_integration
from paired import (
    Config,
    Paired,
    Scenario,
    Spread,
    installed,
    paired,
    raw,
    recording,
    run_rounds,
)

import ioprofiler
from ioprofiler.event import CONNECT
from ioprofiler.patching import Patches
from ioprofiler.recording import add_below, remove_below
from ioprofiler.trace import active


class Trivial:
    """Stands in for a patched method whose call costs nothing: the wrapper alone."""

    def call(self, *args: object, **kwargs: object) -> None:
        return None


# patch point -> our wrapper for it, or (wrapper, its wrapt ``enabled`` hook)
WRAPPERS: dict[str, Callable[..., object] | tuple[Callable[..., object], Callable]] = {
    "redis Redis._send_command_parse_response": redis_integration._command,
    "redis Pipeline._execute_pipeline": redis_integration._pipeline("pipeline"),
    "redis AbstractConnection.connect_check_health": redis_integration._connect,
    "redis a cluster node client's parse_response": redis_cluster._attempt_reply,
    "redis cluster.get_connection": redis_cluster._attempt_connection,
    "redis RedisCluster._execute_command": redis_cluster._command,
    "redis NodeCommands.write": redis_cluster._node_write,
    "redis NodeCommands.read": redis_cluster._node_read,
    "redis ClusterNode.execute_command (asyncio)": redis_cluster._async_node_command,
    "urllib3 HTTPConnectionPool._make_request": urllib3_integration._make_request,
    "urllib3 HTTPResponse.release_conn": urllib3_integration._release_conn,
    "urllib3 HTTPResponse.close": urllib3_integration._close,
    "urllib3 HTTPResponse._raw_read": urllib3_integration._raw_read,
    "urllib3 HTTPResponse._handle_chunk": urllib3_integration._handle_chunk,
    "httpx HTTPTransport.handle_request": httpx_integration._handle_request,
    "django CursorWrapper.execute": django_integration._statement("execute"),
    "django BaseDatabaseWrapper.connect": django_integration._connection_op(CONNECT),
    "django base.debug_transaction": django_integration._debug_transaction,
    "pymysql Cursor.execute": pymysql_integration._execute,
    "pymysql Cursor.executemany": pymysql_integration._executemany,
    "pymysql Cursor.callproc": pymysql_integration._run_callproc,
    "pymysql Cursor._query (only in callproc)": (
        pymysql_integration._callproc_query,
        pymysql_integration._callproc.get,
    ),
    "pymysql Connection.commit": pymysql_integration._commit,
    "pymysql Connection.connect": pymysql_integration._connect,
    "pymysql Connection.autocommit": pymysql_integration._autocommit,
    "psycopg Cursor.execute": psycopg_integration._execute[False],
    "psycopg AsyncCursor.execute": psycopg_integration._execute[True],
    "psycopg Cursor.executemany": psycopg_integration._executemany[False],
    "psycopg Connection.commit": psycopg_integration._commit,
    "psycopg AsyncConnection.commit": psycopg_integration._async_commit,
    "psycopg Connection.connect": psycopg_integration._connect,
}


def wrappers_alone(rounds: int, n: int) -> dict[str, Paired]:
    def pass_through(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    plain = Trivial.__dict__["call"]
    patches = Patches()

    @contextlib.contextmanager
    def wrapped_with(wrapper: Callable[..., object] | None) -> Iterator[None]:
        if wrapper is None:
            Trivial.call = wrapt.FunctionWrapper(plain, pass_through, enabled=active.get)
        elif isinstance(wrapper, tuple):
            patches.wrap(Trivial, "call", wrapper[0], enabled=wrapper[1])
        else:
            patches.wrap(Trivial, "call", wrapper)
        try:
            yield
        finally:
            patches.unwrap_all()
            Trivial.call = plain

    target = Trivial()
    configs: dict[str, Config] = {"raw": contextlib.nullcontext}
    configs["bare wrapt"] = lambda: wrapped_with(None)
    for name, wrapper in WRAPPERS.items():
        configs[name] = lambda wrapper=wrapper: wrapped_with(wrapper)
    scenario = Scenario("trivial", lambda: target.call(None, "GET", "x"), n)
    run_rounds(configs, [scenario], rounds)
    return {name: paired(scenario, name) for name in configs if name != "raw"}


class _PyMySQLConnection:
    db = b"shop"
    encoding = "utf8"


class _PsycopgConnection:
    class info:  # noqa: N801 - stands in for psycopg's ConnectionInfo
        dbname = "shop"
        host = "127.0.0.1"


class _DjangoConnection:
    alias = "dbshard01"
    vendor = "mysql"


class Statement:
    """Stands in for a statement method whose call costs nothing, with what each
    integration's wrapper reads from its instance (a dialect, a cursor)."""

    paramstyle = "pyformat"  # SQLAlchemy's dialect
    name = "mysql"
    connection = _PyMySQLConnection()  # PyMySQL's cursor
    _conn = _PsycopgConnection()  # psycopg's cursor
    db = _DjangoConnection()  # Django's cursor wrapper

    def sqlalchemy(self, cursor, statement, parameters, context) -> None:
        return None

    def cursor(self, query, params=None) -> None:
        return None


SQL = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = %s"
PARAMS = (5773453,)


def recording_alone(rounds: int, n: int) -> dict[str, Paired]:
    """Each statement wrapper around a free method with a trace open: the recording path."""
    patches = Patches()
    target = Statement()
    sqlalchemy_integration._remember_name(target, "dbshard01")
    plain_sa, plain_cursor = Statement.__dict__["sqlalchemy"], Statement.__dict__["cursor"]
    fake_driver = "a driver integration"

    @contextlib.contextmanager
    def recorded(method: str, wrapper: Callable[..., object] | None, driver: bool):
        if wrapper is not None:
            patches.wrap(Statement, method, wrapper)
        if driver:
            add_below(fake_driver, "a driver package")
        try:
            with ioprofiler.profile(max_events=sys.maxsize):
                yield
        finally:
            remove_below(fake_driver)
            patches.unwrap_all()
            Statement.sqlalchemy, Statement.cursor = plain_sa, plain_cursor

    sa_wrapper = sqlalchemy_integration._WRAPPERS["do_execute"]
    django_wrapper = django_integration._statement("execute")
    sa_configs: dict[str, Config] = {
        "raw": lambda: recorded("sqlalchemy", None, False),
        "SQLAlchemy do_execute": lambda: recorded("sqlalchemy", sa_wrapper, False),
        "SQLAlchemy do_execute, a driver installed": lambda: recorded(
            "sqlalchemy", sa_wrapper, True
        ),
    }
    cursor_configs: dict[str, Config] = {
        "raw": lambda: recorded("cursor", None, False),
        "Django CursorWrapper.execute": lambda: recorded("cursor", django_wrapper, False),
        "Django CursorWrapper.execute, a driver installed": lambda: recorded(
            "cursor", django_wrapper, True
        ),
        "PyMySQL Cursor.execute": lambda: recorded("cursor", pymysql_integration._execute, False),
        "psycopg Cursor.execute": lambda: recorded(
            "cursor", psycopg_integration._execute[False], False
        ),
    }
    results = {}
    for configs, call in (
        (sa_configs, lambda: target.sqlalchemy(None, SQL, PARAMS, None)),
        (cursor_configs, lambda: target.cursor(SQL, PARAMS)),
    ):
        scenario = Scenario("recording", call, n)
        run_rounds(configs, [scenario], rounds)
        results.update({name: paired(scenario, name) for name in configs if name != "raw"})
    return results


def redis_scenario(calls: int) -> Scenario | None:
    import redis

    client = redis.Redis("127.0.0.1", 6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        return None
    return Scenario(
        "redis GET (miss), 127.0.0.1:6379", lambda: client.get("ioprofiler:bench"), calls
    )


def django_scenario(directory: str, calls: int) -> Scenario:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{directory}/db"}},
        INSTALLED_APPS=[],
    )
    django.setup()
    from django.db import connection

    cursor = connection.cursor()
    cursor.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")

    def statement() -> None:
        cursor.execute("SELECT count(*) FROM t WHERE v = %s", [7])
        cursor.fetchone()

    return Scenario("Django cursor.execute, SQLite", statement, calls)


def _spread(spread: Spread, unit: str = "µs") -> str:
    return f"{spread.median:+.3f} {unit} [{spread.q1:+.3f}, {spread.q3:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=2000, help="calls per batch")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")

    alone = wrappers_alone(args.rounds, args.calls * 50)
    recorded = recording_alone(args.rounds, args.calls * 5)
    with tempfile.TemporaryDirectory() as directory:
        scenarios = [django_scenario(directory, args.calls)]
        redis_calls = redis_scenario(args.calls)
        if redis_calls is not None:
            scenarios.append(redis_calls)
        configs: dict[str, Config] = {"raw": raw, "installed": installed, "recording": recording}
        run_rounds(configs, scenarios, args.rounds)

    print(
        f"Python {sys.version.split()[0]}; {args.rounds} paired rounds; "
        "median [quartiles] over rounds"
    )
    print("\nthe wrappers alone around a trivial method, no trace open, added per call:")
    for name, result in alone.items():
        print(f"  {name:<50}{_spread(result.added)}  (CPU {_spread(result.added_cpu)})")
    print("\nthe statement wrappers alone, a trace open, added per recorded statement:")
    for name, result in recorded.items():
        print(f"  {name:<50}{_spread(result.added)}  (CPU {_spread(result.added_cpu)})")
    if redis_calls is None:
        print("\nno Redis answers on 127.0.0.1:6379: its real calls are not measured")
    for scenario in scenarios:
        base = paired(scenario, "raw").us.median
        print(f"\n{scenario.name}, {args.calls} calls per batch:")
        print(f"  raw        {base:8.2f} µs")
        for name in ("installed", "recording"):
            result = paired(scenario, name)
            print(
                f"  {name:<10} {result.us.median:8.2f} µs  ratio {result.ratio.median:.3f} "
                f"[{result.ratio.q1:.3f}, {result.ratio.q3:.3f}]  added {_spread(result.added)}"
                f"  (CPU {_spread(result.added_cpu)})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
