"""The trace: context-local, nested, bounded, in start order; threads and tasks kept apart."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

import ioprofiler


@pytest.fixture
def shard(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard01.db'}")
    yield engine
    engine.dispose()


def query(engine, value: int) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT :v"), {"v": value}).all()


def values_in(trace) -> list[int]:
    return [event.params[0] for event in statements(trace)]


def statements(trace) -> list:
    """The statements, without the connects and transaction ends around them."""
    return [event for event in trace.events if event.is_statement]


def test_nothing_is_recorded_outside_a_trace(shard):
    query(shard, 1)
    with ioprofiler.profile() as trace:
        query(shard, 2)
    query(shard, 3)
    assert values_in(trace) == [2]
    assert trace.count() == 1
    assert not trace.recording


def test_events_are_in_start_order_with_offsets_from_the_trace_start(shard):
    with ioprofiler.profile() as trace:
        for value in range(5):
            query(shard, value)
    events = trace.events
    assert values_in(trace) == [0, 1, 2, 3, 4]
    starts = [trace.offset_ms(e) for e in events]
    assert starts == sorted(starts) and starts[0] >= 0
    assert all(e.start_ms == trace.offset_ms(e) for e in events)
    assert all(e.duration_ms is not None and e.duration_ms >= 0 for e in events)
    assert trace.duration_ms() == pytest.approx(sum(e.duration_ms for e in statements(trace)))
    assert trace.elapsed_ms >= trace.duration_ms()


def test_nested_traces_both_see_the_inner_calls(shard):
    with ioprofiler.profile() as outer:
        query(shard, 1)
        with ioprofiler.profile() as inner:
            query(shard, 2)
        query(shard, 3)
    assert values_in(outer) == [1, 2, 3]
    assert values_in(inner) == [2]
    assert ioprofiler.current() is None


def test_a_trace_records_once():
    trace = ioprofiler.profile()
    with trace:
        pass
    with pytest.raises(RuntimeError, match="records once"):
        with trace:
            pass


def test_max_events_keeps_counting_past_the_bound(shard):
    with ioprofiler.profile(max_events=3) as trace:
        for value in range(10):
            query(shard, value)
    # The engine's first connect and the rollback that ends its set-up, then SELECT 0
    assert [e.op for e in trace.events] == ["connect", "rollback", "execute"]
    assert values_in(trace) == [0]
    # not kept: the other 9 statements, and the 10 rollbacks of connections returned
    assert trace.dropped == 9 + 10
    assert trace.count() == 10
    assert trace.count(kind="db", target="dbshard01") == 10
    assert trace.count(kind="db", op="rollback") == 11
    assert trace.duration_ms() > sum(e.duration_ms for e in statements(trace))
    text = trace.text()
    assert "10 queries" in text and "11 rollbacks" in text
    assert "19 calls not kept (max_events reached)" in text


def test_max_events_default_comes_from_configure():
    assert ioprofiler.profile().max_events == 10_000
    ioprofiler.configure(max_events=5)
    try:
        assert ioprofiler.profile().max_events == 5
    finally:
        ioprofiler.configure(max_events=10_000)


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_bad_max_events_is_refused_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="max_events must be a whole number"):
        ioprofiler.profile(max_events=bad)


def test_bad_configure_options_are_refused():
    with pytest.raises(TypeError, match="redact must be True or False"):
        ioprofiler.configure(redact="yes")
    with pytest.raises(TypeError, match="callsite_skip"):
        ioprofiler.configure(callsite_skip="myapp")


def test_threads_do_not_inherit_the_trace(shard):
    with ioprofiler.profile() as trace:
        worker = threading.Thread(target=query, args=(shard, 99))
        worker.start()
        worker.join()
        query(shard, 1)
    assert values_in(trace) == [1]


def test_propagate_runs_pool_work_in_the_trace(shard):
    with ioprofiler.profile() as trace:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(ioprofiler.propagate(lambda v: query(shard, v)), range(20)))
    assert sorted(values_in(trace)) == list(range(20))
    assert trace.count() == 20


def test_two_threads_tracing_at_once_never_mix(shard):
    results: dict[str, list[int]] = {}
    barrier = threading.Barrier(2)

    def run(name: str, base: int) -> None:
        barrier.wait()
        with ioprofiler.profile() as trace:
            for value in range(base, base + 50):
                query(shard, value)
        results[name] = values_in(trace)

    threads = [threading.Thread(target=run, args=(n, b)) for n, b in (("a", 0), ("b", 1000))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"] == list(range(50))
    assert results["b"] == list(range(1000, 1050))


async def test_concurrent_asyncio_tasks_each_keep_their_own_trace(shard):
    async def handler(base: int) -> list[int]:
        with ioprofiler.profile() as trace:
            for value in range(base, base + 20):
                query(shard, value)
                await asyncio.sleep(0)
        return values_in(trace)

    a, b = await asyncio.gather(handler(0), handler(500))
    assert a == list(range(20))
    assert b == list(range(500, 520))


async def test_tasks_created_inside_a_trace_record_into_it(shard):
    async def child(value: int) -> None:
        await asyncio.sleep(0)
        query(shard, value)

    with ioprofiler.profile() as trace:
        await asyncio.gather(child(1), child(2))
    assert sorted(values_in(trace)) == [1, 2]


def test_a_closed_trace_takes_no_more_events(shard):
    with ioprofiler.profile() as trace:
        query(shard, 1)
        late = ioprofiler.propagate(lambda: query(shard, 2))
    late()
    assert values_in(trace) == [1]


def test_callsite_is_the_first_application_frame(shard):
    def load_listing():
        query(shard, 7)

    with ioprofiler.profile() as trace:
        load_listing()
    site = trace.events[0].callsite
    assert site.startswith("tests/test_trace.py:") or "test_trace.py:" in site
    assert site.endswith(" in query")


def test_callsite_skip_moves_the_callsite_up(shard):
    ioprofiler.configure(callsite_skip=[__name__])
    try:
        with ioprofiler.profile() as trace:
            query(shard, 7)
    finally:
        ioprofiler.configure(callsite_skip=[])
    assert "test_trace.py" not in (trace.events[0].callsite or "")


def test_listing_lines_have_the_tcpdump_form(shard):
    with ioprofiler.profile() as trace:
        query(shard, 5773453)
    line = statements(trace)[0].line()
    assert line.startswith("[dbshard01] ")
    assert line.endswith(" ms SELECT 5773453")
    duration = line.split()[1]
    assert len(duration.split(".")[1]) == 3


def test_traces_closed_out_of_order_leave_the_others_recording(shard):
    outer = ioprofiler.profile().__enter__()
    inner = ioprofiler.profile().__enter__()
    outer.close()
    query(shard, 1)
    assert ioprofiler.current() is inner
    inner.close()
    assert ioprofiler.current() is None
    assert values_in(inner) == [1] and values_in(outer) == []


def test_a_trace_closed_from_another_thread_stops_recording_here(shard):
    with ioprofiler.profile() as trace:
        query(shard, 1)
        closer = threading.Thread(target=trace.close)
        closer.start()
        closer.join()
        query(shard, 2)
        assert ioprofiler.current() is None
    assert values_in(trace) == [1]


def test_reading_a_trace_while_threads_overflow_it(shard):
    errors = []
    trace = ioprofiler.profile(max_events=5)
    with trace:
        record = ioprofiler.propagate(lambda: [query(shard, v) for v in range(200)])
        workers = [threading.Thread(target=record) for _ in range(4)]
        for worker in workers:
            worker.start()
        while any(w.is_alive() for w in workers):
            try:
                trace.count(), trace.dropped, trace.overflow(), trace.duration_ms()
            except Exception as exc:  # pragma: no cover - the failure being tested for
                errors.append(exc)
        for worker in workers:
            worker.join()
    assert errors == []
    rollbacks, connects = trace.count(op="rollback"), trace.count(op="connect")
    # 800 returned to the pool, 1 ending the engine's set-up on its first connect
    assert trace.count() == 800 and rollbacks == 801 and 1 <= connects <= 4
    assert len(trace.events) == 5 and trace.dropped == 800 + rollbacks + connects - 5


def test_count_by_target_is_exact_for_shards(tmp_path):
    engines = [sa.create_engine(f"sqlite:///{tmp_path / n}.db") for n in ("a", "b")]
    ioprofiler.label(engines[0], "dbshard01")
    ioprofiler.label(engines[1], "dbshard01 replica")
    with ioprofiler.profile() as trace:
        for engine in engines:
            query(engine, 1)
    assert trace.count(target="dbshard01") == 1
    assert trace.count(target="dbshard01 replica") == 1


def test_the_first_recorded_call_imports_nothing(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys, sqlite3\n"
        "import ioprofiler\n"
        "ioprofiler.install(only=['sqlalchemy'])\n"
        "import sqlalchemy as sa\n"
        f"e = sa.create_engine('sqlite:///{tmp_path}/x.db')\n"
        "before = set(sys.modules)\n"
        "with ioprofiler.profile() as t, e.connect() as c:\n"
        "    c.exec_driver_sql('SELECT 1')\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
        "('pymemcache', 'greenlet', 'wrapt', 'aiosqlite')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_trace_renders_itself_with_rich(shard):
    from io import StringIO

    from rich.console import Console

    with ioprofiler.profile() as trace:
        query(shard, 5773453)
    out = StringIO()
    Console(file=out, width=200, color_system=None).print(trace)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("[dbshard01] ") and " ms CONNECT " in lines[1]
    assert lines[3].startswith("[dbshard01] ") and lines[3].endswith(" ms SELECT 5773453")


def test_callsites_through_a_skipped_dispatcher_name_the_real_caller(shard, tmp_path, monkeypatch):
    (tmp_path / "dispatch_helpers.py").write_text(
        "def run(fn, *args):\n    return fn(*args)\n"  # a retry/repository helper: skipped
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import dispatch_helpers

    ioprofiler.configure(callsite_skip=["dispatch_helpers"])

    def app_x():
        dispatch_helpers.run(query, shard, 1)

    def app_helper(engine, value):
        query(engine, value)

    def app_y():
        dispatch_helpers.run(app_helper, shard, 2)

    with ioprofiler.profile() as trace:
        for _ in range(2):
            app_x()
            app_y()
    sites = [e.callsite.rsplit(" in ", 1)[1] for e in statements(trace)]
    assert sites == ["query", "query", "query", "query"]  # query() is this module's: shown
    ioprofiler.configure(callsite_skip=["dispatch_helpers", f"{__name__}:query"])
    with ioprofiler.profile() as trace:
        for _ in range(2):
            app_x()
            app_y()
    sites = [e.callsite.rsplit(" in ", 1)[1] for e in statements(trace)]
    assert sites == ["app_x", "app_helper", "app_x", "app_helper"]


def test_skipping_a_single_file_module_does_not_skip_its_folder(shard, tmp_path, monkeypatch):
    (tmp_path / "dbutil.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ioprofiler.configure(callsite_skip=["dbutil"])
    with ioprofiler.profile() as trace:
        query(shard, 1)
    assert trace.events[0].callsite.endswith(" in query")


def test_orm_flushes_are_not_attributed_to_generated_code(sqlite_shards):
    from sqlalchemy.orm import Session

    from tests.test_sqlalchemy import FavoriteListingUser

    def save_favorite():
        with Session(sqlite_shards["dbshard01"]) as session:
            session.add(FavoriteListingUser(listing_id=1, user_id=2))
            session.commit()

    with ioprofiler.profile() as trace:
        save_favorite()
    sites = [e.callsite for e in trace.events]
    assert sites and all(site.endswith(" in save_favorite") for site in sites), sites


def test_callsites_render_when_the_working_directory_is_gone(shard, tmp_path, monkeypatch):
    doomed = tmp_path / "gone"
    doomed.mkdir()
    monkeypatch.chdir(doomed)
    doomed.rmdir()
    with ioprofiler.profile() as trace:
        query(shard, 1)
    assert "test_trace.py:" in trace.text(callsites=True)


def test_a_call_leaves_the_other_traces_as_the_call_left_them():
    """Trace.call takes out its own trace and nothing else: when the call opened another
    trace, or the trace was open already, the others stay."""
    from ioprofiler.trace import Trace, active

    outer, inner, other = Trace(), Trace().start(), Trace().start()
    token = active.set(())

    def opens_another():
        active.set(active.get() + (other,))

    inner.call(opens_another)
    assert active.get() == (other,)
    active.set(())
    with outer:
        assert inner.call(active.get) == (outer, inner)
        assert active.get() == (outer,)
        assert outer.call(active.get) == (outer, outer)
        assert active.get() == ()  # the trace called again is taken out, as before
    active.reset(token)


def test_the_traces_lock_is_free_in_a_forked_child():
    """One lock guards every trace's tallies past max_events; a child forked while another
    thread held it gets a free one."""
    import os

    from ioprofiler.trace import Trace

    with Trace._lock:
        pid = os.fork()
        if pid == 0:
            acquired = Trace._lock.acquire(timeout=5)
            os._exit(0 if acquired else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
