"""Findings: each kind on a real workload made for it, and not on its near miss."""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from pymemcache.client.base import Client

import ioprofiler
from ioprofiler.findings import KINDS, WAIT_OPS, find
from ioprofiler.thresholds import Thresholds

COUNT = sa.text("SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :id")


def count(engine: sa.Engine, listing_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(COUNT, {"id": listing_id}).scalar_one()


def sleep_on(engine: sa.Engine, seconds: float) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT sleep(:s)"), {"s": seconds}).scalar_one()


@pytest.fixture
def shards(sqlite_shards):
    """The four SQLite shards, each with a sleep(seconds) function, as MySQL has SLEEP()."""

    def add_sleep(dbapi_connection, record):
        dbapi_connection.create_function("sleep", 1, lambda s: time.sleep(s) or 0)

    for engine in sqlite_shards.values():
        sa.event.listen(engine, "connect", add_sleep)
        engine.dispose()
    return sqlite_shards


@pytest.fixture
def cache(memcached):
    client = Client(memcached.address, default_noreply=False)
    client.flush_all()
    yield client
    client.close()


def statements(trace) -> list:
    """The trace's statements, without the connects and pool resets around them."""
    return [e for e in trace.events if e.is_statement]


# What a busy machine's stalls can add to any trace (2 cores shared by many test runs):
# tests of the other kinds leave these out; their own tests below look at them.
TIMING = {"slow_call", "unexplained_time", "waits"}
# The thresholds of those kinds set out of reach: with them no load makes one, and a test may
# ask for every finding of its workload, not only the others.
OUT_OF_REACH = {"slow_ms": 1e9, "dominant_ms": 1e9, "waits_ms": 1e9, "unexplained_request_ms": 1e9}


def kinds(trace, timing: bool = False) -> list[str]:
    """The kinds found, costliest first; without ``timing``, those of :data:`TIMING` left out."""
    return [f.kind for f in find(trace) if timing or f.kind not in TIMING]


def only(trace, kind: str):
    (finding,) = [f for f in find(trace) if f.kind == kind]
    return finding


# -- N+1 --------------------------------------------------------------------------------------


def test_n_plus_one_is_five_values_of_one_shape_and_names_its_callsite(shards):
    with ioprofiler.profile() as trace:
        for listing_id in range(1, 6):
            count(shards["dbshard01"], listing_id)
    finding = only(trace, "n_plus_one")
    assert finding.events == tuple(statements(trace))
    assert finding.message.startswith(
        "N+1: SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ? ran 5× on dbshard01 ("
    )
    assert "<- tests/test_findings.py:" in finding.message and "in count" in finding.message
    assert finding.ms == pytest.approx(sum(e.duration_ms for e in statements(trace)))
    assert "IN (…)" in finding.hint


def test_four_values_or_a_cheap_loop_is_not_an_n_plus_one(shards):
    with ioprofiler.profile() as trace:
        for listing_id in range(1, 5):
            count(shards["dbshard01"], listing_id)
    assert kinds(trace) == []
    with ioprofiler.profile() as trace:
        for listing_id in range(1, 6):
            count(shards["dbshard01"], listing_id)
    assert kinds(trace) == ["n_plus_one"]
    ioprofiler.configure(findings={"n_plus_one_ms": 60_000.0})
    assert kinds(trace) == []


def test_an_n_plus_one_across_shards_is_one_finding(shards):
    with ioprofiler.profile() as trace:
        for listing_id in range(6):
            count(shards[f"dbshard0{listing_id % 3 + 1}"], listing_id)
    finding = only(trace, "n_plus_one")
    assert "ran 6× on dbshard01, dbshard02, dbshard03" in finding.message
    assert "serial_fanout" not in kinds(trace)


class HashCountingCode:
    """A code object's stand-in that counts how often it is hashed."""

    def __init__(self, code) -> None:
        self.code = code
        self.hashes = 0

    def __getattr__(self, name: str):
        return getattr(self.code, name)

    def __hash__(self) -> int:
        self.hashes += 1
        return hash(self.code)


def test_findings_and_repeats_never_hash_the_code_of_a_callsite(shards):
    """Hashing a code object hashes its constants: 10,000 calls from a module-level loop
    of a long script spent most of ``find()`` there (benchmarks/findings.py, ``module``)."""
    from ioprofiler.analysis import summarize

    with ioprofiler.profile() as trace:
        for listing_id in range(1, 7):
            count(shards["dbshard01"], listing_id)
    code, line = statements(trace)[0]._site
    counting = HashCountingCode(code)
    for event in trace.events:
        if event._site is not None and event._site[0] is code:
            event._site = (counting, event._site[1])
    finding = only(trace, "n_plus_one")
    (repeat,) = summarize(trace).repeats
    assert counting.hashes == 0
    assert finding.message.endswith(f" <- tests/test_findings.py:{line} in count")
    assert repeat.callsites == [f"tests/test_findings.py:{line} in count"]


# -- duplicates -------------------------------------------------------------------------------


def test_the_same_statement_with_the_same_values_twice_is_a_duplicate(shards):
    with ioprofiler.profile() as trace:
        count(shards["dbshard02"], 5773453)
        count(shards["dbshard02"], 7)
        count(shards["dbshard02"], 5773453)
    finding = only(trace, "duplicate")
    first, _, third = statements(trace)
    assert finding.events == (first, third)
    assert "ran twice with the same values on dbshard02" in finding.message
    assert finding.ms == pytest.approx(third.duration_ms)


def test_the_same_statement_on_two_shards_or_with_other_values_is_no_duplicate(shards):
    with ioprofiler.profile() as trace:
        count(shards["dbshard02"], 5773453)
        count(shards["dbshard03"], 5773453)
        count(shards["dbshard02"], 7)
    assert "duplicate" not in kinds(trace)


def test_a_cache_key_read_twice_is_a_duplicate(cache):
    cache.set("listing:5773453", b"x")
    with ioprofiler.profile() as trace:
        cache.get("listing:5773453")
        cache.get_many(["listing:1", "listing:5773453"])
    finding = only(trace, "duplicate")
    assert finding.message.startswith(
        "duplicate: cache key listing:5773453 read twice on memcache ("
    )
    assert finding.events == tuple(trace.events)


def test_different_keys_and_a_read_after_a_write_only_are_no_duplicate(cache):
    with ioprofiler.profile() as trace:
        cache.get("listing:1")
        cache.set("listing:1", b"x")
        cache.get_many(["listing:2", "listing:3"])
        cache.delete("listing:1")
    assert kinds(trace) == []


# -- serial fan-out ---------------------------------------------------------------------------


def test_one_query_per_shard_in_series_is_a_serial_fan_out(shards):
    with ioprofiler.profile() as trace:
        for name in ("dbshard01", "dbshard02", "dbshard03", "dbshard04"):
            sleep_on(shards[name], 0.005)
    finding = only(trace, "serial_fanout")
    durations = [e.duration_ms for e in statements(trace)]
    assert finding.ms == pytest.approx(sum(durations) - max(durations))
    assert finding.ms > 10  # three of the four 5 ms sleeps
    assert "sent to 4 shards one after another" in finding.message
    assert kinds(trace) == ["serial_fanout"]


def test_the_same_fan_out_run_concurrently_is_not_a_finding(shards):
    names = ("dbshard01", "dbshard02", "dbshard03", "dbshard04")
    start = threading.Barrier(len(names))

    def load(name: str) -> None:
        start.wait()
        sleep_on(shards[name], 0.05)

    with ioprofiler.profile() as trace, ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(ioprofiler.propagate(load), names))
    assert trace.count(kind="db") == 4
    assert "serial_fanout" not in kinds(trace)


