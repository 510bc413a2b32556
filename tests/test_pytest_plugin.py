"""The pytest plugin, run with pytester against real SQLite shards and real memcached."""

from __future__ import annotations

import pytest

from ioprofiler.testing import IOBudgetExceeded, assert_io, at_least, at_most, between, exactly

pytest_plugins = ["pytester"]

CONFTEST = """
import os
import pytest
import sqlalchemy as sa
from pymemcache.client.base import Client

import ioprofiler

SHARDS = ("dbshard01", "dbshard02", "dbshard03", "dbshard04")


@pytest.fixture
def shards(tmp_path):
    engines = {}
    for name in SHARDS:
        engine = sa.create_engine(f"sqlite:///{tmp_path / name}.db")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE items (id INTEGER PRIMARY KEY, shop INTEGER)")
            conn.exec_driver_sql("INSERT INTO items (shop) VALUES (7), (7), (8)")
        engines[name] = engine
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def cache():
    host, port = os.environ["IOPROFILER_TEST_MEMCACHED"].split(":")
    client = Client((host, int(port)), default_noreply=False)
    yield client
    client.close()


def item(engine, item_id):
    query = sa.text("SELECT shop FROM items WHERE id = :id")
    with engine.connect() as conn:
        return conn.execute(query, {"id": item_id}).scalar()


# A stall of a busy machine makes no slow call or wait here: no_findings and findings=[]
# meet the workloads' own findings only (a 20 ms query alone in a test would be a slow call).
ioprofiler.configure(
    findings={"slow_ms": 1e9, "dominant_ms": 1e9, "waits_ms": 1e9, "unexplained_request_ms": 1e9}
)
"""


@pytest.fixture
def project(pytester, memcached, monkeypatch):
    from pymemcache.client.base import Client

    Client(memcached.address).flush_all()  # hits and misses below must not depend on order
    monkeypatch.setenv("IOPROFILER_TEST_MEMCACHED", f"127.0.0.1:{memcached.port}")
    pytester.makeconftest(CONFTEST)
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    return pytester


def test_io_trace_records_the_call_phase_only(project):
    project.makepyfile(
        """
        import pytest
        from conftest import item

        @pytest.fixture
        def warm(shards):
            item(shards["dbshard01"], 1)          # setup: not counted
            return shards

        def test_counts(warm, cache, io_trace):
            item(warm["dbshard01"], 2)
            item(warm["dbshard02"], 3)
            cache.get("user:1")
            with io_trace.paused():
                item(warm["dbshard03"], 1)        # paused: not counted
            assert io_trace.count(kind="db") == 2
            assert io_trace.count(kind="db", target="dbshard01") == 1
            assert io_trace.count(kind="cache") == 1
            assert io_trace.cache_misses() == 1 and io_trace.cache_hits() == 0
        """
    )
    project.runpytest_subprocess().assert_outcomes(passed=1)


def test_assert_io_failure_shows_budgets_repeats_and_the_numbered_listing(project):
    project.makepyfile(
        """
        from conftest import item
        from ioprofiler.testing import assert_io, at_most

        def load_shop(shards):
            for item_id in (1, 2, 3):
                item(shards["dbshard01"], item_id)

        def test_shop(shards, cache):
            with assert_io(db={"dbshard01": 1, "dbshard0[2-4]": 0}, cache=at_most(0),
                           no_repeats=True):
                load_shop(shards)
                cache.get("shop:7")
        """
    )
    result = project.runpytest_subprocess()  # no -v: the listing is shown all the same
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * ioprofiler: I/O budget exceeded",
            "E * kind *target*budget*calls*hits/misses*",
            "E * db *dbshard01*exactly 1*3*EXCEEDED",
            "E * db *dbshard0[[]2-4]*exactly 0*0*ok",
            "E * cache *all*exactly 0*1*0/1*EXCEEDED",
            "E * Repeated (no_repeats=True):",
            "E *   3x on dbshard01: SELECT shop FROM items WHERE id = ?",
            "E *       <- conftest.py:36 in item",
            "E * Calls made (4):",
            "E *    1. [[]dbshard01] *.* ms SELECT shop FROM items WHERE id = 1"
            "  <- conftest.py:36 in item",
            "E *    2. [[]dbshard01] *.* ms SELECT shop FROM items WHERE id = 2  <- *",
            "E *    3. [[]dbshard01] *.* ms SELECT shop FROM items WHERE id = 3  <- *",
            "E *    4. [[]memcache] *.* ms Cache MISS, keys: shop:7  <- *.py:12 in test_shop",
        ]
    )


