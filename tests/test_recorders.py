"""The compiled recorders (ioprofiler._recorders) record what their Python wrappers record.

pymemcache's ``Client.get`` and SQLAlchemy's ``do_execute`` are recorded in C; the Python
wrappers (``recorder.reference``) stay the reference. Each case makes the same call twice,
from the same line, once installed with the recorders and once with the Python wrappers
(``recorders.compiled_recorders = False``), and compares what the application got back (the
value, or the exception's type and message) and every field of every event: class, op,
target, keys, hit, statement, parameters, errors, callsite, which traces kept it and which
counted it past their bound, and the clocks' order.
"""

from __future__ import annotations

import gc
import socket
import sqlite3
import sys
import threading
from contextvars import ContextVar

import pytest
import sqlalchemy as sa
import wrapt
from ioprofiler.integrations import pymemcache as memcache_integration
from ioprofiler.integrations import sqlalchemy as sqlalchemy_integration
from pymemcache.client.base import Client

import ioprofiler
from ioprofiler import patching, recorders, recording
from ioprofiler.event import Event
from ioprofiler.trace import active
from tests.conftest import engine_for_dialect

pytestmark = pytest.mark.skipif(
    not recorders.compiled_recorders, reason="ioprofiler._recorders is not built"
)

TIMES = ("start_ns", "end_ns", "_origin_ns")


def fields(event: Event) -> dict:
    """Every field the event holds but its clocks: slots of every class, and its __dict__."""
    names = {n for k in type(event).__mro__ for n in getattr(k, "__slots__", ()) if n != "__dict__"}
    found = {name: getattr(event, name) for name in sorted(names - set(TIMES))}
    found.update(vars(event))
    found["class"] = type(event)
    found["_overflow"] = tuple(id(t) for t in (event._overflow or ()))
    return found


def uses_recorders() -> tuple[bool, bool]:
    """Whether get and do_execute are patched with the recorders now."""
    from sqlalchemy.engine.default import DefaultDialect

    found = []
    for patched in (vars(Client)["get"], vars(DefaultDialect)["do_execute"]):
        wrapper = getattr(patched, "_ioprofiler_wrapper", None)  # MethodPatch
        if wrapper is None:
            wrapper = patched._self_wrapper  # wrapt's FunctionWrapper
        found.append(recorders.is_recorder(wrapper))
    return found[0], found[1]


def outcome(call):
    try:
        return ("returned", call())
    except BaseException as exc:  # KeyboardInterrupt too: the wrappers must let it through
        return ("raised", type(exc), str(exc))


class RefusingList(list):
    """A trace's events that cannot take one more: begin fails, the profiler's own error (or
    what ``refusal`` raises)."""

    refusal: type[BaseException] = RuntimeError

    def append(self, item):
        raise self.refusal("full")


def run_both(call, *, max_events=None, nested=False, broken=False, before=None):
    """[(what the call gave, [event fields...], trace facts)] for the recorders, then the
    Python wrappers; ``call`` is the same function both times, so the callsite is too.
    ``broken``: the trace's event list refuses events. ``before``: run before each, to start
    both from the same state (a client's socket closed)."""
    results = []
    for compiled in (True, False):
        ioprofiler.uninstall()
        recorders.compiled_recorders = compiled
        try:
            ioprofiler.install()
            assert uses_recorders() == (compiled, compiled)  # never the same wrappers twice
            if before is not None:
                before()
            outer = ioprofiler.profile().__enter__() if nested else None
            with ioprofiler.profile(max_events=max_events) as trace:
                if broken:
                    trace._events = RefusingList()
                    if broken is not True:
                        trace._events.refusal = broken
                got = outcome(call)
            if outer is not None:
                outer.__exit__(None, None, None)
        finally:
            recorders.compiled_recorders = True
            ioprofiler.uninstall()
            ioprofiler.install()
        traces = [t for t in (outer, trace) if t is not None]
        events = [e for t in traces for e in t.events]
        for event in events:
            assert event._origin_ns <= event.start_ns <= event.end_ns
        facts = [(len(t.events), t.dropped, t.profiler_errors) for t in traces]
        results.append((got, [fields(e) for e in events], facts))
    return results


def assert_same(call, **options) -> list:
    compiled, reference = run_both(call, **options)
    assert compiled == reference
    return compiled[1]