# -- slow calls -------------------------------------------------------------------------------


def slowest_call(trace):
    """The longest call of ``trace`` that a slow-call finding may name (no wait)."""
    return max((e for e in trace.events if e.op not in WAIT_OPS), key=lambda e: e.duration_ms)


def slow_calls(trace, **thresholds: float) -> list[tuple]:
    """The events of ``trace``'s slow-call findings under ``thresholds`` (slow_ms out of reach)."""
    limits = Thresholds(**{"slow_ms": 1e9, **thresholds})
    return [f.events for f in find(trace, limits) if f.kind == "slow_call"]


def test_a_call_over_slow_ms_is_slow(shards):
    with ioprofiler.profile() as trace:
        count(shards["dbshard01"], 1)
        sleep_on(shards["dbshard03"], 0.12)
    sleep = statements(trace)[1]
    # every call past slow_ms is one (a stall of the busy machine may stretch another)
    slow_ms = Thresholds().slow_ms
    past = {(e,) for e in trace.events if e.op not in WAIT_OPS and e.duration_ms >= slow_ms}
    assert {f.events for f in find(trace) if f.kind == "slow_call"} == past
    (finding,) = [f for f in find(trace) if f.events == (sleep,)]
    assert finding.message.startswith("slow call: 1")
    assert " ms on dbshard03: SELECT sleep(?)" in finding.message
    # under slow_ms, still a finding as the request's dominant call (half of it, or the
    # share it took when a stall elsewhere made that less)
    share = slowest_call(trace).duration_ms / trace.elapsed_ms
    assert slow_calls(trace, dominant_share=min(0.5, share * 0.999)) == [(slowest_call(trace),)]


