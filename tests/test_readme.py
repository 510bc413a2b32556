"""Every Python snippet in README.md and in the user guide (docs/*.md) runs as written, every
relative link in them leads somewhere, and the README stays a front door (at most 250 lines).

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

Links: every relative Markdown link (``[text](path)``, ``[text](path#anchor)``,
``[text](#anchor)``, images too) in these files must name a file of the repository and, with
an anchor, a heading of that file (GitHub's anchors: lower case, punctuation dropped, spaces
as dashes, ``-1``, ``-2`` after a repeated heading). ``http(s):`` and ``mailto:`` links are
not fetched.
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

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250
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


def pages() -> list[Path]:
    """README.md first, then the user guide's pages."""
    return [README, *sorted(DOCS.glob("*.md"))]


@dataclass
class Snippet:
    line: int
    code: str
    marks: set[str]
    skip: str | None
    page: str = "README.md"

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def snippets(page: Path | None = None) -> list[Snippet]:
    """The ```python blocks of one page, or of README.md and then every docs/*.md."""
    found = []
    for path in [page] if page else pages():
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(ROOT))
        for match in BLOCK.finditer(text):
            marks_text = match.group("marks") or ""
            skip = None
            if marks_text.startswith("skip:"):
                skip, marks_text = marks_text[5:].strip(), ""
            marks = set(marks_text.split())
            assert marks <= MARKS, f"{name}: unknown readme-test marks {marks - MARKS}"
            line = text.count("\n", 0, match.start("code")) + 1
            found.append(Snippet(line, match.group("code"), marks, skip, name))
    return found


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, IOPROFILER_TOKEN="readme-test-secret-0123456789abcdef")
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_readme_and_the_guide_have_snippets_and_few_are_skipped():
    found = snippets()
    assert len(snippets(README)) >= 5 and len(found) >= 20
    assert sum(1 for s in found if s.skip) <= 3, [s.where for s in found if s.skip]


def test_the_readme_is_a_front_door():
    """At most 250 lines; `make test` is its test command (.ci/run runs it); and every page of
    the user guide is one click from it."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, len(text.splitlines())
    assert re.search(r"^make test\b", text, re.M), "the README names `make test`"
    linked = {target for target, _ in links(README)}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if f"docs/{p.name}" not in linked]
    assert not missing, f"the README does not link docs/{missing}"
    assert {"docs/README.md", "LICENSE", "demo_app/screenshot.png"} <= linked


@pytest.mark.parametrize("snippet", snippets(), ids=lambda s: s.where)
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
        assert result.returncode == 0, f"{snippet.where} failed\n{result.stdout}\n{result.stderr}"


FENCE = re.compile(r"^ *```.*?^ *```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(path: Path) -> str:
    """A page without its code blocks, code spans and HTML comments: what renders as links."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return CODE_SPAN.sub("", re.sub(r"<!--.*?-->", "", text, flags=re.S))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings, a repeated one numbered as GitHub does."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = _slug(CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(f"{slug}-{count}" if count else slug)
    return found


def links(path: Path) -> list[tuple[str, str]]:
    """``(target, anchor)`` for each relative link of a page: the target relative to the
    repository (the page itself for ``#anchor``), the anchor or ``""``."""
    found = []
    for href in LINK.findall(_prose(path)):
        if re.match(r"[a-z][a-z0-9+.-]*:", href, re.I):  # http:, https:, mailto:
            continue
        target, _, anchor = href.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        found.append((str(resolved.relative_to(ROOT)), anchor))
    return found


def test_the_link_check_reads_links_and_anchors_as_github_does(tmp_path):
    page = tmp_path / "x.md"
    page.write_text(
        "# A `code` title: here\n\n## Again\n## Again\n\n"
        "[a](#a-code-title-here) `[b](c)` [c](../README.md#ioprofiler)\n"
        "![d](x.png) [e](https://e.org/)\n```\n[f](g)\n```\n"
    )
    assert anchors(page) == {"a-code-title-here", "again", "again-1"}
    hrefs = LINK.findall(_prose(page))
    assert hrefs == ["#a-code-title-here", "../README.md#ioprofiler", "x.png", "https://e.org/"]


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    broken = []
    for target, anchor in links(page):
        path = ROOT / target
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (path.suffix != ".md" or anchor not in anchors(path)):
            broken.append(f"{target}#{anchor}: no such heading")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_every_public_name_is_in_the_readme_or_the_guide():
    import ioprofiler

    text = "\n".join(page.read_text(encoding="utf-8") for page in pages())
    missing = [name for name in ioprofiler.__all__ if f"ioprofiler.{name}" not in text]
    assert not missing, f"ioprofiler.{missing} is exported but no page of the docs names it"
