"""pytest plugin (registered through the ``pytest11`` entry point).

Fixtures ``io_trace`` and ``io_snapshot``, the marker ``io_budget``, and the options
``--io-snapshot=check|update`` and ``--io-report``::

    def test_listing(client, io_trace):              # records the test's call phase only
        client.get("/listing/5773453")
        assert io_trace.count(kind="db", target="dbshard01") == 1

    @pytest.mark.io_budget(db=at_most(4), cache={"memcache": at_most(5)}, no_repeats=True)
    def test_home(client): ...

    @pytest.mark.no_findings                          # or io_budget(findings=[])
    def test_shop(client): ...

    def test_feed(client, io_snapshot):              # compared with tests/test_feed.io
        with io_snapshot():
            client.get("/feed")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import ioprofiler
from ioprofiler import snapshot, testing
from ioprofiler.event import CACHE, DB
from ioprofiler.trace import Trace
from ioprofiler.words import counted

_TRACE_KEY = pytest.StashKey[Trace]()
_REPORT_KEY = "ioprofiler"
_SNAPSHOT_KEY = "ioprofiler_snapshot"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ioprofiler", "I/O budgets and snapshots (ioprofiler)")
    group.addoption(
        "--io-snapshot",
        choices=("check", "update"),
        default="check",
        help="check I/O snapshots against their files (default), or write them",
    )
    group.addoption(
        "--io-report",
        action="store_true",
        default=False,
        help="after the run, list the tests that made the most queries and cache calls",
    )
    group.addoption(
        "--io-report-count",
        type=int,
        default=10,
        metavar="N",
        help="how many tests --io-report lists (default 10)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "io_budget(db=None, cache=None, *, strict=False, ignore=(), no_repeats=False, "
        "commits=None, rollbacks=None, connects=None, pool_waits=None, findings=None): "
        "fail the test when its I/O exceeds the budget (see ioprofiler.testing.assert_io)",
    )
    config.addinivalue_line(
        "markers",
        "no_findings(*allowed_kinds): fail the test when its I/O has findings (N+1, duplicate, "
        "serial fan-out, ...; see ioprofiler.findings), but for the kinds named",
    )
    try:
        testing.use_color(config.get_terminal_writer().hasmarkup)
    except Exception:  # pytest-xdist workers have no terminal
        testing.use_color(config.getoption("color", "auto") == "yes")


@pytest.fixture
def io_trace(request: pytest.FixtureRequest) -> Trace:
    """The I/O of the test's call phase (fixture setup and teardown are left out).

    A :class:`ioprofiler.Trace`: ``count()``, ``duration_ms()``, ``cache_hits()``,
    ``events``, ``text()``, and ``paused()`` to leave a block out.
    """
    ioprofiler.install()
    trace = ioprofiler.profile(name=request.node.nodeid)
    request.node.stash[_TRACE_KEY] = trace
    return trace


@pytest.fixture
def io_snapshot(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``with io_snapshot(): …`` compares the block's I/O with ``<test module>.io``.

    ``io_snapshot("name")`` for a second snapshot in one test; ``hits=True`` to keep
    cache hits and misses in the snapshot.
    """
    ioprofiler.install()
    mode = request.config.getoption("--io-snapshot")
    path = snapshot.snapshot_path(request.node.path)
    # The node id without its file: test_x, TestShop::test_x, test_x[param].
    base = request.node.nodeid.split("::", 1)[-1]

    def take(name: str | None = None, *, hits: bool = False) -> testing.CheckedTrace:
        section = base if name is None else f"{base}::{name}"

        def check(trace: Trace) -> None:
            __tracebackhide__ = True
            lines = snapshot.snapshot_lines(trace, hits)
            outcome = snapshot.compare(path, section, lines, mode)
            if outcome is not None:
                shown = os.path.relpath(path, request.config.rootpath)
                request.node.user_properties.append((_SNAPSHOT_KEY, (outcome, shown, section)))

        return testing.CheckedTrace(check)

    return take