def test_the_recorders_are_what_the_patches_call():
    get = vars(Client)["get"]
    from sqlalchemy.engine.default import DefaultDialect

    execute = vars(DefaultDialect)["do_execute"]
    assert get._ioprofiler_wrapper is memcache_integration._READ_WRAPPERS["get"]
    assert execute._ioprofiler_wrapper is sqlalchemy_integration._WRAPPERS["do_execute"]
    for recorder in (get._ioprofiler_wrapper, execute._ioprofiler_wrapper):
        assert recorders.is_recorder(recorder) and recorder.active is active
        assert type(recorder.reference).__name__ == "function"
    recorders.compiled_recorders = False
    try:
        ioprofiler.uninstall()
        ioprofiler.install()
        assert vars(Client)["get"]._ioprofiler_wrapper is get._ioprofiler_wrapper.reference
    finally:
        recorders.compiled_recorders = True
        ioprofiler.uninstall()
        ioprofiler.install()


# ---- pymemcache's get ---------------------------------------------------------------------


def test_a_hit_a_miss_and_a_stored_falsy_value(client, key):
    client.set(key, b"v")
    client.set(key + "0", b"")
    for wanted in (key, key + "-missing", key + "0"):
        events = assert_same(lambda wanted=wanted: client.get(wanted))
        assert [e["keys"] for e in events if e["op"] == "get"] == [(wanted,)]
    assert assert_same(lambda: client.get(key))[-1]["hit"] is True
    assert assert_same(lambda: client.get(key + "-missing"))[-1]["missed_keys"] == (
        key + "-missing",
    )


def test_calls_of_other_shapes_are_recorded_by_the_reference(client, key):
    client.set(key, b"v")
    for call in (
        lambda: client.get(key, b"default"),
        lambda: client.get(key + "x", default=b"default"),
        lambda: client.get(key=key),
        lambda: client.get(),  # the library's own TypeError, recorded as nothing
        lambda: Client.get(client, key),
    ):
        assert_same(call)


def test_hostile_and_bytes_keys(client):
    for wanted in ("a\nb", b"bytes-key", "é" * 10, "x" * 300):
        assert_same(lambda wanted=wanted: client.get(wanted), before=client.close)


@pytest.fixture
def closing_server():
    """A loopback address whose server closes every connection once it has read a request."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
                connection.recv(4096)  # the request, read: the close is an end of file
            except OSError:
                return
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()
    stop.set()
    listener.close()
    thread.join(5)


def test_a_server_that_is_gone(start_memcached, key):
    server = start_memcached()
    client = Client(server.address)
    server.stop()
    events = assert_same(lambda: client.get(key), before=client.close)
    assert events[-1]["error"] == "ConnectionRefusedError"


def test_a_server_that_closes_the_connection(closing_server, key):
    """The socket is open when the get starts; the server's close is the get's error, or,
    with ignore_exc, a miss that says so."""
    for ignore_exc in (False, True):
        client = Client(closing_server, ignore_exc=ignore_exc)

        def connected(client=client):
            client.close()
            client._connect()

        events = assert_same(lambda client=client: client.get(key), before=connected)
        assert events[-1]["error"] == (
            "error hidden by ignore_exc" if ignore_exc else "MemcacheUnexpectedCloseError"
        )


def test_a_full_trace_and_two_traces_open(client, key):
    client.set(key, b"v")
    events = assert_same(lambda: [client.get(key) for _ in range(3)], max_events=1)
    assert len(events) == 1
    assert len(assert_same(lambda: client.get(key), nested=True)) == 2


def test_the_profilers_own_failure_is_counted_and_the_call_goes_through(client, key):
    client.set(key, b"v")
    client.get(key)  # connected: the server attribute is not read again
    client.server = ["not", "hashable"]  # its target cannot be looked up
    compiled, reference = run_both(lambda: client.get(key))
    assert compiled == reference
    assert compiled[0] == ("returned", b"v") and compiled[2] == [(0, 0, 1)]
    client.server = "127.0.0.1:1"
    compiled, reference = run_both(lambda: client.get(key), broken=True)
    assert compiled == reference
    assert compiled[0] == ("returned", b"v") and compiled[2] == [(0, 0, 1)]


def test_an_interrupt_inside_the_profiler_reaches_the_application(client, key):
    """The Python wrappers catch ``Exception`` around their own work: a KeyboardInterrupt
    raised there is the application's to see, and the library is not called."""
    client.set(key, b"v")
    compiled, reference = run_both(lambda: client.get(key), broken=KeyboardInterrupt)
    assert compiled == reference
    assert compiled[0] == ("raised", KeyboardInterrupt, "full") and compiled[2] == [(0, 0, 0)]


