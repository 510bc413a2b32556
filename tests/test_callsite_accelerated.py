"""The compiled callsite lookup (ioprofiler._speedups) answers exactly as the pure-Python one.

Each scenario runs three ways on real libraries and servers: accelerated alone (the frames
above never made into frame objects), pure Python alone, and both side by side at the same
call. The callsites must be the same (code object and line), and the accelerated lookup must
have answered most calls itself rather than handing them to the pure path.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from pymemcache.client.base import Client

import ioprofiler
from ioprofiler import callsite, compiled
from tests import test_redis

# test_redis's fixtures: a Redis database this test session claims for itself
redis_db, r = test_redis.redis_db, test_redis.r

ROOT = Path(__file__).resolve().parent.parent

needs_speedups = pytest.mark.skipif(
    not callsite.accelerated, reason="ioprofiler._speedups is not built or not in use here"
)


def test_the_accelerator_is_built_where_it_can_be():
    """`make test` builds it on CPython 3.10 to 3.13 with a GIL (CI requires it:
    IOPROFILER_REQUIRE_SPEEDUPS)."""
    supported = (
        sys.implementation.name == "cpython"
        and (3, 10) <= sys.version_info[:2] <= (3, 13)
        and not compiled.free_threaded()
    )
    if os.environ.get("IOPROFILER_PURE_PYTHON", "") not in ("", "0"):
        assert not callsite.accelerated
    elif not supported:
        assert not callsite.accelerated
    elif os.environ.get("IOPROFILER_REQUIRE_SPEEDUPS") == "1":
        assert callsite.accelerated, "ioprofiler._speedups was not built: is a C compiler there?"
    elif not callsite.accelerated:
        pytest.skip("ioprofiler._speedups not built (no C compiler?): pure Python")


# -- running a scenario three ways ------------------------------------------------------


def _named(sites: list) -> list[tuple[str, str, int | None] | None]:
    return [None if s is None else (Path(s[0].co_filename).name, s[0].co_name, s[1]) for s in sites]


@dataclass
class Comparison:
    side_by_side: list[tuple[object, object]] = field(default_factory=list)
    asked_python: int = 0


def _install_slow(slow: Callable[[int], object]) -> None:
    from ioprofiler import _speedups

    _speedups.install(
        callsite._hints,
        callsite._is_library,
        slow,
        callsite._parent_greenlet_frame,
        callsite._awaiting_site,
    )


@pytest.fixture
def same_sites(monkeypatch) -> Iterator[Callable[..., list]]:
    """``same_sites(scenario)``: run ``scenario(trace_sites)`` accelerated, pure and side by
    side, assert the callsites agree, and return them as (file, function, line)."""
    if not callsite.accelerated:
        pytest.skip("ioprofiler._speedups is not built or not in use here")
    from ioprofiler import _speedups

    fast, pure = _speedups.find, callsite._find_pure
    comparison = Comparison()

    def slow(depth: int) -> object:  # called by the C lookup as find() would be
        comparison.asked_python += 1
        return pure(depth + 1)

    def both(depth: int) -> object:
        answer = fast(depth + 1)
        comparison.side_by_side.append((answer, pure(depth + 1)))
        return answer

    def run(scenario: Callable[[], list], find: Callable[[int], object], times: int) -> list:
        monkeypatch.setattr(callsite, "find", find)
        callsite.forget()
        return [site for _ in range(times) for site in scenario()]

    def check(scenario: Callable[[], list], times: int = 3) -> list:
        _install_slow(slow)
        comparison.side_by_side.clear()
        comparison.asked_python = 0
        accelerated = run(scenario, fast, times)
        asked_alone = comparison.asked_python
        pure_sites = run(scenario, pure, times)
        assert _named(accelerated) == _named(pure_sites)
        assert accelerated == pure_sites
        paired = run(scenario, both, times)
        assert paired == accelerated
        differ = [pair for pair in comparison.side_by_side if pair[0] != pair[1]]
        assert not differ, [(_named([a]), _named([b])) for a, b in differ]
        # warm, the C lookup answers by itself: only the first run's new frames went to Python
        assert asked_alone <= len(accelerated) // times, (asked_alone, len(accelerated))
        return _named(accelerated[: len(accelerated) // times])

    yield check
    _install_slow(pure)
    callsite.forget()


def recorded_sites(run: Callable[[], object]) -> Callable[[], list]:
    def scenario() -> list:
        with ioprofiler.profile() as trace:
            run()
        return [event._site for event in trace.events]

    return scenario


def functions(sites: list) -> list[str]:
    return [site[1] for site in sites]


# -- SQLAlchemy ---------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'accel.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.exec_driver_sql("INSERT INTO t (v) VALUES (1), (2), (3)")
    yield engine
    engine.dispose()


def select(conn: sa.Connection, value: int) -> object:
    return conn.execute(sa.text("SELECT :v"), {"v": value}).scalar_one()


def test_sqlalchemy_core_and_orm(same_sites, engine):
    from sqlalchemy.orm import Session

    metadata = sa.MetaData()
    table = sa.Table(
        "t", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Integer)
    )

    def core() -> None:
        with engine.connect() as conn:
            select(conn, 1)
            conn.execute(sa.select(table).where(table.c.v > 1)).all()
            conn.exec_driver_sql("SELECT 2").all()

    def orm() -> None:
        with Session(engine) as session:
            session.execute(sa.select(table)).all()
            session.execute(sa.update(table).where(table.c.id == 1).values(v=9))
            session.commit()

    sites = same_sites(recorded_sites(lambda: (core(), orm())))
    assert {"select", "core", "orm"} <= set(functions(sites)), sites


def test_sqlalchemy_asyncio_crosses_the_greenlet(same_sites, tmp_path):
    from sqlalchemy.ext.asyncio import create_async_engine

    async def load(conn, value: int) -> object:
        return (await conn.execute(sa.text("SELECT :v"), {"v": value})).scalar_one()

    async def page() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}")
        async with engine.connect() as conn:
            await load(conn, 1)
            await load(conn, 2)
            await conn.execute(sa.text("SELECT 3"))
        await engine.dispose()

    sites = same_sites(recorded_sites(lambda: asyncio.run(page())))
    assert functions(sites).count("load") == 2 and "page" in functions(sites), sites


# -- caches --------------------------------------------------------------------------------


def test_pymemcache(same_sites, memcached):
    client = Client(memcached.address, default_noreply=False)

    def cache_page() -> None:
        client.close()  # every run connects: the same events each time
        client.set("accel", b"x")
        client.get("accel")
        client.get_many(["accel", "missing"])
        client.delete("accel")

    try:
        sites = same_sites(recorded_sites(cache_page))
    finally:
        client.close()
    assert set(functions(sites)) == {"cache_page"}, sites


def test_redis(same_sites, r):
    def cache_page() -> None:
        r.set("accel", "x")
        r.get("accel")
        with r.pipeline() as pipe:
            pipe.get("accel").delete("accel").execute()

    sites = same_sites(recorded_sites(cache_page))
    assert sites and set(functions(sites)) == {"cache_page"}, sites


# -- callsite_skip ---------------------------------------------------------------------------


def test_callsite_skip_by_module_and_by_function(same_sites, engine, tmp_path, monkeypatch):
    (tmp_path / "accel_helpers.py").write_text(
        "def run(fn, *args):\n    return fn(*args)\n\n\ndef repository(conn):\n"
        "    return conn.exec_driver_sql('SELECT 7').all()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import accel_helpers

    def view() -> None:
        with engine.connect() as conn:
            accel_helpers.run(select, conn, 1)
            accel_helpers.repository(conn)

    ioprofiler.configure(callsite_skip=["accel_helpers"])
    sites = same_sites(recorded_sites(view))
    assert set(functions(sites)) == {"select", "view"}, sites
    ioprofiler.configure(callsite_skip=["accel_helpers", f"{__name__}:select"])
    sites = same_sites(recorded_sites(view))
    assert set(functions(sites)) == {"view"}, sites
    ioprofiler.configure(callsite_skip=["accel_helpers:run"])
    sites = same_sites(recorded_sites(view))
    assert set(functions(sites)) == {"select", "repository", "view"}, sites


# -- the shapes of stacks ----------------------------------------------------------------------


def test_deep_stacks_and_recursion(same_sites, engine):
    def recurse(conn, depth: int) -> None:
        if depth % 50 == 0:
            select(conn, depth)
        if depth:
            recurse(conn, depth - 1)

    def deep() -> None:
        with engine.connect() as conn:
            recurse(conn, 300)

    sites = same_sites(recorded_sites(deep))
    assert functions(sites).count("select") == 7, sites


def test_generators_and_coroutines(same_sites, engine):
    def rows(conn):
        for value in range(3):
            yield conn.exec_driver_sql(f"SELECT {value}").scalar_one()

    async def coroutine(conn) -> object:
        return conn.exec_driver_sql("SELECT 10").scalar_one()

    async def agen(conn):
        yield conn.exec_driver_sql("SELECT 11").scalar_one()

    def driver() -> None:
        with engine.connect() as conn:
            list(rows(conn))
            step = coroutine(conn)
            with pytest.raises(StopIteration):
                step.send(None)
            stream = agen(conn).__aiter__()
            with pytest.raises(StopIteration):
                stream.__anext__().send(None)
            list(conn.exec_driver_sql(f"SELECT {v}").scalar_one() for v in range(2))

    sites = same_sites(recorded_sites(driver))
    assert functions(sites).count("rows") == 3, sites
    assert {"coroutine", "agen", "<genexpr>"} <= set(functions(sites)), sites


def test_exec_d_code(same_sites, engine):
    namespace = {"engine": engine, "sa": sa}
    code = compile(
        textwrap.dedent(
            """
            def generated():
                with engine.connect() as conn:
                    return conn.exec_driver_sql("SELECT 1").all()
            """
        ),
        "<generated>",
        "exec",
    )
    exec(code, namespace)
    sites = same_sites(recorded_sites(namespace["generated"]))
    assert sites and sites[-1][:2] == ("<generated>", "generated"), sites


def test_a_frame_whose_line_changes_between_calls(same_sites, engine):
    def loop() -> None:
        with engine.connect() as conn:
            for value in range(4):
                if value % 2:
                    conn.exec_driver_sql("SELECT 1").all()
                else:
                    conn.exec_driver_sql("SELECT 2").all()

    sites = same_sites(recorded_sites(loop))
    lines = [line for _, name, line in sites if name == "loop"]
    assert lines[0] == lines[2] != lines[1] == lines[3], sites  # then the rollback at `with`


def test_under_a_tracer(same_sites, engine):
    """A tracer (coverage, a debugger) sets frames' f_lineno; the answer stays the same."""

    def tracer(frame, event, arg):
        return tracer

    def traced() -> None:
        sys.settrace(tracer)
        try:
            with engine.connect() as conn:
                select(conn, 1)
                conn.exec_driver_sql("SELECT 2").all()
        finally:
            sys.settrace(None)

    sites = same_sites(recorded_sites(traced))
    assert {"select", "traced"} <= set(functions(sites)), sites


