"""pytest plugin for ``make peer``: a library's own test suite under ioprofiler.

Loaded into the library's suite (SQLAlchemy's, pymemcache's, redis-py's) with
``-p ioprofiler_peer`` (``tests/peer/`` on PYTHONPATH):

- ``--peer-outcomes=FILE`` writes each test's outcome as JSON: ``{"outcomes": {node id:
  outcome}, "reasons": {node id: failure text}, "recorded": {"tests": n, "events": n},
  "imported_from": [file, …]}``;
- ``--peer-record`` installs ioprofiler and opens a trace around every test (its setup,
  call and teardown), so every call the suite makes to a database or cache is recorded;
- ``--peer-library=PACKAGE``: ``imported_from`` lists where the processes that ran tests
  imported that package from (so the runner can check that the installed library was
  tested, not the sdist's copy).

Works with pytest-xdist: workers record, the controller collects.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

_MAX_REASON_CHARS = 2000
_RECORDING = "ioprofiler-peer-recording"
_IMPORTED_FROM = "ioprofiler-peer-imported-from"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ioprofiler-peer", "a library's own suite under ioprofiler")
    group.addoption("--peer-outcomes", metavar="FILE", help="write each test's outcome here")
    group.addoption(
        "--peer-library", metavar="PACKAGE", help="write where this package was imported from"
    )
    group.addoption(
        "--peer-record", action="store_true", help="open an ioprofiler trace around every test"
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("peer_record"):
        config.pluginmanager.register(Recording(config), _RECORDING)
    library = config.getoption("peer_library")
    if library:
        config.pluginmanager.register(ImportedFrom(config, library), _IMPORTED_FROM)
    path = config.getoption("peer_outcomes")
    if path and not hasattr(config, "workerinput"):  # the xdist controller, or no xdist
        config.pluginmanager.register(Outcomes(path), "ioprofiler-peer-outcomes")


class Recording:
    """A trace around every test; counts what the traces held, to show that they did."""

    def __init__(self, config: pytest.Config) -> None:
        import ioprofiler

        self.config = config
        self.profile = ioprofiler.profile
        self.counts = {"tests": 0, "events": 0}
        if hasattr(config, "workerinput") or not _uses_xdist(config):
            ioprofiler.install()  # only where tests run

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> Iterator[None]:
        with self.profile(name=item.nodeid) as trace:
            result = yield
        self.counts["tests"] += 1
        self.counts["events"] += trace.count()
        return result

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["ioprofiler_peer"] = dict(self.counts)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        for key, value in getattr(node, "workeroutput", {}).get("ioprofiler_peer", {}).items():
            self.counts[key] += value


class ImportedFrom:
    """Where the library under test was imported from, in every process that ran tests."""

    def __init__(self, config: pytest.Config, package: str) -> None:
        self.config = config
        self.package = package
        self.places: set[str] = set()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        place = getattr(sys.modules.get(self.package), "__file__", None)
        if place:
            self.places.add(place)
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["ioprofiler_peer_imported_from"] = sorted(self.places)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        self.places.update(output.get("ioprofiler_peer_imported_from", ()))


def _uses_xdist(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None))


class Outcomes:
    """Each test's outcome: its call's, and any setup or teardown that did not pass."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.outcomes: dict[str, str] = {}
        self.reasons: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        if report.when != "call":
            if outcome == "passed":
                return
            outcome = f"{report.when} {'error' if outcome == 'failed' else outcome}"
        previous = self.outcomes.get(report.nodeid)
        self.outcomes[report.nodeid] = outcome if previous is None else f"{previous}; {outcome}"
        if report.failed:
            self.reasons[report.nodeid] = report.longreprtext[-_MAX_REASON_CHARS:]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        recording = session.config.pluginmanager.get_plugin(_RECORDING)
        imported_from = session.config.pluginmanager.get_plugin(_IMPORTED_FROM)
        with open(self.path, "w") as file:
            json.dump(
                {
                    "outcomes": self.outcomes,
                    "reasons": self.reasons,
                    "recorded": recording.counts if recording else None,
                    "imported_from": sorted(imported_from.places) if imported_from else [],
                },
                file,
            )