def test_under_another_tools_wrapt_wrapper(client, key):
    """Another tool wrapped get first: ioprofiler's patch is wrapt's, calling the recorder
    as a wrapt wrapper."""
    client.set(key, b"v")
    ioprofiler.uninstall()
    original = vars(Client)["get"]
    wrapt.wrap_function_wrapper(Client, "get", lambda w, i, a, k: w(*a, **k))
    try:
        ioprofiler.install()
        assert isinstance(vars(Client)["get"], patching.IOProfilerWrapper)
        assert recorders.is_recorder(vars(Client)["get"]._self_wrapper)
        for wanted in (key, key + "-missing"):
            events = assert_same(lambda wanted=wanted: client.get(wanted))
            assert events[-1]["keys"] == (wanted,)
        assert_same(lambda: client.get(key, default=1))
    finally:
        ioprofiler.uninstall()
        Client.get = original
        ioprofiler.install()


def test_with_wrapt_patches(client, key, monkeypatch):
    client.set(key, b"v")
    monkeypatch.setattr(patching, "compiled_patches", False)
    assert_same(lambda: client.get(key))
    assert_same(lambda: client.get(key + "-missing"))


def test_no_reference_is_leaked(client, key):
    client.set(key, b"v")
    missing = key + "-missing"
    calls = [
        lambda: client.get(key),
        lambda: client.get(missing),
        lambda: client.get(key, None),
    ]
    with ioprofiler.profile(max_events=10):
        for call in calls:
            for _ in range(20):
                call()
            before = (sys.getrefcount(client), sys.getrefcount(key), sys.getrefcount(missing))
            for _ in range(200):
                call()
            after = (sys.getrefcount(client), sys.getrefcount(key), sys.getrefcount(missing))
            assert after == before


# ---- SQLAlchemy's do_execute --------------------------------------------------------------


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard07.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, note BLOB)")
        conn.exec_driver_sql("INSERT INTO t (id, note) VALUES (1, 'x'), (2, NULL)")
    yield engine
    engine.dispose()


def select(engine, sql: str, *params):
    with engine.connect() as conn:
        return (
            conn.exec_driver_sql(sql, params or ()).fetchall()
            if params
            else (conn.exec_driver_sql(sql).fetchall())
        )


def execute(engine, query, params: dict):
    with engine.connect() as conn:
        return conn.execute(query, params).fetchall()


def statements(events: list) -> list:
    return [e for e in events if e["class"].__name__ == "Statement"]


def test_statements_with_parameters_of_every_kind(engine):
    for params in [(1,), ("x", 2.5, None, True), (b"bytes",), (bytearray(b"ab"),), (b"x" * 600,)]:
        marks = ", ".join("?" * len(params))
        events = assert_same(lambda m=marks, p=params: select(engine, f"SELECT {m}", *p))
        assert statements(events)[-1]["statement"] == f"SELECT {marks}"
    shown = statements(assert_same(lambda: select(engine, "SELECT ?", bytearray(b"ab"))))
    assert shown[-1]["params"] == (b"ab",)  # owned: a copy, not the caller's bytearray


def test_named_parameters_are_a_copied_dict(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'named.db'}", paramstyle="named")
    try:
        query = sa.text("SELECT :a, :b")
        select(engine, "SELECT 1")  # the first connection's set-up, before either run
        events = assert_same(
            lambda: execute(engine, query, {"a": 1, "b": "two"}),
            before=engine.dispose,
        )
        assert statements(events)[-1]["params"] == {"a": 1, "b": "two"}
        assert statements(events)[-1]["paramstyle"] == "named"
        events = assert_same(
            lambda: execute(engine, query, {"a": b"x", "b": bytearray(b"y")}),
            before=engine.dispose,
        )
        assert statements(events)[-1]["params"] == {"a": b"x", "b": b"y"}
    finally:
        engine.dispose()


def test_a_failing_statement_raises_the_same_error(engine):
    events = assert_same(lambda: select(engine, "SELEC nothing"))
    assert "syntax error" in statements(events)[-1]["error_message"]
    events = assert_same(lambda: select(engine, "INSERT INTO t (id) VALUES (1)"))
    assert statements(events)[-1]["error"] == "IntegrityError"


def test_a_dialect_not_named_yet_and_a_full_trace(engine, tmp_path):
    assert_same(lambda: select(engine, "SELECT 1"), max_events=1)
    assert_same(lambda: [select(engine, "SELECT 1") for _ in range(3)], max_events=2)
    assert_same(lambda: select(engine, "SELECT 1"), nested=True)