def test_io_made_by_a_tracer_names_the_traced_line(same_sites, engine):
    """While a tracer runs, the traced frame's line is the one the tracer was given."""
    ioprofiler.configure(callsite_skip=[f"{__name__}:io_tracer"])
    conn = engine.connect()

    def io_tracer(frame, event, arg):
        if event == "line" and frame.f_code is traced.__code__:
            conn.exec_driver_sql("SELECT 1").all()
        return io_tracer if event == "call" and frame.f_code is traced.__code__ else None

    def traced() -> int:
        total = 1
        total += 1
        return total

    def scenario() -> list:
        with ioprofiler.profile() as trace:
            sys.settrace(io_tracer)
            try:
                traced()
            finally:
                sys.settrace(None)
        return [event._site for event in trace.events]

    try:
        sites = same_sites(scenario)
    finally:
        conn.close()
    first = traced.__code__.co_firstlineno
    assert sites == [
        ("test_callsite_accelerated.py", "traced", first + 1),
        ("test_callsite_accelerated.py", "traced", first + 2),
        ("test_callsite_accelerated.py", "traced", first + 3),
    ], sites


def test_threads(same_sites, engine):
    def worker(value: int) -> None:
        with engine.connect() as conn:
            for _ in range(5):
                select(conn, value)

    def threaded() -> None:
        def run(value: int) -> None:
            with ioprofiler.profile() as trace:
                worker(value)
            # statements only: how many connections the pool opens depends on the timing
            found.extend(event._site for event in trace.events if event.is_statement)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    found: list = []

    def scenario() -> list:
        found.clear()
        threaded()
        return sorted(found, key=lambda site: (site[0].co_name, site[1]))

    sites = same_sites(scenario)
    assert functions(sites).count("select") == 20, sites