def test_the_slowest_call_is_a_finding_when_it_dominates_the_request(shards):
    # A call under slow_ms that dominates: 250 ms under a slow_ms of 10 s, so a busy
    # machine (the pool's first connect, descheduling) cannot take half the request.
    with ioprofiler.profile() as trace:
        sleep_on(shards["dbshard03"], 0.25)
    (finding,) = [f for f in find(trace, slow_ms=10_000.0) if f.kind == "slow_call"]
    assert "% of the request" in finding.message


def test_a_short_call_or_one_that_does_not_dominate_is_not_slow(shards):
    # The thresholds are set just beside the measured times: a stall of the busy machine
    # stretches a call, the rule holds on either side of its edge all the same.
    with ioprofiler.profile() as trace:
        sleep_on(shards["dbshard03"], 0.001)  # short
    slowest = slowest_call(trace)
    ms = slowest.duration_ms
    assert slow_calls(trace, dominant_ms=ms * 1.001, dominant_share=0.0) == []
    assert slow_calls(trace, dominant_ms=ms * 0.999, dominant_share=0.0) == [(slowest,)]

    with ioprofiler.profile() as trace:
        sleep_on(shards["dbshard03"], 0.025)
        time.sleep(0.1)  # the query is about a fifth of the request: diluted
    slowest = slowest_call(trace)
    share = slowest.duration_ms / trace.elapsed_ms
    assert slow_calls(trace, dominant_ms=0.0, dominant_share=share * 1.001) == []
    assert slow_calls(trace, dominant_ms=0.0, dominant_share=share * 0.999) == [(slowest,)]


def test_a_slow_cache_call_names_its_key_except_where_keys_are_not_kept(cache):
    with ioprofiler.profile() as trace:
        cache.get("user:private-key")
    (finding,) = find(trace, slow_ms=0.0)
    assert finding.kind == "slow_call" and "user:private-key" in finding.message
    assert "private" not in finding.without_keys and "get of 1 key" in finding.without_keys


# -- cache misses that went to the database, hit ratio ----------------------------------------


def page_through_the_cache(cache, engine, listing_ids) -> None:
    for listing_id in listing_ids:
        key = f"favorites:{listing_id}"
        if cache.get(key) is None:
            cache.set(key, str(count(engine, listing_id)).encode())


def test_misses_filled_from_the_database_three_times_are_a_finding(cache, shards):
    with ioprofiler.profile() as cold:
        page_through_the_cache(cache, shards["dbshard01"], [1, 2, 3])
    finding = only(cold, "cache_misses")
    assert finding.message.startswith(
        "cache misses went to the database: 3 keys missed and filled by 3 queries ("
    )
    assert "hit ratio 0% (0 of 3 keys found) <- tests/test_findings.py:" in finding.message
    assert len(finding.events) == 9  # each miss, its query and its fill
    assert finding.ms == pytest.approx(sum(e.duration_ms for e in statements(cold)))
    with ioprofiler.profile() as warm:
        page_through_the_cache(cache, shards["dbshard01"], [1, 2, 3])
    assert kinds(warm) == []
    from ioprofiler.render.html import render_panel

    item = re.search(r'<li id="f\d+" data-kind="cache_misses">(.*?)<br>', render_panel(cold))
    assert item is not None and item.group(1).startswith(
        '<b class="n1">cache misses went to the database</b> 3 keys missed and filled by 3 q'
    )