def test_inside_a_recorded_call_nothing_more_is_recorded(engine):
    def marked():
        token = recording.inside.set(True)
        try:
            return select(engine, "SELECT 2")
        finally:
            recording.inside.reset(token)

    events = assert_same(marked)
    assert statements(events) == []


def test_a_dialect_override_is_marked_while_it_runs(tmp_path):
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    seen = []

    class OverridingDialect(SQLiteDialect_pysqlite):
        def do_execute(self, cursor, statement, parameters, context=None):
            seen.append(recording.inside.get())
            super().do_execute(cursor, statement, parameters, context)

    engine = engine_for_dialect(OverridingDialect, tmp_path / "override.db")
    try:
        select(engine, "SELECT 1")
        events = assert_same(lambda: select(engine, "SELECT ?", 3), before=engine.dispose)
        assert len(statements(events)) == 1
        assert seen[-2:] == [True, True]
    finally:
        engine.dispose()


def test_a_driver_integration_below_decides_the_mark(engine, monkeypatch):
    """With a DB-API integration installed (``below`` not empty), an sqlite3 cursor is no
    driver of theirs: no mark, the same events."""
    monkeypatch.setitem(recording.below, "a driver", "somedriver")
    recording.cursor_reaches_below.clear()
    try:
        assert_same(lambda: select(engine, "SELECT ?", 4))
        assert recording.cursor_reaches_below[sqlite3.Cursor] is False
    finally:
        recording.cursor_reaches_below.clear()


def test_the_mark_is_read_as_python_reads_it(engine, monkeypatch):
    """Whether a cursor's class needs the mark is read from the dictionary directly only while
    its ``__getitem__`` is dict's own: a class that answers itself is asked, as by Python."""
    asked = []

    def getitem(self, cursor_class):
        asked.append(cursor_class)
        return True

    def known_already():  # after install, which forgets every class
        recording.cursor_reaches_below[sqlite3.Cursor] = False  # what a lookup would find

    monkeypatch.setitem(recording.below, "a driver", "somedriver")
    monkeypatch.setattr(type(recording.cursor_reaches_below), "__getitem__", getitem, raising=False)
    try:
        assert_same(lambda: select(engine, "SELECT ?", 5), before=known_already)
        # the recorder's and the reference's, for the statement and for the check-in's
        # ROLLBACK (the connection the pool's proxy holds)
        assert asked == [sqlite3.Cursor, sqlite3.Connection] * 2
    finally:
        recording.cursor_reaches_below.clear()


def test_an_interrupt_while_a_statement_begins_reaches_the_application(engine):
    select(engine, "SELECT 1")
    compiled, reference = run_both(lambda: select(engine, "SELECT 5"), broken=KeyboardInterrupt)
    assert compiled == reference
    assert compiled[0][:2] == ("raised", KeyboardInterrupt)


def test_a_profiler_failure_is_counted_and_the_statement_runs(engine):
    select(engine, "SELECT 1")  # the engine is named: the recorder records its statements
    compiled, reference = run_both(lambda: select(engine, "SELECT 5"), broken=True)
    assert compiled == reference
    assert compiled[0] == ("returned", [(5,)]) and compiled[2][0][2] >= 1


def test_statement_recorders_leak_nothing(engine):
    params = (7,)
    with engine.connect() as conn:
        with ioprofiler.profile(max_events=10):
            for sql in ("SELECT ?", "SELEC ?"):

                def call(sql=sql):
                    try:
                        conn.exec_driver_sql(sql, params).fetchall()
                    except sa.exc.DBAPIError:
                        pass

                for _ in range(20):
                    call()
                gc.collect()  # a failed statement's traceback is a cycle: the collector's
                before = (sys.getrefcount(params), sys.getrefcount(sql), sys.getrefcount(conn))
                for _ in range(200):
                    call()
                gc.collect()
                after = (sys.getrefcount(params), sys.getrefcount(sql), sys.getrefcount(conn))
                assert after == before


# ---- making one ---------------------------------------------------------------------------


