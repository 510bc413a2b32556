"""Helpers for the tests of ioprofiler beside other instrumentation (OpenTelemetry, ddtrace).

Those tools pin SQLAlchemy below 2.1, so their tests run in a second environment
(``make coexist``, run by ``.ci/run``); elsewhere they skip, or fail under
``IOPROFILER_REQUIRE_COEXIST=1``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest

import ioprofiler

ORDERS = ("ioprofiler first", "ioprofiler second")


def require(module: str) -> ModuleType:
    """Import ``module``, or skip (fail under IOPROFILER_REQUIRE_COEXIST=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = f"{module} is not installed here (make coexist installs it): {exc}"
        if os.environ.get("IOPROFILER_REQUIRE_COEXIST") == "1":
            pytest.fail(reason + " (IOPROFILER_REQUIRE_COEXIST=1 makes this a failure)")
        pytest.skip(reason, allow_module_level=True)


def patched_namespaces() -> list[Any]:
    """Every class and module either tool patches, to check that uninstalling is exact."""
    import pymemcache.client.base
    import pymemcache.client.hash
    import sqlalchemy
    import sqlalchemy.engine.create
    import sqlalchemy.ext.asyncio
    from ioprofiler.integrations.pymemcache import base_client
    from ioprofiler.integrations.sqlalchemy import _subclasses
    from sqlalchemy.engine.base import Engine
    from sqlalchemy.engine.default import DefaultDialect

    return [
        base_client(),
        Engine,
        *_subclasses(DefaultDialect),
        sqlalchemy,
        sqlalchemy.engine,
        sqlalchemy.engine.create,
        sqlalchemy.ext.asyncio,
        pymemcache.client.base,
        pymemcache.client.hash,
    ]


def attributes() -> dict[tuple[int, str], Any]:
    return {
        (id(namespace), name): value
        for namespace in patched_namespaces()
        for name, value in list(vars(namespace).items())
    }


class Stack:
    """ioprofiler and another tool, installed in a given order."""

    def __init__(self, order: str, install: Callable[[], Any], uninstall: Callable[[], Any]):
        ours = ("ioprofiler", ioprofiler.install, ioprofiler.uninstall)
        theirs = ("other", install, uninstall)
        self.installed = [ours, theirs] if order == ORDERS[0] else [theirs, ours]

    def remove_last(self) -> str:
        """Uninstall whichever was installed last; returns the name of the one left."""
        self.installed.pop()[2]()
        return self.installed[-1][0] if self.installed else ""


@contextmanager
def installed_in_order(
    order: str, install: Callable[[], Any], uninstall: Callable[[], Any]
) -> Iterator[Stack]:
    """Install both in ``order``; at the end uninstall them, last first, and check that
    every attribute either of them patched is back as it was."""
    ioprofiler.uninstall()
    before = attributes()
    stack = Stack(order, install, uninstall)
    for _, install_one, _ in stack.installed:
        install_one()
    try:
        yield stack
    finally:
        while stack.installed:
            stack.remove_last()
    after = attributes()
    changed = [key[1] for key, value in before.items() if after.get(key) is not value]
    assert changed == [], f"not restored after uninstalling both: {changed}"


STATEMENTS = [
    "CREATE TABLE t (x INTEGER)",
    "INSERT INTO t (x) VALUES (?)",
    "SELECT sum(x) FROM t",
]


def run_statements(path: Any) -> list[Any]:
    """STATEMENTS on a new SQLite engine for ``path``; the statement events ioprofiler kept,
    each checked to be on the shard named after the file."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}")
    with ioprofiler.profile() as trace:
        with engine.begin() as conn:
            conn.exec_driver_sql(STATEMENTS[0])
            conn.exec_driver_sql(STATEMENTS[1], [(1,), (2,)])
            assert conn.exec_driver_sql(STATEMENTS[2]).scalar() == 3
    engine.dispose()
    executed = [e for e in trace.events if e.is_statement]
    assert [e.target for e in executed] == [path.stem] * len(executed)
    return executed
