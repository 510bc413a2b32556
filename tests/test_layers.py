"""Imports only go down the layers of docs/architecture.md, and no import circle exists.

Read from the source with ``ast``: every ``import`` counts, at module level, inside a
function (a late import) or under ``if TYPE_CHECKING:``, except the few late imports
allowed below, each with its reason.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"ioprofiler": ROOT / "ioprofiler", "ioprofiler.integrations": ROOT / "integrations"}

# Each layer, bottom first, and the layers below it that it may import (its own always).
LAYERS: dict[str, tuple[str, ...]] = {
    "text": (),
    "model": ("text",),
    "recording": ("model", "text"),
    "integrations": ("recording", "model", "text"),
    "analysis": ("model", "text"),
    "renderers": ("analysis", "model", "text"),
    "surfaces": ("renderers", "analysis", "recording", "model", "text"),
}

# Which modules make up each layer; "pkg.*" is every module under pkg.
MEMBERS: dict[str, tuple[str, ...]] = {
    "text": (
        "config",
        "thresholds",
        "values",
        "sql_text",
        "cache_text",
        "http_text",
        "roundtrip_text",
        "words",
        "urls",
        "targets",
        "headers",
    ),
    "model": ("event", "trace"),
    "recording": ("recording", "recorders", "callsite", "patching", "registry", "compiled"),
    "integrations": ("integrations", "integrations.*"),
    "analysis": ("analysis", "findings", "aggregate", "cause"),
    "renderers": ("render", "render.*", "stored"),
    "surfaces": (
        "",  # the package itself: ioprofiler.profile(), install(), configure()
        "source_tree",  # ioprofiler.integrations found from a clone after a plain install
        "__main__",
        "access",
        "profiling",
        "response",
        "store",  # where followed requests' traces wait to be read
        "wsgi",
        "asgi",
        "flask",
        "django",
        "sinks",
        "recorder",
        "summary",  # the recorder's count of every request
        "timeline",  # the summaries over time, for the command
        "diff",  # two windows of the summaries compared: the regressions
        "logfile",
        "logread",
        "export",
        "export.*",
        "cli",
        "cli.*",
        "testing",
        "snapshot",
        "pytest_plugin",
        "memcached",
    ),
}

# Late imports that may go up, and why: a model's convenience method hands itself to the
# renderer that shows it, imported when called (the renderer imports the model at load).
ALLOWED_LATE = {
    ("ioprofiler.event", "ioprofiler.render.text"): "Event.line(): one line of the listing",
    ("ioprofiler.trace", "ioprofiler.render.text"): "Trace.text(): the listing",
    ("ioprofiler.trace", "ioprofiler.render.console"): "rich.print(trace)",
}

EXTENSIONS = {f"ioprofiler.{path.stem}" for path in (ROOT / "ioprofiler").glob("*.c")}


class Import(NamedTuple):
    importer: str
    imported: str
    line: int
    late: bool  # inside a function


def modules() -> dict[str, Path]:
    """Every module of the distribution by its import name."""
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    """The project's modules that ``module`` imports, wherever the import statement is."""
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, late: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield from edge(alias.name, child.lineno, late)
            elif isinstance(child, ast.ImportFrom):
                base = absolute(child)
                for alias in child.names:
                    name = f"{base}.{alias.name}"
                    yield from edge(
                        name if name in known or name in EXTENSIONS else base, child.lineno, late
                    )
            is_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from visit(child, late or is_function)

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
        return ".".join(parts + ([node.module] if node.module else []))

    def edge(name: str, line: int, late: bool) -> Iterator[Import]:
        while name and name not in known and name not in EXTENSIONS:
            name = name.rpartition(".")[0]  # `import ioprofiler.render.text` names a module
        if name in known and name != module:
            yield Import(module, name, line, late)

    yield from visit(ast.parse(path.read_text(), str(path)), late=False)


def layer_of(module: str) -> str | None:
    name = module.removeprefix("ioprofiler").removeprefix(".")
    for layer, members in MEMBERS.items():
        for member in members:
            if name == member or (member.endswith(".*") and name.startswith(member[:-1])):
                return layer
    return None


@functools.cache
def project_imports() -> tuple[Import, ...]:
    """Every import between the project's modules, but the allowed late ones."""
    known = modules()
    return tuple(
        found
        for module, path in sorted(known.items())
        for found in imports(module, path, known)
        if (found.importer, found.imported) not in ALLOWED_LATE or not found.late
    )


def circles(edges: Iterable[Import]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a circle (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for found in edges:
        graph.setdefault(found.importer, set()).add(found.imported)
        graph.setdefault(found.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found_circles = []

    def strongly_connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph[module]:
            if imported not in index:
                strongly_connect(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found_circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            strongly_connect(module)
    return found_circles


def test_every_module_has_a_layer():
    unplaced = [module for module in modules() if layer_of(module) is None]
    assert not unplaced, f"add to MEMBERS, in the layer whose job it does: {unplaced}"


def test_imports_only_go_down():
    upward = [
        f"{found.importer}:{found.line} ({importer}) imports {found.imported} ({imported})"
        for found in project_imports()
        if (importer := layer_of(found.importer))
        and (imported := layer_of(found.imported))
        and imported != importer
        and imported not in LAYERS[importer]
    ]
    assert not upward, "imports that go up:\n" + "\n".join(upward)


def test_no_import_circles():
    found = circles(project_imports())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_each_allowed_late_import_is_still_made():
    known = modules()
    late = {
        (found.importer, found.imported)
        for module, path in known.items()
        for found in imports(module, path, known)
        if found.late
    }
    assert set(ALLOWED_LATE) <= late


def test_the_check_sees_type_checking_and_late_imports_and_their_circle(tmp_path):
    source = tmp_path / "event.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ioprofiler.trace import Trace\n"
        "def line():\n"
        "    from ioprofiler.render import text\n"
        "    from ioprofiler import _speedups\n"
    )
    found = list(imports("ioprofiler.event", source, modules()))
    assert found == [
        Import("ioprofiler.event", "ioprofiler.trace", 3, late=False),
        Import("ioprofiler.event", "ioprofiler.render.text", 5, late=True),
    ]
    back = Import("ioprofiler.render.text", "ioprofiler.event", 1, late=False)
    assert circles([*found, back]) == [["ioprofiler.event", "ioprofiler.render.text"]]