def test_two_misses_filled_or_misses_left_unfilled_are_not_that_finding(cache, shards):
    with ioprofiler.profile() as trace:
        page_through_the_cache(cache, shards["dbshard01"], [1, 2])
        for listing_id in (3, 4, 5):
            cache.get(f"other:{listing_id}")
            count(shards["dbshard01"], listing_id)
    assert "cache_misses" not in kinds(trace)


def test_a_low_hit_ratio_over_ten_keys_is_a_finding(cache):
    cache.set_many({f"k{i}": b"v" for i in range(4)})
    with ioprofiler.profile() as trace:
        cache.get_many([f"k{i}" for i in range(10)])
    finding = only(trace, "low_hit_ratio")
    assert finding.message == (
        f"low hit ratio: 40% (4 of 10 keys found) <- {trace.events[0].callsite}"
    )


def test_half_the_keys_found_or_fewer_than_ten_read_is_no_low_hit_ratio(cache):
    cache.set_many({f"k{i}": b"v" for i in range(5)})
    with ioprofiler.profile() as half:
        cache.get_many([f"k{i}" for i in range(10)])
    with ioprofiler.profile() as few:
        cache.get_many([f"k{i}" for i in range(4, 9)])  # 1 of 5 found
    assert kinds(half) == [] and kinds(few) == []


# -- waits -----------------------------------------------------------------------------------


def test_waiting_for_a_pooled_connection_is_a_finding(tmp_path):
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'dbshard01.db'}", pool_size=1, max_overflow=0, pool_timeout=10
    )
    holding = threading.Event()

    def hold() -> None:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            holding.set()
            time.sleep(0.05)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 2")
    holder.join()
    engine.dispose()
    finding = only(trace, "waits")
    (wait,) = [e for e in trace.events if e.op == "pool_wait"]
    assert finding.events == (wait,) and finding.ms == pytest.approx(wait.duration_ms)
    assert finding.message.startswith("waits: ") and "1 pool wait " in finding.message
    assert "pool_size/max_overflow" in finding.hint


def test_the_first_connection_a_pool_opens_is_no_wait_finding(tmp_path):
    ioprofiler.configure(findings={"waits_ms": 0.0})  # however long the connect took
    engines = [sa.create_engine(f"sqlite:///{tmp_path / f'dbshard0{n}.db'}") for n in (1, 2, 3)]
    with ioprofiler.profile() as trace:
        for engine in engines:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
    connects = [e for e in trace.events if e.op == "connect"]
    assert len(connects) == 3 and [e.pool_held for e in connects] == [0, 0, 0]
    assert "waits" not in kinds(trace, timing=True)
    for engine in engines:
        engine.dispose()


def test_a_pool_opening_more_connections_is_told_to_grow(tmp_path):
    ioprofiler.configure(findings={"waits_ms": 0.0})
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard01.db'}")
    with engine.connect() as held, ioprofiler.profile() as trace:
        held.exec_driver_sql("SELECT 1")
        with engine.connect() as conn:  # the pool's one connection is in use: a second one
            conn.exec_driver_sql("SELECT 2")
    engine.dispose()
    finding = only(trace, "waits")
    assert "1 new connection " in finding.message
    assert "raise pool_size" in finding.hint and "per request: reuse" not in finding.hint


def test_connections_opened_per_request_are_a_wait_finding(tmp_path):
    ioprofiler.configure(findings={"waits_ms": 0.0})
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dbshard01.db'}", poolclass=sa.NullPool)
    for _ in range(2):  # every request opens its own, the first one as the next
        with ioprofiler.profile() as trace:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        finding = only(trace, "waits")
        assert "1 new connection " in finding.message
        assert finding.hint.startswith("connections opened per request: reuse them (a pool")


# -- unexplained time -------------------------------------------------------------------------


def test_a_slow_request_mostly_outside_io_is_unexplained_time(shards):
    with ioprofiler.profile() as trace:
        count(shards["dbshard01"], 1)
        time.sleep(0.25)
        count(shards["dbshard01"], 2)
    finding = only(trace, "unexplained_time")
    (before,) = finding.events  # the longest stretch came after it
    first, second = statements(trace)
    assert first.start_ns <= before.start_ns and before.end_ns < second.start_ns
    assert finding.ms > 240 and "outside any I/O call" in finding.message
    assert "profile" in finding.hint