def test_bad_construction_is_refused_clearly():
    from ioprofiler import _recorders

    with pytest.raises(TypeError, match="by name"):
        _recorders.cache_get(lambda *a: None)
    with pytest.raises(TypeError, match="unexpected or repeated"):
        _recorders.cache_get(**{f"x{i}": 1 for i in range(13)})
    arguments = dict(
        reference=print,
        active=ContextVar("x"),
        begin=print,
        failed=print,
        done=print,
        profiler_failed=print,
        kind="cache",
        op="get",
        event_class=Event,
        targets={},
        target=print,
        not_found=object(),
        ignored_error="x",
    )
    with pytest.raises(TypeError, match="ContextVar"):
        _recorders.cache_get(**{**arguments, "active": object()})
    with pytest.raises(TypeError, match="targets must be a dict"):
        _recorders.cache_get(**{**arguments, "targets": []})
    recorder = _recorders.cache_get(**arguments)
    with pytest.raises(TypeError, match="wrapper\\(wrapped, instance, args, kwargs\\)"):
        recorder(1, 2)


class ProxyCursor(sqlite3.Cursor):
    """A cursor that says it is another class, as tracers' proxies do."""

    seen: list[bool] = []

    @property
    def __class__(self):  # noqa: PLE0307 - the point of the test
        return sqlite3.Cursor

    def execute(self, *args):
        ProxyCursor.seen.append(recording.inside.get())
        return super().execute(*args)


class ProxyConnection(sqlite3.Connection):
    def cursor(self, factory=ProxyCursor):
        return super().cursor(factory)


def test_the_mark_asks_the_cursor_its_class(tmp_path, monkeypatch):
    """``cursor.__class__``, not its type: this one's type is of a package a driver
    integration records (so it would be marked), but it says it is sqlite3's."""
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'proxy.db'}", connect_args={"factory": ProxyConnection}
    )
    try:
        select(engine, "SELECT 1")
        monkeypatch.setitem(recording.below, "a driver", "tests")
        recording.cursor_reaches_below.clear()
        ProxyCursor.seen.clear()
        assert_same(lambda: select(engine, "SELECT ?", 6))
        assert ProxyCursor.seen == [False, False]
        assert recording.cursor_reaches_below[ProxyCursor] is True  # its type would be marked
    finally:
        recording.cursor_reaches_below.clear()
        engine.dispose()


def test_only_a_recorder_gets_the_direct_call():
    """MethodPatch calls through the capsule only for the Recorder type itself: an object
    that copies the capsule and its switch is called as a wrapt wrapper."""
    from ioprofiler._patch import MethodPatch
    from ioprofiler._recorders import Recorder

    switch = ContextVar("switch", default=False)
    calls = []

    class Impostor:
        _ioprofiler_fastcall = Recorder.__dict__["_ioprofiler_fastcall"]
        active = switch

        def __call__(self, wrapped, instance, args, kwargs):
            calls.append(args)
            return wrapped(*args, **kwargs)

    class Shop:
        def price(self, item):
            return item * 2

    Shop.price = MethodPatch(vars(Shop)["price"], Impostor(), switch)
    token = switch.set(True)
    try:
        assert Shop().price(21) == 42
    finally:
        switch.reset(token)
    assert calls == [(21,)]


# ---- SQLAlchemy's round trips and checkouts -----------------------------------------------


def test_round_trips_and_checkouts_are_recorded_as_the_reference_records_them(tmp_path):
    """COMMIT, the connection's own ROLLBACK, the pool's reset on check-in (``detail``
    True), pool_pre_ping's PING, a failing COMMIT: recorded by the compiled round-trip
    recorder as by its Python wrapper, through the compiled checkout checks."""
    from sqlalchemy.engine.base import Engine
    from sqlalchemy.engine.default import DefaultDialect
    from sqlalchemy.pool import QueuePool

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard08.db'}", pool_pre_ping=True)

    def work():
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT 1")
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            conn.rollback()
        raw = engine.raw_connection()
        raw.cursor().execute("SELECT 1")
        raw.close()

    def failing_commit():
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            conn.connection.dbapi_connection.close()  # the COMMIT fails below SQLAlchemy
            conn.commit()

    try:
        work()
        events = assert_same(work)
        ops = [(e["op"], e.get("detail")) for e in events if e["class"].__name__ == "ConnectionOp"]
        assert ("commit", False) in ops and ("rollback", False) in ops
        assert ("rollback", True) in ops and ("ping", None) in ops
        assert_same(work, max_events=3)
        assert_same(work, nested=True)
        assert_same(failing_commit, before=engine.dispose)
        for owner, name in ((DefaultDialect, "do_rollback"), (Engine, "raw_connection"),
                            (QueuePool, "_do_get")):  # fmt: skip
            patched = vars(owner)[name]
            wrapper = getattr(patched, "_ioprofiler_wrapper", None) or patched._self_wrapper
            assert recorders.is_recorder(wrapper)
    finally:
        engine.dispose()