@pytest.mark.parametrize(
    ("budget", "passes"),
    [
        ("3", True),
        ("2", False),
        ("at_most(3)", True),
        ("at_most(2)", False),
        ("at_least(3)", True),
        ("at_least(4)", False),
        ("between(1, 3)", True),
        ("between(4, 9)", False),
        ("{'dbshard0*': 3}", True),
        ("{'dbshard01': 1}", False),
    ],
)
def test_every_kind_of_budget(project, budget, passes):
    project.makepyfile(
        f"""
        from conftest import item
        from ioprofiler.testing import assert_io, at_most, at_least, between

        def test_budget(shards):
            with assert_io(db={budget}):
                for item_id in (1, 2):
                    item(shards["dbshard01"], item_id)
                item(shards["dbshard02"], 1)
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1) if passes else result.assert_outcomes(failed=1)


def test_strict_counts_unlisted_targets_as_zero_and_ignore_skips_statements(project):
    project.makepyfile(
        """
        import pytest
        import sqlalchemy as sa
        from conftest import item
        from ioprofiler.testing import assert_io, IOBudgetExceeded

        def test_strict(shards):
            with pytest.raises(IOBudgetExceeded, match="dbshard02 .*exactly 0 .*1 .*EXCEEDED"):
                with assert_io(db={"dbshard01": 1}, strict=True):
                    item(shards["dbshard01"], 1)
                    item(shards["dbshard02"], 1)

        def test_ignore(shards):
            with assert_io(db=1, ignore=[r"^SAVEPOINT", r"^RELEASE"]):
                with shards["dbshard01"].begin() as conn:
                    conn.exec_driver_sql("SAVEPOINT sp1")
                    conn.exec_driver_sql("RELEASE SAVEPOINT sp1")
                item(shards["dbshard01"], 1)
        """
    )
    project.runpytest().assert_outcomes(passed=2)


def test_no_repeats_catches_single_key_cache_reads(project):
    project.makepyfile(
        """
        from ioprofiler.testing import assert_io

        def test_gets(cache):
            with assert_io(no_repeats=True):
                for user in (1, 2, 3):
                    cache.get(f"user:{user}")

        def test_get_many(cache):
            with assert_io(cache=1, no_repeats=True):
                cache.get_many([f"user:{user}" for user in (1, 2, 3)])
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["E *3x on memcache: single-key reads: could be one get_many"])


