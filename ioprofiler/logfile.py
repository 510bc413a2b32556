"""A JSON-lines log that several processes append to, rotated by size.

>>> log = SharedLog("/var/log/shop/ioprofiler.jsonl", max_bytes=100 * 2**20, backups=5)
>>> log.append([b'{"id": "a"}\\n', b'{"id": "b"}\\n'])
>>> log.close()

Every writer appends whole lines with one ``write`` on an ``O_APPEND`` descriptor while
holding an advisory ``fcntl`` lock on ``PATH.lock``, so lines from different processes never
interleave. Each batch starts on a line boundary: when the file does not end with a newline
(a crash, or another tool, left half a line) one is written first, and a write that fails
part way (a full disk) is truncated back, so no half record stays behind to glue onto the
next one. Rotation (``PATH`` -> ``PATH.1`` -> … -> ``PATH.<backups>``) happens under the same
lock; a writer that finds ``PATH`` is no longer the file it has open (another process rotated
it) re-opens it before writing. Readers follow ``PATH`` across rotation (see
:mod:`ioprofiler.logread`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path


class AppendError(OSError):
    """Writing failed part way through :meth:`SharedLog.append`: the first ``written`` lines
    are in the log, whole; the others are not, not even in part."""

    def __init__(self, cause: OSError, written: int) -> None:
        super().__init__(cause.errno, cause.strerror, cause.filename)
        self.written = written


def rotated_paths(path: str | os.PathLike[str], backups: int) -> list[Path]:
    """``PATH.1`` … ``PATH.<backups>``: newest first."""
    return [Path(f"{path}.{n}") for n in range(1, backups + 1)]


class SharedLog:
    """Append whole lines to ``path``; rotate at ``max_bytes``, keeping ``backups`` old files."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        try:
            self._open()  # an existing log this process may not write: fail now
        except OSError:
            self.close()
            raise

    def append(self, lines: Iterable[bytes]) -> int:
        """Write ``lines`` (each ending in a newline) at the end of the log; returns the
        number of rotations this took (0 or more). Raises :class:`AppendError` when a write
        fails, having written only whole lines."""
        rotations = 0
        written = 0
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            size = self._current_size()
            if self._ends_mid_line(size):
                self._write(b"\n")
                size += 1
            batch: list[bytes] = []
            batch_size = 0
            for line in lines:
                if batch and size + batch_size + len(line) > self.max_bytes:
                    self._write(b"".join(batch))
                    written += len(batch)
                    batch, batch_size = [], 0
                    size = self._current_size()
                if size and size + len(line) > self.max_bytes:
                    self._rotate()
                    rotations += 1
                    size = 0
                batch.append(line)
                batch_size += len(line)
            if batch:
                self._write(b"".join(batch))
        except OSError as exc:
            raise AppendError(exc, written) from exc
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        return rotations

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- under the lock ----------------------------------------------------------------

    def _current_size(self) -> int:
        """The size of ``path``, re-opening it first if another process rotated it away."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            stat = None
        if self._fd is None or stat is None or (stat.st_dev, stat.st_ino) != self._inode:
            self._open()
            stat = os.fstat(self._fd)  # type: ignore[arg-type]
        return stat.st_size

    def _open(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None  # if the new one cannot be opened, none is open
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC  # read: the last byte
        self._fd = os.open(self.path, flags, 0o640)
        stat = os.fstat(self._fd)
        self._inode = (stat.st_dev, stat.st_ino)

    def _ends_mid_line(self, size: int) -> bool:
        """Whether the log's last line has no newline yet."""
        assert self._fd is not None
        return size > 0 and os.pread(self._fd, 1, size - 1) != b"\n"

    def _write(self, data: bytes) -> None:
        """Write all of ``data``, or, when a write fails, none of it."""
        assert self._fd is not None
        start = os.fstat(self._fd).st_size
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise

    def _rotate(self) -> None:
        older = rotated_paths(self.path, self.backups)
        if older:
            older[-1].unlink(missing_ok=True)
            for newer, oldest in zip(reversed(older[:-1]), reversed(older[1:]), strict=True):
                if newer.exists():
                    os.replace(newer, oldest)
            os.replace(self.path, older[0])
        else:
            os.unlink(self.path)
        self._open()