def test_a_slow_request_spent_in_io_has_no_unexplained_time(shards):
    # as if a busy machine stalled the connect past any threshold (issue 23 defect 9)
    ioprofiler.configure(findings={"waits_ms": 0.0})
    with ioprofiler.profile() as trace:
        sleep_on(shards["dbshard01"], 0.25)
    # the pool's first connect, however long a busy machine makes it, is no wait finding
    connect, sleep, _ = trace.events
    assert (connect.op, sleep.op) == ("connect", "execute")
    # (a stall of a busy machine may make the pool's ROLLBACK a slow call too)
    assert set(kinds(trace, timing=True)) == {"slow_call"}
    assert find(trace)[0].events == (sleep,)


# -- thresholds -------------------------------------------------------------------------------


def test_thresholds_are_checked_when_made(shards):
    with pytest.raises(ValueError, match="n_plus_one_count must be a whole number of at least 1"):
        Thresholds(n_plus_one_count=0)
    with pytest.raises(ValueError, match="duplicate_count must be a whole number of at least 2"):
        ioprofiler.configure(findings={"duplicate_count": 1})
    with pytest.raises(ValueError, match="hit_ratio_below is a share between 0 and 1"):
        Thresholds(hit_ratio_below=50)
    with pytest.raises(ValueError, match="unknown findings threshold n_plus_one; the thresholds"):
        ioprofiler.configure(findings={"n_plus_one": 3})
    with pytest.raises(TypeError, match="findings takes ioprofiler.Thresholds"):
        ioprofiler.configure(findings=3)
    with ioprofiler.profile() as trace:
        for listing_id in range(3):
            count(shards["dbshard01"], listing_id)
    assert kinds(trace) == []
    ioprofiler.configure(findings={"n_plus_one_count": 3})
    assert kinds(trace) == ["n_plus_one"]
    assert ioprofiler.configure().findings == Thresholds(n_plus_one_count=3)
    assert kinds(trace) == ["n_plus_one"]
    assert [f.kind for f in find(trace, Thresholds(**OUT_OF_REACH))] == []


def test_every_kind_has_a_title():
    from ioprofiler.findings import TITLES

    assert set(TITLES) == set(KINDS)


# -- where findings are shown -----------------------------------------------------------------


@pytest.fixture
def profiled(sqlite_shards, memcached):
    from werkzeug.test import Client as WSGIClient

    from ioprofiler.wsgi import IOProfilerMiddleware
    from tests.webapp import ShopApp

    app = ShopApp(sqlite_shards, memcached.address)
    app.cache.flush_all()
    client = WSGIClient(IOProfilerMiddleware(app))

    def get(url: str):
        return client.get(url, environ_base={"REMOTE_ADDR": "127.0.0.1"})

    return get


def test_json_lists_findings_with_the_indexes_of_their_events(profiled):
    document = json.loads(profiled("/n_plus_one?ioprofiler=json").get_data())
    assert (document["schema"], document["version"]) == ("ioprofiler.trace", 2)
    (finding,) = [f for f in document["findings"] if f["kind"] not in TIMING]
    assert set(finding) == {"kind", "title", "message", "ms", "hint", "events"}
    assert (finding["kind"], finding["title"]) == ("n_plus_one", "N+1")
    assert finding["message"].startswith(
        "N+1: SELECT count(*) FROM FavoriteListingUser WHERE listing_id = ? ran 6× on dbshard01"
    )
    assert isinstance(finding["ms"], float) and isinstance(finding["hint"], str)
    queries = [e for e in document["events"] if e["op"] == "execute"]
    assert finding["events"] == [e["index"] for e in queries] and len(queries) == 6
    assert finding["ms"] == pytest.approx(sum(e["duration_ms"] for e in queries), abs=1e-5)
    clean = json.loads(profiled("/page?ioprofiler=json").get_data())
    assert [f for f in clean["findings"] if f["kind"] not in TIMING] == []


