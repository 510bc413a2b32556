"""I/O snapshots: a test's calls as plain, diffable lines kept next to the test module.

    db|dbshard01: SELECT count(*) FROM FavoriteListingUser WHERE listing_id = #
    cache|memcache|get_many: [Etsy_Cache_Results:#:# x3]

Numbers, strings and hex ids are normalised, so a snapshot changes when the code's I/O
changes, not when the data does. Durations are left out; hits and misses too, unless asked.
A module's snapshots live in one file, ``tests/test_feed.py`` -> ``tests/test_feed.io``,
one section per test::

    [test_feed]
    db|dbshard01: SELECT …
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ioprofiler.cache_text import key_text
from ioprofiler.event import CACHE, HTTP, Event
from ioprofiler.targets import service_of
from ioprofiler.trace import Trace

_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w.#])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
_HEX_OR_DIGITS = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{6,}(?![0-9A-Za-z])|\d+")
_IN_LIST = re.compile(r"\bIN \((?:#|'…')(?:, (?:#|'…'))*\)", re.I)


def normalise_sql(sql: str) -> str:
    sql = _STRING.sub("'…'", sql)
    sql = _NUMBER.sub("#", sql)
    return _IN_LIST.sub("IN (…)", sql)


def normalise_key(key: object) -> str:
    return _HEX_OR_DIGITS.sub("#", key_text(key))


def _keys(keys: tuple[object, ...]) -> str:
    counted: dict[str, int] = {}
    for key in keys:
        text = normalise_key(key)
        counted[text] = counted.get(text, 0) + 1
    return ", ".join(text if n == 1 else f"{text} x{n}" for text, n in counted.items())


def event_line(event: Event, hits: bool = False) -> str:
    if event.kind == CACHE:
        line = f"cache|{service_of(event.target)}|{event.op}: [{_keys(event.keys)}]"
        if hits and event.hit is not None:
            found = event.hit_count or 0
            looked_up = found + (event.miss_count or 0)
            line += f" {'HIT' if found else 'MISS'}"
            if looked_up != 1:
                line += f" {found}/{looked_up}"
    elif event.kind == HTTP:
        line = f"http|{service_of(event.target)}: {event.op} {normalise_key(event.statement or '')}"
    else:
        line = f"db|{event.target}: {normalise_sql(event.sql or '')}"
    if event.error:
        line += f" [ERROR {event.error}]"
    return line


def snapshot_lines(trace: Trace, hits: bool = False) -> list[str]:
    """The application's calls; connects, pool waits and transaction ends depend on the
    pool's state and stay out, so a snapshot changes only when the code's calls do."""
    return [event_line(e, hits) for e in trace.events if e.is_call]


def snapshot_path(module_file: str | os.PathLike[str]) -> Path:
    return Path(module_file).with_suffix(".io")


def read_sections(path: Path) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    if not path.exists():
        return sections
    current: list[str] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("[") and raw.endswith("]"):
            current = sections.setdefault(raw[1:-1], [])
        elif current is not None and raw.strip():
            current.append(raw)
    return sections


def write_sections(path: Path, sections: dict[str, list[str]]) -> None:
    parts = [
        f"[{name}]\n" + "".join(f"{line}\n" for line in lines) for name, lines in sections.items()
    ]
    temporary = path.with_suffix(".io.tmp")
    temporary.write_text("\n".join(parts), encoding="utf-8")
    os.replace(temporary, path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of one snapshot file (pytest-xdist workers share it)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, one process at a time
        yield
        return
    with open(path.with_suffix(".io.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class SnapshotMismatch(AssertionError):
    pass


def compare(path: Path, name: str, actual: list[str], mode: str) -> str | None:
    """Check (or, in ``update`` mode, write) one section; returns what was written, if anything.

    Raises :class:`SnapshotMismatch` with a unified diff in ``check`` mode.
    """
    __tracebackhide__ = True
    if mode == "update":
        with locked(path):
            sections = read_sections(path)
            expected = sections.get(name)
            if expected == actual:
                return None
            sections[name] = actual
            write_sections(path, sections)
            return "written" if expected is None else "updated"
    # Checking only reads (writes are atomic), so it works in a read-only checkout.
    expected = read_sections(path).get(name)
    if expected is None:
        raise SnapshotMismatch(
            f"no I/O snapshot [{name}] in {path}: run pytest --io-snapshot=update to write it\n"
            + "".join(f"\n  {line}" for line in actual)
        )
    if expected != actual:
        diff = difflib.unified_diff(
            expected, actual, f"{path} [{name}] (snapshot)", "this run", lineterm=""
        )
        raise SnapshotMismatch(
            f"I/O differs from the snapshot [{name}] in {path} "
            "(pytest --io-snapshot=update accepts it):\n" + "\n".join(diff)
        )
    return None