@needs_speedups
def test_a_stack_shallower_than_the_depth():
    from ioprofiler import _speedups

    assert _speedups.find(10_000) is None
    assert callsite._find_pure(10_000) is None
    with pytest.raises(TypeError):
        _speedups.find("1")


# -- what the compiled lookup remembers -----------------------------------------------------


@needs_speedups
def test_more_callsites_than_its_memory_holds():
    """Past its tables' size the compiled lookup starts again, answering as before: the very
    site tuple the pure lookup shares between events, for each of 5,000 functions, twice."""
    from ioprofiler import _speedups

    source = "\n".join(f"def f{n}(find):\n    return find(0)\n" for n in range(5000))
    namespace: dict = {}
    exec(compile(source, "<many callsites>", "exec"), namespace)
    callers = [namespace[f"f{n}"] for n in range(5000)]
    callsite.forget()
    for _ in range(2):
        for caller in callers:
            fast, pure = caller(_speedups.find), caller(callsite._find_pure)
            assert fast is pure, (fast, pure)
            assert fast == (caller.__code__, caller.__code__.co_firstlineno + 1)


@needs_speedups
def test_configure_changes_what_it_remembered(tmp_path, monkeypatch):
    """configure(callsite_skip=...) reaches the compiled lookup's memory, not only callsite's."""
    from ioprofiler import _speedups

    (tmp_path / "accel_remembered.py").write_text("def helper(find):\n    return find(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import accel_remembered

    def caller() -> object:
        return accel_remembered.helper(_speedups.find)

    try:
        ioprofiler.configure(callsite_skip=[])
        assert caller()[0] is accel_remembered.helper.__code__
        assert caller()[0] is accel_remembered.helper.__code__  # answered from its memory
        ioprofiler.configure(callsite_skip=["accel_remembered"])
        assert caller()[0] is caller.__code__
        ioprofiler.configure(callsite_skip=[])
        assert caller()[0] is accel_remembered.helper.__code__
    finally:
        ioprofiler.configure(callsite_skip=[])


# -- without the accelerator -----------------------------------------------------------------

PROBE = textwrap.dedent(
    """
    import sqlalchemy as sa, ioprofiler
    from ioprofiler import callsite, recording

    def app(engine):
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT 1").all()

    ioprofiler.install()
    engine = sa.create_engine("sqlite://")
    with ioprofiler.profile() as trace:
        app(engine)
        app(engine)
    compiled_begin = recording.compiled_begin and recording.begin is not recording.begin_pure
    sites = sorted({e.callsite.rsplit(" in ", 1)[1] for e in trace.events})
    print(callsite.accelerated, compiled_begin, sites)
    """
)


def _probe(env: dict[str, str], prelude: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-c", prelude + PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return result.stdout.strip()


def test_forcing_pure_python_by_environment():
    assert _probe({"IOPROFILER_PURE_PYTHON": "1"}) == "False False ['app']"


def test_works_with_the_accelerator_absent():
    hide = "import sys; sys.modules['ioprofiler._speedups'] = None\n"  # import raises ImportError
    assert _probe({"IOPROFILER_PURE_PYTHON": ""}, hide) == "False False ['app']"


@needs_speedups
def test_accelerated_in_a_fresh_process():
    assert _probe({"IOPROFILER_PURE_PYTHON": "0"}) == "True True ['app']"
