"""install() and uninstall(): idempotent, exact inverses, polite to other wrappers."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import wrapt
from ioprofiler.integrations.sqlalchemy import _subclasses
from pymemcache.client.base import Client
from sqlalchemy.engine.default import DefaultDialect

import ioprofiler
from ioprofiler.patching import is_ours
from tests.conftest import engine_for_dialect, mysql_or_skip


def class_attributes() -> dict[tuple[type, str], object]:
    classes = [Client, *_subclasses(DefaultDialect)]
    return {(cls, name): value for cls in classes for name, value in vars(cls).items()}


def test_install_is_idempotent_and_names_what_it_patched():
    first = ioprofiler.install()
    patched_get = vars(Client)["get"]
    assert ioprofiler.install() == first == list(ioprofiler.registry.INTEGRATIONS)
    assert vars(Client)["get"] is patched_get
    assert ioprofiler.installed() == first


def test_uninstall_restores_every_attribute_exactly():
    ioprofiler.uninstall()
    before = class_attributes()
    ioprofiler.install()
    assert any(class_attributes()[key] is not value for key, value in before.items())
    ioprofiler.uninstall()
    ioprofiler.uninstall()  # twice is harmless
    after = class_attributes()  # install() may have loaded more dialect classes
    assert all(after[key] is value for key, value in before.items())
    assert not any(is_ours(v) for v in after.values())
    assert ioprofiler.installed() == []


def test_install_imports_no_dialect_the_application_did_not_ask_for():
    script = textwrap.dedent(
        """
        import sys
        import sqlalchemy, sqlalchemy.engine.default
        import pymemcache.client.base
        before = set(sys.modules)
        import ioprofiler
        ioprofiler.install()
        print(sorted(m for m in set(sys.modules) - before if m.startswith("sqlalchemy.")))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_dialect_module_loaded_after_install_is_patched_before_its_first_statement():
    """PyMySQL's dialect derives from mysqldb's, which overrides do_executemany."""
    mysql_or_skip().close()
    database = f"ioprofiler_late_dialect_{os.getpid()}"
    script = textwrap.dedent(
        f"""
        import sys
        import sqlalchemy as sa
        import ioprofiler
        from ioprofiler.patching import is_ours

        ioprofiler.install()
        assert "sqlalchemy.dialects.mysql.mysqldb" not in sys.modules
        server = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/")
        with server.begin() as conn:
            conn.exec_driver_sql("CREATE DATABASE {database}")
        engine = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/{database}")
        from sqlalchemy.dialects.mysql.mysqldb import MySQLDialect_mysqldb
        assert is_ours(vars(MySQLDialect_mysqldb)["do_executemany"])
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
                with ioprofiler.profile() as trace:
                    conn.exec_driver_sql("INSERT INTO t (x) VALUES (%s)", [(1,), (2,), (3,)])
        finally:
            engine.dispose()
            with server.begin() as conn:
                conn.exec_driver_sql("DROP DATABASE {database}")
        print([(e.op, e.rows, e.target) for e in trace.events])
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"[('executemany', 3, '{database}')]"


def test_a_dialect_class_defined_after_install_is_patched_when_its_engine_is_made(tmp_path):
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    class LateDialect(SQLiteDialect_pysqlite):
        def do_execute(self, cursor, statement, parameters, context=None):
            cursor.execute(statement, parameters)

    engine = engine_for_dialect(LateDialect, tmp_path / "late.db")
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 42")
    assert [e.sql for e in trace.events if e.is_statement] == ["SELECT 42"]


def counting_wrapper(calls: list):
    """Another agent's wrapt wrapper: counts the calls it sees."""

    def other(wrapped, instance, args, kwargs):
        calls.append(args)
        return wrapped(*args, **kwargs)

    return other


def test_another_wrapt_wrapper_on_top_is_left_alone(caplog, memcached):
    calls = []
    plain = vars(Client)["get"].__wrapped__  # put back at the end, so the next install patches it
    wrapt.wrap_function_wrapper(Client, "get", counting_wrapper(calls))
    theirs = vars(Client)["get"]
    try:
        with caplog.at_level(logging.WARNING, logger="ioprofiler"):
            ioprofiler.uninstall()
        assert vars(Client)["get"] is theirs
        assert "re-wrapped by someone else" in caplog.text
        client = Client(memcached.address)
        with ioprofiler.profile() as trace:
            client.get("anything")
        assert calls and trace.count() == 1  # both wrappers still work
    finally:
        Client.get = plain
        ioprofiler.uninstall()
        ioprofiler.install()


def test_a_wrapper_applied_before_install_is_kept_under_ours(memcached):
    ioprofiler.uninstall()
    calls = []
    plain = vars(Client)["delete"]
    wrapt.wrap_function_wrapper(Client, "delete", counting_wrapper(calls))
    theirs = vars(Client)["delete"]
    try:
        ioprofiler.install()
        with ioprofiler.profile() as trace:
            Client(memcached.address).delete("k")
        assert trace.count() == 1 and calls
        ioprofiler.uninstall()
        assert vars(Client)["delete"] is theirs
    finally:
        Client.delete = plain
        ioprofiler.install()


def test_clients_look_the_same_to_the_application(memcached):
    client = Client(memcached.address)
    ioprofiler.uninstall()
    plain_pickle = _pickle_outcome(client)
    ioprofiler.install()
    assert isinstance(client, Client)
    assert type(client).__mro__ == (Client, object)
    assert _pickle_outcome(client) == plain_pickle
    assert Client.get.__name__ == "get" and "memcached" in Client.get.__doc__


def test_patched_methods_pickle_and_copy_as_before():
    import copy

    ioprofiler.uninstall()
    plain = pickle.dumps(Client.get)
    ioprofiler.install()
    assert pickle.dumps(Client.get) == plain
    assert pickle.loads(plain).__wrapped__ is vars(Client)["get"].__wrapped__
    assert copy.copy(Client.get) is not None
    method = DefaultDialect.do_execute
    assert pickle.loads(pickle.dumps(method)).__name__ == "do_execute"


def _pickle_outcome(obj):
    try:
        return ("pickled", type(pickle.loads(pickle.dumps(obj))))
    except Exception as exc:
        return ("refused", type(exc), str(exc))


def test_unknown_integrations_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown integration 'mongo'.*sqlalchemy, pymemcache"):
        ioprofiler.install(only=["mongo"])


def test_a_failure_inside_the_profiler_is_counted_and_never_raised(memcached):
    class UnhashableHost(str):
        __hash__ = None  # the profiler keeps a set of servers; this one cannot go in it

    client = Client((UnhashableHost("127.0.0.1"), memcached.port))
    with ioprofiler.profile() as trace:
        client.set("odd", b"1")
        assert client.get("odd") == b"1"
    assert trace.profiler_errors == 3  # the SET, the CONNECT made inside it, the GET
    assert trace.events == []
    assert "ioprofiler failed to record 3 calls" in trace.text()


@pytest.mark.parametrize("missing", ["sqlalchemy", "pymemcache"])
def test_works_when_an_optional_library_is_absent(missing, memcached, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules[{missing!r}] = None      # import {missing} now fails
        import ioprofiler
        print(ioprofiler.install())
        with ioprofiler.profile() as trace:
            if {missing!r} != "pymemcache":
                from pymemcache.client.base import Client
                Client(("127.0.0.1", {memcached.port})).get("x")
            else:
                import sqlalchemy as sa
                with sa.create_engine("sqlite:///{tmp_path}/dbshard01.db").connect() as c:
                    c.exec_driver_sql("SELECT 1")
        print([e for e in trace.events if e.is_call][0].line().split(" ms ")[1])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    installed, line = result.stdout.splitlines()
    present = "pymemcache" if missing == "sqlalchemy" else "sqlalchemy"
    assert repr(present) in installed and repr(missing) not in installed
    assert line == ("Cache MISS, keys: x" if present == "pymemcache" else "SELECT 1")


def test_a_wrapper_above_ours_sees_the_method_as_unwrapped(memcached):
    """OpenTelemetry's pymemcache wrappers skip any method with ``__wrapped__``."""
    seen = []

    def guarded(wrapped, instance, args, kwargs):
        seen.append(hasattr(wrapped, "__wrapped__"))
        return wrapped(*args, **kwargs)

    ours = vars(Client)["delete"]
    wrapt.wrap_function_wrapper(Client, "delete", guarded)
    try:
        with ioprofiler.profile() as trace:
            Client(memcached.address).delete("k")
        assert seen == [False] and trace.count() == 1
        assert vars(Client)["delete"].__wrapped__ is ours  # on the class, it is there
    finally:
        Client.delete = ours


def test_uninstall_is_exact_after_a_tool_above_ours_unwrapped_itself(memcached):
    """OpenTelemetry's unwrap() puts back ``getattr(cls, name).__wrapped__``: our wrapper in
    its bound form. It still records, and uninstall() takes it off."""
    ioprofiler.uninstall()
    plain = vars(Client)["delete"]
    ioprofiler.install()
    wrapt.wrap_function_wrapper(Client, "delete", counting_wrapper([]))
    Client.delete = Client.delete.__wrapped__
    with ioprofiler.profile() as trace:
        Client(memcached.address).delete("k")
    assert trace.count() == 1
    ioprofiler.uninstall()
    assert vars(Client)["delete"] is plain
    ioprofiler.install()


def test_it_imports_and_records_where_the_os_cannot_fork(tmp_path):
    # Windows has no os.register_at_fork: nothing there forks, and nothing may ask it to
    code = textwrap.dedent(
        f"""
        import os
        del os.register_at_fork, os.fork  # as on Windows
        import ioprofiler
        from ioprofiler.export import StatsD
        from ioprofiler.recorder import Recorder
        from ioprofiler.wsgi import IOProfilerMiddleware

        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"ok"]

        recorder = Recorder({str(tmp_path / "io.jsonl")!r}, sample=1.0)
        wrapped = IOProfilerMiddleware(app, record=recorder)
        environ = {{"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http",
                    "SERVER_NAME": "x", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1"}}
        body = wrapped(environ, lambda *a: None)
        assert b"".join(body) == b"ok"
        body.close()  # as a WSGI server does: the request is finished, and handed on
        recorder.close()
        print(open({str(tmp_path / "io.jsonl")!r}).read().count('"schema"'))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"  # the request kept, as anywhere else
