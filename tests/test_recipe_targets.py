"""The guide's FastAPI, Flask and Django recipes (docs/frameworks.md), run exactly as written:
their engine is made at import, before the middleware installs ioprofiler, and is not
labelled. Every event of every request they make is on the shard the engine names (``shop``,
its file): the first request's CONNECT and ROLLBACK too, and no summary names another target.

A trace open around the whole recipe sees every request's events (a trace records the I/O
of the requests the middleware profiles inside it), the first one's (the panel) included.
"""

from __future__ import annotations

import re
import sys

import pytest

from tests.test_readme import run, snippets

LISTING_LINE = re.compile(r"^\[(?P<target>[^\]]+)\] \d+\.\d{3} ms ", re.M)
SUMMARY_TARGET = re.compile(r"^  (?P<target>\S+) +\d+ (?:query|queries) ", re.M)
RECIPES = {
    "FastAPI": "from ioprofiler.asgi import IOProfilerMiddleware",
    "Flask": "from ioprofiler.flask import IOProfiler",
    "Django": '"ioprofiler.django.IOProfilerMiddleware"',
}
AROUND = (
    "import ioprofiler as _ioprofiler\n_whole = _ioprofiler.profile().__enter__()\n",
    "\n_whole.close()\nprint('--- every request ---')\nprint(_whole.text())\n",
)


def recipe(marker: str) -> str:
    (code,) = [s.code for s in snippets() if marker in s.code and "create_engine" in s.code]
    return code


@pytest.mark.parametrize("framework", RECIPES)
def test_a_recipe_lists_every_line_under_its_shard(framework, tmp_path):
    before, after = AROUND
    (tmp_path / "recipe.py").write_text(before + recipe(RECIPES[framework]) + after)
    result = run([sys.executable, "recipe.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stdout
    every_request = printed.split("--- every request ---", 1)[1]
    assert "CONNECT" in every_request and "SELECT 6 * 7" in every_request, printed
    assert set(LISTING_LINE.findall(printed)) == {"shop"}, printed
    assert set(SUMMARY_TARGET.findall(printed)) == {"shop"}, printed