def _budget_expectation(item: pytest.Item) -> testing.IOExpectation | None:
    marker = item.get_closest_marker("io_budget")
    clean = item.get_closest_marker("no_findings")
    if marker is None and clean is None:
        return None
    if marker is not None and marker.args:
        raise pytest.UsageError(
            f"{item.nodeid}: io_budget takes keywords only, like io_budget(db=at_most(3))"
        )
    options = dict(marker.kwargs) if marker is not None else {}
    if clean is not None:
        if clean.kwargs:
            raise pytest.UsageError(
                f"{item.nodeid}: no_findings takes the kinds it allows, like "
                "no_findings('unexplained_time'), and no keywords"
            )
        options["findings"] = clean.args
    try:
        return testing.IOExpectation(**options)
    except (TypeError, ValueError) as exc:
        name = "io_budget" if marker is not None else "no_findings"
        raise pytest.UsageError(f"{item.nodeid}: {name}: {exc}") from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    __tracebackhide__ = True
    expectation = _budget_expectation(item)
    fixture_trace = item.stash.get(_TRACE_KEY, None)
    reporting = item.config.getoption("--io-report")
    if expectation is None and fixture_trace is None and not reporting:
        return (yield)
    ioprofiler.install()
    # One trace for the fixture, the budget and the report, so io_trace.paused() counts
    # for all three.
    budget_trace = (
        fixture_trace if fixture_trace is not None else ioprofiler.profile(name=item.nodeid)
    )
    budget_trace.__enter__()
    try:
        result = yield
    finally:
        budget_trace.close()
        if reporting:
            item.user_properties.append(
                (_REPORT_KEY, (budget_trace.count(kind=DB), budget_trace.count(kind=CACHE)))
            )
    if expectation is not None:
        try:
            testing.enforce(expectation, budget_trace)
        except testing.IOBudgetExceeded as exc:
            if hasattr(exc, "add_note"):  # Python 3.11+: where the budget was set
                path, line, _ = item.location
                exc.add_note(f"io_budget of {item.name} ({path}:{(line or 0) + 1})")
            raise
    return result


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.getoption("--io-snapshot") == "update":
        _report_snapshots(terminalreporter)
    if config.getoption("--io-report"):
        _report_io(terminalreporter, config)


def _properties(terminalreporter: Any, key: str) -> Iterator[tuple[str, Any]]:
    """(test id, value) of the tests' ``key`` user properties, from their call phase."""
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == key:
                    yield report.nodeid, value


def _report_snapshots(terminalreporter: Any) -> None:
    """``--io-snapshot=update``: which snapshot files and sections were written."""
    changes = sorted(
        {tuple(value) for _test, value in _properties(terminalreporter, _SNAPSHOT_KEY)}
    )
    files = {path for _outcome, path, _section in changes}
    terminalreporter.write_sep(
        "=",
        f"ioprofiler: {counted(len(changes), 'snapshot')} written or updated "
        f"in {counted(len(files), 'file')}",
    )
    for outcome, path, section in changes:
        terminalreporter.write_line(f"{outcome:>8}  {path}  [{section}]")


def _report_io(terminalreporter: Any, config: pytest.Config) -> None:
    rows = []
    for test, (db, cache) in _properties(terminalreporter, _REPORT_KEY):
        if db + cache:
            rows.append((db + cache, db, cache, test))
    rows.sort(key=lambda row: (-row[0], row[3]))
    limit = config.getoption("--io-report-count")
    terminalreporter.write_sep(
        "=", f"ioprofiler: the {min(limit, len(rows))} tests with the most I/O"
    )
    if not rows:
        terminalreporter.write_line("no test made a query or a cache call")
        return
    terminalreporter.write_line(f"{'queries':>8} {'cache':>6}  test")
    for _total, db, cache, nodeid in rows[:limit]:
        terminalreporter.write_line(f"{db:>8} {cache:>6}  {nodeid}")