def test_text_listing_and_server_timing_name_the_findings(profiled):
    response = profiled("/n_plus_one?ioprofiler=text")
    text = response.get_data(as_text=True)
    # (a stall of the busy test machine may add a slow call: the N+1 is what is looked for)
    assert re.search(r"\nfindings \(\d\):\n(.*\n)*  N\+1: SELECT count\(\*\) FROM Fav", text)
    assert "\n    fix: load the rows in one query" in text
    assert re.search(r'findings;desc="(.*, )?N\+1', response.headers["Server-Timing"])
    assert "N+1" not in profiled("/page?ioprofiler=text").headers["Server-Timing"]


def test_the_panel_starts_with_the_findings_linked_to_their_calls(profiled):
    html = profiled("/n_plus_one?ioprofiler=1").get_data(as_text=True)
    assert re.search(r'<b class="n1">\d findings?</b>', html)
    findings, targets = html.index('<h3 class="warn">Findings</h3>'), html.index("<th>target")
    assert findings < targets
    link = re.search(r'<a href="#e(\d+)" data-calls="((?:\d+ ){5}\d+)">calls #\d+, ', html)
    assert link is not None, html
    for number in link.group(2).split():
        assert re.search(f'<tr class="d" id="e{number}"><td>{number}</td>.*?SELECT count', html)


def test_the_console_prints_the_findings(sqlite_shards):
    import io

    from rich.console import Console

    ioprofiler.configure(findings=OUT_OF_REACH)  # the N+1 alone, whatever the load
    with ioprofiler.profile() as trace:
        for listing_id in range(5):
            count(sqlite_shards["dbshard01"], listing_id)
    out = io.StringIO()
    Console(file=out, width=300, color_system=None).print(trace)
    assert "findings (1):\n  N+1: SELECT count(*) FROM FavoriteListingUser" in out.getvalue()


def test_a_findings_budget_in_assert_io(sqlite_shards):
    from ioprofiler.testing import IOBudgetExceeded, assert_io

    ioprofiler.configure(findings=OUT_OF_REACH)  # no slow call or wait, whatever the load
    with pytest.raises(IOBudgetExceeded) as failed:
        with assert_io(findings=[]):
            for listing_id in range(5):
                count(sqlite_shards["dbshard01"], listing_id)
    assert [f.kind for f in failed.value.findings] == ["n_plus_one"]
    assert "Findings:\n  N+1: SELECT count(*)" in str(failed.value)
    with assert_io(findings=["n_plus_one"]):
        for listing_id in range(5):
            count(sqlite_shards["dbshard01"], listing_id)
    with pytest.raises(ValueError, match="findings= takes the kinds allowed"):
        assert_io(findings=["N+1"]).__enter__()


def test_the_recorder_keeps_requests_with_findings_and_logs_them_without_keys(
    sqlite_shards, memcached, tmp_path
):
    from werkzeug.test import Client as WSGIClient

    from ioprofiler.recorder import Recorder
    from ioprofiler.wsgi import IOProfilerMiddleware
    from tests.webapp import ShopApp

    app = ShopApp(sqlite_shards, memcached.address)
    recorder = Recorder(
        tmp_path / "io.jsonl",
        slow_ms=60_000,
        keys=False,
        keep=lambda trace, request, status: any(f.kind == "n_plus_one" for f in find(trace)),
    )
    client = WSGIClient(IOProfilerMiddleware(app, record=recorder))
    for url in ("/page", "/n_plus_one"):
        client.get(url, headers={"X-Request-Id": url}).close()
    app.cache.set("findings:private-key", b"x")
    with ioprofiler.profile() as trace:
        app.cache.get("findings:private-key")
        app.cache.get("findings:private-key")
    duplicate = only(trace, "duplicate")
    assert "private" in duplicate.message and "private" not in duplicate.without_keys
    from ioprofiler.render.json import trace_dict

    assert "private" not in json.dumps(trace_dict(trace, keys=False)["findings"])
    app.cache.delete("findings:private-key")
    recorder.flush()
    (record,) = [json.loads(line) for line in recorder.path.read_text().splitlines()]
    assert (record["id"], record["reasons"]) == ("/n_plus_one", ["keep"])
    (finding,) = [f for f in record["findings"] if f["kind"] not in TIMING]
    assert finding["kind"] == "n_plus_one" and finding["message"].startswith("N+1: SELECT")
