"""Every Python snippet in README.md runs as written.

Each ```python block runs in its own interpreter, in a fresh temporary folder (SQLite files
land there). An HTML comment on the line before a block says what else it needs:

``<!-- readme-test: app -->``
    a stand-in WSGI application named ``app`` is defined before the snippet runs;
``<!-- readme-test: serves -->``
    after the snippet, its ``app`` must answer ``/?ioprofiler=1`` from 127.0.0.1 with the
    panel: the page a new user should reach;
``<!-- readme-test: memcached -->``
    a private memcached is started and the snippet's ``127.0.0.1:11211`` points at it;
``<!-- readme-test: mysql -->``
    the snippet talks to MariaDB at 127.0.0.1:3306 (root, no password): skipped when none
    answers, as the MariaDB tests are;
``<!-- readme-test: pytest -->``
    the block is a test module: pytest runs it (snapshots written, then checked), and
    every test must pass;
``<!-- readme-test: skip: <reason> -->``
    the block is not run, for the reason given (keep these few).

Marks combine: ``<!-- readme-test: pytest memcached -->``. Every snippet sees
``IOPROFILER_TOKEN`` in its environment (a secret long enough for ``access.token``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import mysql_or_skip

README = Path(__file__).resolve().parent.parent / "README.md"
MEMCACHED_ADDRESS = "127.0.0.1:11211"
MARKS = {"app", "memcached", "mysql", "pytest", "serves"}
BLOCK = re.compile(
    r"(?:^<!--\s*readme-test:\s*(?P<marks>.*?)\s*-->\n)?^```python\n(?P<code>.*?)^```",
    re.S | re.M,
)
APP_STANDIN = """\
def app(environ, start_response):  # the stand-in WSGI application
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"<html><body>Hello</body></html>"]

"""

SERVES_CHECK = """
from werkzeug.test import Client as _Client

_page = _Client(app).get("/?ioprofiler=1", environ_base={"REMOTE_ADDR": "127.0.0.1"})
assert _page.status_code == 200 and b'id="ioprofiler-panel"' in _page.data, _page.data[:300]
"""


@dataclass
class Snippet:
    line: int
    code: str
    marks: set[str]
    skip: str | None


def snippets() -> list[Snippet]:
    text = README.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        marks_text = match.group("marks") or ""
        skip = None
        if marks_text.startswith("skip:"):
            skip, marks_text = marks_text[5:].strip(), ""
        marks = set(marks_text.split())
        assert marks <= MARKS, f"README.md: unknown readme-test marks {marks - MARKS}"
        line = text.count("\n", 0, match.start("code")) + 1
        found.append(Snippet(line, match.group("code"), marks, skip))
    return found


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, IOPROFILER_TOKEN="readme-test-secret-0123456789abcdef")
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_readme_has_snippets_and_few_are_skipped():
    found = snippets()
    assert len(found) >= 8
    assert sum(1 for s in found if s.skip) <= 3, [s.line for s in found if s.skip]


@pytest.mark.parametrize("snippet", snippets(), ids=lambda s: f"README.md:{s.line}")
def test_snippet_runs_as_written(snippet: Snippet, tmp_path, request):
    if snippet.skip:
        pytest.skip(snippet.skip)
    code = snippet.code
    if "mysql" in snippet.marks:
        mysql_or_skip().close()
    if "memcached" in snippet.marks:
        assert MEMCACHED_ADDRESS in code, "a memcached snippet names 127.0.0.1:11211"
        host, port = request.getfixturevalue("memcached").address
        code = code.replace(MEMCACHED_ADDRESS, f"{host}:{port}")
    if "app" in snippet.marks:
        code = APP_STANDIN + code
    if "serves" in snippet.marks:
        code += SERVES_CHECK
    if "pytest" in snippet.marks:
        (tmp_path / "test_snippet.py").write_text(code)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        results = [run([*command, "--io-snapshot=update"], tmp_path), run(command, tmp_path)]
    else:
        (tmp_path / "snippet.py").write_text(code)
        results = [run([sys.executable, "snippet.py"], tmp_path)]
    for result in results:
        assert result.returncode == 0, (
            f"README.md:{snippet.line} failed\n{result.stdout}\n{result.stderr}"
        )


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_within_the_readme_lead_to_a_heading():
    text = re.sub(r"^```.*?^```", "", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and not links - anchors, sorted(links - anchors)


def test_every_public_name_is_in_the_readme():
    import ioprofiler

    text = README.read_text(encoding="utf-8")
    missing = [name for name in ioprofiler.__all__ if f"ioprofiler.{name}" not in text]
    assert not missing, f"ioprofiler.{missing} is exported but the README does not name it"