def test_a_checkout_that_must_wait_and_an_engine_not_named_yet(tmp_path):
    """The checkout checks hand an engine not named yet and an exhausted pool to their
    references: the POOL WAIT and the names are theirs."""
    ioprofiler.uninstall()
    try:
        engine = sa.create_engine(
            f"sqlite:///{tmp_path / 'dbshard09.db'}",
            poolclass=sa.pool.QueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=0.05,
        )
        engine.connect().close()  # its dialect's first connect, before either run
    finally:
        ioprofiler.install()

    def exhausted():
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            try:
                engine.connect()
            except sa.exc.TimeoutError:
                pass

    def forget_engine():
        engine.dispose()
        sqlalchemy_integration._names.pop(id(engine.dialect), None)

    try:
        events = assert_same(exhausted, before=forget_engine)
        assert [e["op"] for e in events].count("pool_wait") == 1
        assert {e["_target"] for e in events} == {"dbshard09"}
    finally:
        engine.dispose()


class DriverConnection(sqlite3.Connection):
    """sqlite3's connection, saying whether ioprofiler's mark was set when SQLAlchemy sent
    it a COMMIT or ROLLBACK (that is, whether the round trip's event holds it)."""

    marks: list[tuple[str, bool]] = []

    def commit(self):
        self.marks.append(("commit", recording.inside.get()))
        return super().commit()

    def rollback(self):
        self.marks.append(("rollback", recording.inside.get()))
        return super().rollback()


DriverConnection.__module__ = "sqlite3"  # a DB-API driver's class, as sqlite3's own is


def test_a_round_trip_is_marked_only_when_something_below_could_record_it(tmp_path, monkeypatch):
    """DefaultDialect's own do_commit and do_rollback send only the DB-API connection's
    commit() and rollback() (through the pool's proxy): no mark while no driver integration
    below records that connection's driver; the mark when one does, and for a dialect's
    override (its super() call). The events are the same either way, compiled or not."""
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    path = tmp_path / "dbshard10.db"

    def connect():
        return sqlite3.connect(path, factory=DriverConnection)

    engine = sa.create_engine("sqlite://", creator=connect)

    class RollbackOverridingDialect(SQLiteDialect_pysqlite):
        def do_rollback(self, dbapi_connection):
            super().do_rollback(dbapi_connection)

    engine_for_dialect(RollbackOverridingDialect, path).dispose()  # registered by its name
    overriding = sa.create_engine("sqlite+rollbackoverridingdialect://", creator=connect)

    def work(engine=engine):
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT 1")
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 2")

    def marks(work) -> set:
        DriverConnection.marks.clear()
        events = assert_same(work, before=lambda: (engine.dispose(), overriding.dispose()))
        ops = [e["op"] for e in events if e["class"].__name__ == "ConnectionOp"]
        assert "commit" in ops and "rollback" in ops
        return set(DriverConnection.marks)

    try:
        work()
        work(overriding)  # each engine's first connect, before either run
        monkeypatch.setitem(recording.below, "a driver", "somedriver")
        recording.cursor_reaches_below.clear()
        assert marks(work) == {("commit", False), ("rollback", False)}
        monkeypatch.setitem(recording.below, "sqlite's", "sqlite3")
        recording.cursor_reaches_below.clear()
        assert marks(work) == {("commit", True), ("rollback", True)}
        monkeypatch.delitem(recording.below, "sqlite's")
        recording.cursor_reaches_below.clear()
        assert ("rollback", True) in marks(lambda: work(overriding))
    finally:
        recording.cursor_reaches_below.clear()
        engine.dispose()
        overriding.dispose()


def test_the_pool_reset_is_told_alike_without_the_frame_reader(tmp_path, monkeypatch):
    """The compiled round trip asks the frame reader whether the pool's reset called it;
    without the reader (a pure-Python callsite) it asks the reference, which walks frames."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard11.db'}")

    def work():
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT 2")

    try:
        work()
        for reader in (sqlalchemy_integration._called_from, None):
            monkeypatch.setattr(sqlalchemy_integration, "_called_from", reader)
            events = assert_same(work)
            details = [(e["op"], e["detail"]) for e in events if e["op"] in ("commit", "rollback")]
            assert ("rollback", True) in details and ("commit", False) in details
    finally:
        engine.dispose()
