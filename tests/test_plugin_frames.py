"""A budget or snapshot failure shows the user's test line and the listing, not
ioprofiler's own frames (contextlib, testing.py, enforce(), snapshot.compare)."""

from __future__ import annotations

import sys

import pytest

pytest_plugins = ["pytester"]

BODY = """
import pytest
import sqlalchemy as sa
from ioprofiler.testing import assert_io, at_most

engine = sa.create_engine("sqlite://")


def load():
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        conn.exec_driver_sql("SELECT 2")
"""

CASES = {
    "assert_io": """
def test_it():
    with assert_io(db=at_most(1)):
        load()  # the user's line
""",
    "marker": """
@pytest.mark.io_budget(db=at_most(1))
def test_it():
    load()  # the user's line
""",
    "snapshot": """
def test_it(io_snapshot):
    with io_snapshot():
        load()  # the user's line
""",
}
# What the plugin's own frames look like in pytest's output
OWN_FRAMES = (
    "contextlib.py",
    "ioprofiler/testing.py",
    "ioprofiler/snapshot.py",
    "ioprofiler/pytest_plugin.py",
    "def enforce(",
    "def compare(",
    "def __exit__",
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failure_shows_the_users_line_and_the_listing_only(pytester, case):
    pytester.makepyfile(test_shop=BODY + CASES[case])
    if case == "snapshot":
        pytester.makefile(".io", test_shop="[test_it]\ndb|memory: SELECT #\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    failure = output[output.index("___ test_it ___") : output.index("short test summary")]
    for frame in OWN_FRAMES:
        assert frame not in failure, failure
    user_line = {
        "assert_io": ">       with assert_io(db=at_most(1)):",
        "snapshot": ">       with io_snapshot():",
        # the marker's failure has no line of the test's own to point at: a note names it
        "marker": "io_budget of test_it (test_shop.py:" if sys.version_info >= (3, 11) else "",
    }[case]
    assert user_line in failure, failure
    expected = "SELECT 2" if case != "snapshot" else "+db|sqlite:memory: SELECT #"
    assert expected in failure, failure