def test_the_io_budget_marker(project):
    project.makepyfile(
        """
        import pytest
        from conftest import item
        from ioprofiler.testing import at_most

        @pytest.mark.io_budget(db=at_most(2), cache={"memcache": at_most(1)})
        def test_within(shards, cache):
            item(shards["dbshard01"], 1)
            cache.get("a")

        @pytest.mark.io_budget(db=at_most(1))
        def test_over(shards):
            item(shards["dbshard01"], 1)
            item(shards["dbshard04"], 2)

        @pytest.mark.io_budget(db=0)
        def test_own_failure_wins(shards):
            item(shards["dbshard01"], 1)
            assert False, "the test's own assertion"
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        ["* db *all*at most 1*2*EXCEEDED", "*AssertionError: the test's own assertion*"]
    )


def test_the_marker_refuses_bad_arguments(project):
    project.makepyfile(
        """
        import pytest

        @pytest.mark.io_budget(3)
        def test_positional():
            pass
        """
    )
    result = project.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*io_budget takes keywords only*"])


def test_snapshots_are_written_checked_and_diffed(project):
    test_file = project.makepyfile(
        test_feed="""
        from conftest import item

        LOOKUPS = (1, 2)

        def test_feed(shards, cache, io_snapshot):
            with io_snapshot():
                for item_id in LOOKUPS:
                    item(shards["dbshard01"], item_id)
                cache.get_many([f"Etsy_Cache_Results:c812331f123321:{i}" for i in LOOKUPS])
        """
    )
    missing = project.runpytest()
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(
        ["*no I/O snapshot [[]test_feed] in *test_feed.io*--io-snapshot=update*"]
    )

    written = project.runpytest("--io-snapshot=update")
    written.assert_outcomes(passed=1)
    written.stdout.fnmatch_lines(
        [
            "*= ioprofiler: 1 snapshot written or updated in 1 file =*",
            " written  test_feed.io  [[]test_feed]",
        ]
    )
    stored = (project.path / "test_feed.io").read_text()
    assert stored == (
        "[test_feed]\n"
        "db|dbshard01: SELECT shop FROM items WHERE id = #\n"
        "db|dbshard01: SELECT shop FROM items WHERE id = #\n"
        "cache|memcache|get_many: [Etsy_Cache_Results:#:# x2]\n"
    )
    project.runpytest().assert_outcomes(passed=1)

    test_file.write_text(test_file.read_text().replace("LOOKUPS = (1, 2)", "LOOKUPS = (1, 2, 3)"))
    changed = project.runpytest()
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(
        [
            "E * I/O differs from the snapshot [[]test_feed] in *test_feed.io*",
            "E * --- *test_feed.io [[]test_feed] (snapshot)",
            "E * +++ this run",
            "E * @@ -1,3 +1,4 @@",
            "E *  db|dbshard01: SELECT shop FROM items WHERE id = #",
            "E *  db|dbshard01: SELECT shop FROM items WHERE id = #",
            "E * -cache|memcache|get_many: [[]Etsy_Cache_Results:#:# x2]",
            "E * +db|dbshard01: SELECT shop FROM items WHERE id = #",
            "E * +cache|memcache|get_many: [[]Etsy_Cache_Results:#:# x3]",
        ]
    )
    updated = project.runpytest("--io-snapshot=update")
    updated.assert_outcomes(passed=1)
    updated.stdout.fnmatch_lines([" updated  test_feed.io  [[]test_feed]"])
    unchanged = project.runpytest("--io-snapshot=update")
    unchanged.stdout.fnmatch_lines(["*= ioprofiler: 0 snapshots written or updated in 0 files =*"])
    project.runpytest().assert_outcomes(passed=1)


def test_io_report_lists_the_busiest_tests(project):
    project.makepyfile(
        """
        from conftest import item

        def test_quiet():
            pass

        def test_one(shards):
            item(shards["dbshard01"], 1)

        def test_three(shards, cache):
            item(shards["dbshard01"], 1)
            item(shards["dbshard02"], 1)
            cache.get("x")
        """
    )
    result = project.runpytest("--io-report")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*ioprofiler: the 2 tests with the most I/O*",
            " queries  cache  test",
            "       2      1  test_io_report_lists_the_busiest_tests.py::test_three",
            "       1      0  test_io_report_lists_the_busiest_tests.py::test_one",
        ]
    )


def test_works_under_xdist(project):
    project.makepyfile(
        """
        import pytest
        from conftest import item
        from ioprofiler.testing import at_most

        @pytest.mark.parametrize("n", range(6))
        @pytest.mark.io_budget(db=at_most(2))
        def test_budget(shards, n):
            for item_id in range(n):
                item(shards["dbshard01"], item_id)

        @pytest.mark.parametrize("n", range(4))
        def test_snapshot(shards, io_snapshot, n):
            with io_snapshot():
                item(shards["dbshard02"], n)
        """
    )
    result = project.runpytest_subprocess("-n", "2", "--io-snapshot=update", "--io-report")
    result.assert_outcomes(passed=7, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*ioprofiler: 4 snapshots written or updated in 1 file*",
            "*ioprofiler: the 9 tests with the most I/O*",
        ]
    )
    sections = (project.path / "test_works_under_xdist.io").read_text().count("[test_snapshot[")
    assert sections == 4


def test_async_tests_record_their_tasks(project):
    project.makepyfile(
        """
        import asyncio
        from conftest import item

        async def test_tasks(shards, io_trace):
            async def load(n):
                await asyncio.sleep(0)
                item(shards["dbshard03"], n)

            await asyncio.gather(*(load(n) for n in range(3)))
            assert io_trace.count(kind="db", target="dbshard03") == 3
        """
    )
    project.runpytest().assert_outcomes(passed=1)


def test_assert_io_works_in_unittest(project):
    project.makepyfile(
        """
        import unittest
        import sqlalchemy as sa
        from ioprofiler.testing import assert_io, IOBudgetExceeded

        class ShopTest(unittest.TestCase):
            def test_budget(self):
                engine = sa.create_engine("sqlite://")
                with assert_io(db=1):
                    with engine.connect() as conn:
                        conn.exec_driver_sql("SELECT 1")
                with self.assertRaises(IOBudgetExceeded):
                    with assert_io(db=0):
                        with engine.connect() as conn:
                            conn.exec_driver_sql("SELECT 1")
        """
    )
    result = project.runpython_c(
        "import unittest, sys; sys.path.insert(0, '.'); "
        "unittest.main(module='test_assert_io_works_in_unittest', argv=['x'])"
    )
    assert "OK" in result.stderr.str()


def test_budgets_refuse_nonsense():
    with pytest.raises(ValueError, match="whole number of calls"):
        at_most(-1)
    with pytest.raises(ValueError, match="must not exceed"):
        between(5, 2)
    with pytest.raises(TypeError, match="a budget is a number of calls"):
        with assert_io(db="three"):
            pass
    with pytest.raises(ValueError, match="regular expressions"):
        with assert_io(ignore=["("]):
            pass
    assert str(exactly(2)) == "exactly 2" and str(at_least(1)) == "at least 1"
    assert issubclass(IOBudgetExceeded, AssertionError)


def test_failures_are_coloured_when_the_terminal_has_colour(project):
    project.makepyfile(
        """
        from conftest import item
        from ioprofiler.testing import assert_io

        def test_over(shards):
            with assert_io(db=0):
                item(shards["dbshard01"], 1)
        """
    )
    coloured = project.runpytest("--color=yes")
    assert "\x1b[1;31mEXCEEDED" in coloured.stdout.str()
    plain = project.runpytest("--color=no")
    assert "\x1b[" not in plain.stdout.str() and "EXCEEDED" in plain.stdout.str()


def test_snapshots_of_same_named_tests_in_two_classes_stay_apart(project):
    project.makepyfile(
        test_classes="""
        from conftest import item

        class TestA:
            def test_x(self, shards, io_snapshot):
                with io_snapshot():
                    item(shards["dbshard01"], 1)

        class TestB:
            def test_x(self, shards, io_snapshot):
                with io_snapshot():
                    item(shards["dbshard02"], 1)
                    item(shards["dbshard02"], 2)
        """
    )
    project.runpytest("--io-snapshot=update").assert_outcomes(passed=2)
    sections = (project.path / "test_classes.io").read_text()
    assert "[TestA::test_x]\ndb|dbshard01:" in sections
    assert "[TestB::test_x]\ndb|dbshard02:" in sections
    project.runpytest().assert_outcomes(passed=2)


def test_checking_snapshots_writes_nothing(project):
    project.makepyfile(
        test_ro="""
        from conftest import item

        def test_x(shards, io_snapshot):
            with io_snapshot():
                item(shards["dbshard01"], 1)
        """
    )
    snapshot = "[test_x]\ndb|dbshard01: SELECT shop FROM items WHERE id = #\n"
    (project.path / "test_ro.io").write_text(snapshot)
    before = sorted(p.name for p in project.path.iterdir())
    project.path.chmod(0o555)  # a read-only checkout
    try:
        result = project.runpytest("-p", "no:cacheprovider")
    finally:
        project.path.chmod(0o755)
    result.assert_outcomes(passed=1)
    assert sorted(p.name for p in project.path.iterdir()) == before


def test_paused_blocks_are_left_out_of_the_budget_too(project):
    project.makepyfile(
        """
        import pytest
        from conftest import item
        from ioprofiler.testing import at_most

        @pytest.mark.io_budget(db=at_most(1))
        def test_warm_then_measure(shards, io_trace):
            with io_trace.paused():
                for n in range(5):
                    item(shards["dbshard01"], n)
            item(shards["dbshard01"], 1)
            assert io_trace.count() == 1
        """
    )
    project.runpytest().assert_outcomes(passed=1)


def test_findings_fail_a_test_with_the_no_findings_marker_or_assert_io(project):
    project.makepyfile(
        """
        import pytest
        from conftest import item
        from ioprofiler.testing import assert_io

        def loop(shards):
            for item_id in range(1, 6):
                item(shards["dbshard02"], item_id)

        @pytest.mark.no_findings
        def test_marker(shards):
            loop(shards)

        @pytest.mark.no_findings("n_plus_one")
        def test_allowed(shards):
            loop(shards)

        @pytest.mark.io_budget(db=5, findings=[])
        def test_budget_and_findings(shards):
            loop(shards)

        def test_assert_io(shards):
            with assert_io(findings=["duplicate"]):
                loop(shards)

        @pytest.mark.no_findings
        def test_clean(shards):
            item(shards["dbshard01"], 1)
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(
        [
            "E *IOBudgetExceeded: ioprofiler: I/O findings",
            "E *Findings:",
            "E *  N+1: SELECT shop FROM items WHERE id = ? ran 5× on dbshard02 (* ms)"
            " <- conftest.py:* in item",
            "E *    fix: load the rows in one query*; calls #1, #2, #3, #4, #5",
            "E *Calls made (5):",
        ]
    )
    assert "test_allowed" not in "".join(
        line for line in result.outlines if line.startswith("FAILED")
    )


def test_no_findings_refuses_unknown_kinds(project):
    project.makepyfile(
        """
        import pytest

        @pytest.mark.no_findings("n+1")
        def test_typo():
            pass
        """
    )
    result = project.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*no_findings: findings= takes the kinds allowed, from n_plus_one*"]
    )
