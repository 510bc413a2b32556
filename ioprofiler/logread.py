"""Reading the recorder's log: every file of it (rotated, gzipped), filtered, or followed live.

>>> for record in records("/var/log/shop/ioprofiler.jsonl", Filter(min_ms=500)):
...     print(record["id"], record["duration_ms"])
>>> for record in follow("/var/log/shop/ioprofiler.jsonl"):     # like tail -F
...     print(record["path"])
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

_ROTATED = re.compile(r"\.(\d+)(\.gz)?$")


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of the log at ``path``, oldest first: ``PATH.5`` … ``PATH.1`` (or their
    ``.gz``), then ``PATH``. A path to one file (``PATH.2.gz``) is that file alone."""
    path = Path(path)
    if _ROTATED.search(path.name) or path.suffix == ".gz":
        return [path]
    rotated = []
    for candidate in path.parent.glob(glob_escape(path.name) + ".*"):
        match = _ROTATED.fullmatch(candidate.name[len(path.name) :])
        if match:
            rotated.append((int(match.group(1)), candidate))
    rotated.sort(key=lambda item: -item[0])
    files = [candidate for _, candidate in rotated]
    if path.exists():
        files.append(path)
    if not files:
        raise FileNotFoundError(f"no log at {path} (nor rotated files beside it)")
    return files


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """Every complete line of the log, oldest first, streamed."""
    for file in log_files(path):
        try:
            handle = _open(file)
        except FileNotFoundError:  # rotated away while we read the others
            continue
        with handle:
            yield from handle


def parse(line: bytes) -> dict[str, Any] | None:
    """A line as a record; None for a line that is not one (torn by a crash, foreign)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "id" in record else None


def parse_time(text: str) -> float:
    """``2026-11-27T03:12``, ``2026-11-27 03:12:30``, ``-1h``, ``-30m``, ``-2d``: a Unix time.
    Times without a zone are UTC, as the log's are."""
    relative = re.fullmatch(r"-(\d+(?:\.\d+)?)([smhd])", text.strip())
    if relative:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[relative.group(2)]
        return time.time() - float(relative.group(1)) * unit
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use 2026-11-27T03:12 or -1h)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@dataclass(frozen=True)
class Filter:
    """Which kept requests to look at; every condition given must hold."""

    path: str | None = None  # a glob: /listing/*
    route: str | None = None
    min_ms: float | None = None
    status: str | None = None  # 500, or 5xx
    since: float | None = None
    until: float | None = None
    id: str | None = None  # the request id, or its beginning

    def __call__(self, record: dict[str, Any]) -> bool:
        if self.id is not None and not str(record.get("id", "")).startswith(self.id):
            return False
        if self.min_ms is not None and record.get("duration_ms", 0) < self.min_ms:
            return False
        if self.route is not None and record.get("route") != self.route:
            return False
        if self.path is not None and not fnmatch.fnmatchcase(record.get("path", ""), self.path):
            return False
        if self.status is not None and not _status_matches(record.get("status"), self.status):
            return False
        ts = record.get("ts", 0)
        if self.since is not None and ts < self.since:
            return False
        return self.until is None or ts <= self.until


def _status_matches(status: Any, wanted: str) -> bool:
    text = str(status)
    wanted = wanted.strip().lower()
    if len(wanted) == 3 and wanted.endswith("xx"):
        return text[:1] == wanted[0]
    return text == wanted


def records(path: str | os.PathLike[str], keep: Filter | None = None) -> Iterator[dict[str, Any]]:
    """The kept requests in the log, oldest first, that pass ``keep``."""
    for line in lines(path):
        record = parse(line)
        if record is not None and (keep is None or keep(record)):
            yield record


def follow(
    path: str | os.PathLike[str],
    keep: Filter | None = None,
    poll: float = 0.2,
    from_start: bool = False,
    stop_after: timedelta | None = None,
) -> Iterator[dict[str, Any]]:
    """Kept requests as they are written, across rotation (like ``tail -F``). A rotated file
    is read to its end, then the file that came after it, even if that one has been rotated
    too in the meantime. Starts at the end of the log unless ``from_start``."""
    path = Path(path)
    handle: IO[bytes] | None = None
    inode: tuple[int, int] | None = None
    pending = b""
    deadline = None if stop_after is None else time.monotonic() + stop_after.total_seconds()
    at_end = not from_start and path.exists()  # a log that appears later is read whole
    while deadline is None or time.monotonic() < deadline:
        if handle is None:
            following, expected = _successor(path, inode)
            try:
                handle = open(following, "rb")
            except FileNotFoundError:
                time.sleep(poll)
                continue
            opened = _inode(os.fstat(handle.fileno()))
            if expected is not None and opened != expected:  # renamed meanwhile: look again
                handle.close()
                handle = None
                continue
            inode = opened
            if at_end:
                handle.seek(0, os.SEEK_END)
                at_end = False
        rotated = _replaced(path, inode)  # before reading: no line is written to it after
        chunk = handle.read()
        if chunk:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                record = parse(line)
                if record is not None and (keep is None or keep(record)):
                    yield record
        if rotated:  # that was the rest of the old file: go on with the next one
            handle.close()
            handle, pending = None, b""
        elif not chunk:
            time.sleep(poll)
    if handle is not None:
        handle.close()


def _inode(stat: os.stat_result) -> tuple[int, int]:
    return (stat.st_dev, stat.st_ino)


def _successor(path: Path, inode: tuple[int, int] | None) -> tuple[Path, tuple[int, int] | None]:
    """The file written after the one with ``inode`` and its inode: the next newer rotated
    file, or the log itself (also when that file is gone, or there was none yet)."""
    if inode is None:
        return path, None
    for _ in range(1000):
        try:
            files = [f for f in log_files(path) if f.suffix != ".gz"]
            inodes = [_inode(os.stat(f)) for f in files]
            break
        except FileNotFoundError:  # a writer is rotating right now: look again
            time.sleep(0.001)
    else:
        return path, None
    for older, newer, newer_inode in zip(inodes, files[1:], inodes[1:]):  # noqa: B905
        if older == inode:
            return newer, newer_inode
    return path, None


def _replaced(path: Path, inode: tuple[int, int] | None) -> bool:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return False  # between rename and re-create: keep reading the old one for now
    return _inode(stat) != inode
