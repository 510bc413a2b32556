"""The always-on recorder: every request is traced, the ones worth keeping go to a log.

>>> from ioprofiler.recorder import Recorder
>>> app = IOProfilerMiddleware(app, record=Recorder("/var/log/shop/ioprofiler.jsonl"))

A request is kept when it was slower than ``slow_ms``, answered 5xx, had an I/O error,
made more than ``max_calls`` calls, was picked by ``sample`` (a rate from 0 to 1), or
``keep(trace, request, status)`` says so; each kept request is one JSON line (the
``?ioprofiler=json`` schema plus the request's facts and the reasons it was kept). Read
the log with the ``ioprofiler`` command: ``ioprofiler top LOG``.

On the request's thread the recorder only decides and appends to a bounded queue; a
background thread encodes and writes. When the queue is full the request is dropped and
counted (:attr:`Recorder.dropped`), never waited for. Lines still queued are written at
exit. When writing fails (a full disk), the writer warns once, drops and counts the kept
requests until it works again, then warns once more and writes a ``"type": "gap"`` record
saying how many were not recorded, and when.

Every request, kept or not, is also counted: every ``summary_every`` seconds (10) and at
exit the writer adds a ``"type": "summary"`` record per process, per route: requests, status
classes, histograms of duration and I/O time that merge exactly across processes and
hosts (see :mod:`ioprofiler.summary`), calls and time per target, statement shapes, and
findings by kind. On the request's thread this is one append to a queue; the writer
counts the request and adds up its I/O.

Every record carries the release (``release="4f2a1c"``, default the environment variable
``IOPROFILER_RELEASE``), so that before and after a deploy can be told apart.

Privacy by default: bound values are written as ``?`` (``values=True`` keeps them),
query-string values are dropped. Cache keys are written as they are: when they hold
something private (a session id), hide them all (``keys=False``) or the parts that match
patterns (``redact_keys=[r"(?<=^session:)[0-9a-f]+"]`` writes ``session:?``).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import queue
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ioprofiler.logfile import AppendError, SharedLog
from ioprofiler.render.json import trace_dict
from ioprofiler.render.request import RequestInfo
from ioprofiler.sinks import HOST, FinishedRequest
from ioprofiler.summary import ACCURACY, RouteTotals, Summary
from ioprofiler.trace import Trace
from ioprofiler.urls import redact_url

log = logging.getLogger("ioprofiler")

RECORD_VERSION = 1  # the fields this module adds to the trace schema
KeepRule = Callable[[Trace, FinishedRequest, int], Any]
_STOP = object()
_BATCH = 256  # lines written per lock
RELEASE_ENV = "IOPROFILER_RELEASE"
MAX_RELEASE = 200
_FOLD_EVERY = 1.0  # seconds between the writer's adding up of counted requests' I/O


def _number(name: str, value: object, minimum: float, whole: bool = False) -> Any:
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{name} must be {kind} of at least {minimum:g}, not {value!r}")
    return value


class Recorder:
    """A sink for :class:`ioprofiler.wsgi.IOProfilerMiddleware` that keeps the requests worth
    looking at in a JSON-lines log.

    >>> Recorder("/var/log/shop/ioprofiler.jsonl", slow_ms=500, max_calls=200, sample=0.001)
    >>> Recorder(path, keep=lambda trace, request, status: request.route == "/checkout")
    >>> Recorder(path, redact_keys=[r"(?<=^session:)[0-9a-f]+", r"token=[^:]+"])
    >>> Recorder(path, release=os.environ["GIT_SHA"], summary_every=60)

    ``summary_every=None`` counts no requests (no summary records); ``max_routes`` bounds
    the routes a summary names, the rest are counted as ``other``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        slow_ms: float = 500.0,
        max_calls: int | None = None,
        sample: float = 0.0,
        keep: KeepRule | None = None,
        values: bool = False,
        keys: bool = True,
        redact_keys: Iterable[str | re.Pattern[str]] = (),
        max_bytes: int = 100 * 2**20,
        backups: int = 5,
        queue_size: int = 10_000,
        release: str | None = None,
        summary_every: float | None = 10.0,
        max_routes: int = 100,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise TypeError(f"path must be the log file's path, not {path!r}")
        if Path(path).is_dir():
            raise ValueError(f"path must be a file, and {str(path)!r} is a directory")
        self.path = Path(path)
        self.slow_ms = _number("slow_ms", slow_ms, 0)
        self.max_calls = None if max_calls is None else _number("max_calls", max_calls, 0, True)
        self.sample = _number("sample", sample, 0)
        if sample > 1:
            raise ValueError(f"sample is a rate from 0 to 1, not {sample!r}")
        if keep is not None and not callable(keep):
            raise TypeError(
                f"keep must be a callable (trace, request, status) -> bool, not {keep!r}"
            )
        for name, flag in (("values", values), ("keys", keys)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, not {flag!r}")
        self.keep = keep
        self.values = values
        self.keys = keys
        self.redact_keys = _patterns(redact_keys)
        self.max_bytes = _number("max_bytes", max_bytes, 1024, True)
        self.backups = _number("backups", backups, 0, True)
        self.queue_size = _number("queue_size", queue_size, 1, True)
        self.release = release_from_env(release)
        if summary_every is not None:
            _number("summary_every", summary_every, 0.01)
        self.summary_every = summary_every
        self.max_routes = _number("max_routes", max_routes, 1, True)
        self.dropped = 0  # kept requests not written: the queue was full, or writing failed
        self.written = 0
        self.rotations = 0
        _check_writable(self.path, self.max_bytes, self.backups)
        self._reset()
        ref = weakref.ref(self)
        if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
            os.register_at_fork(after_in_child=lambda: _call(ref, "_reset"))
        atexit.register(_call, ref, "close")

    # -- on the request's thread -------------------------------------------------------

    def reasons(self, request: FinishedRequest) -> list[str]:
        """Why ``request`` is kept (empty: it is not)."""
        trace = request.trace
        reasons = []
        if request.duration_ms > self.slow_ms:
            reasons.append("slow")
        if request.status >= 500:
            reasons.append("status")
        for event in trace._events:  # a loop, not any(): no generator per request
            if event.error:
                reasons.append("io_error")
                break
        if self.max_calls is not None and trace.count() > self.max_calls:
            reasons.append("max_calls")
        if self.keep is not None:
            try:
                if self.keep(trace, request, request.status):
                    reasons.append("keep")
            except Exception:
                log.exception("ioprofiler: the recorder's keep rule failed")
        if self.sample and random.random() < self.sample:
            reasons.append("sample")
        return reasons

    def handle(self, request: FinishedRequest) -> None:
        """Count ``request``; keep it if a rule says so: queue it for the writer, or drop
        and count."""
        summary = self._summary
        if summary is not None:
            if self._thread is None:
                self._start()
            summary.count(request)
        reasons = self.reasons(request)
        if not reasons:
            return
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait((request, reasons))
        except queue.Full:
            self._lost(request.started_at)

    def close(self) -> None:
        """Write what is queued and stop the writer (also done at exit)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout=10)
        self._thread = None

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written."""
        if self._thread is not None:
            done = threading.Event()
            self._queue.put(done)
            done.wait(timeout)

    # -- on the writer's thread ----------------------------------------------------------

    def encode(self, request: FinishedRequest, reasons: list[str]) -> bytes:
        """One log line for a kept request."""
        query = request.query
        if query and not self.values:
            query = redact_url(f"?{query}")[1:]  # names stay: q=?&page=?
        path = request.path + (f"?{query}" if query else "")
        info = RequestInfo(request.method, path, str(request.status))
        keys = self._key_shown if self.keys and self.redact_keys else self.keys
        record = trace_dict(request.trace, info, redact=not self.values, keys=keys)
        summary = record["summary"]
        record.update(
            record_version=RECORD_VERSION,
            id=request.request_id,
            time=_iso(request.started_at),
            ts=round(request.started_at, 6),
            host=request.host,
            pid=request.pid,
            method=request.method,
            path=request.path,
            query=query,
            route=request.route,
            status=request.status,
            duration_ms=round(request.duration_ms, 3),
            io_ms=round(sum(t["ms"] for t in record["targets"]), 3),
            calls=summary["calls"],
            reason=reasons[0],
            reasons=reasons,
        )
        if self.release is not None:
            record["release"] = self.release
        if request.error:
            record["error"] = request.error
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    def _key_shown(self, key: str) -> str:
        """A cache key as the log keeps it: each part a ``redact_keys`` pattern matches is
        ``?``."""
        for pattern in self.redact_keys:
            key = pattern.sub("?", key)
        return key

    def _reset(self) -> None:
        """A fresh queue and no writer: at start, and in a forked child (gunicorn's
        workers), where the parent's writer thread does not exist."""
        self._queue: queue.Queue[Any] = queue.Queue(self.queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._log: SharedLog | None = None  # the writer's
        self._gap = _Gap()  # kept requests lost since the last write
        self._failing = False  # writing failed, and it was said once
        self._summary = (
            None if self.summary_every is None else Summary(self.max_routes, self.queue_size)
        )
        self._summary_from = time.time()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="ioprofiler-recorder", daemon=True)
            self._thread = thread
        thread.start()

    def _run(self) -> None:
        try:
            stop = False
            due = time.monotonic() + (self.summary_every or 0)
            while not stop:
                items = self._next_items(due)
                while len(items) < _BATCH:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                kept, waiting = [], []
                for item in items:
                    if item is _STOP:
                        stop = True
                    elif isinstance(item, threading.Event):
                        waiting.append(item)
                    else:
                        kept.append(item)
                summary = None
                if self._summary is not None:
                    if stop or time.monotonic() >= due:
                        summary = self._take_summary()
                        due = time.monotonic() + self.summary_every  # type: ignore[operator]
                    else:
                        self._summary.fold()
                self._write(kept, final=stop, summary=summary)
                for event in waiting:
                    event.set()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _next_items(self, due: float) -> list[Any]:
        """What the queue holds (waiting up to a second, or until the summary is due when
        it sooner is; for ever when no summaries are written)."""
        timeout = None
        if self._summary is not None:
            timeout = min(_FOLD_EVERY, max(0.0, due - time.monotonic()))
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(items) < _BATCH:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _take_summary(self) -> _Counted | None:
        """Every request counted since the last summary record (None: there were none)."""
        assert self._summary is not None
        totals = self._summary.take()
        start, self._summary_from = self._summary_from, time.time()
        return _Counted(totals, start, self._summary_from) if totals else None

    def summary_record(self, totals: dict[str, RouteTotals], start: float, end: float) -> bytes:
        """The ``{"type": "summary", ...}`` line for ``totals`` counted from ``start`` to
        ``end`` (Unix times)."""
        record = {
            "type": "summary",
            "from": _iso(start),
            "from_ts": round(start, 6),
            **self._stamp(end),
            "accuracy": ACCURACY,
            "routes": {route: route_totals.to_json() for route, route_totals in totals.items()},
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    def _stamp(self, now: float) -> dict[str, Any]:
        """The fields every record of this process carries: time, host, pid, release."""
        return stamp(now, self.release)

    def _write(
        self,
        kept: list[tuple[FinishedRequest, list[str]]],
        final: bool,
        summary: _Counted | None = None,
    ) -> None:
        """Write the kept requests, after a gap record when kept requests were lost since
        the last write (also on the ``final`` pass, so the log says so before the process
        ends), and the ``summary`` record last. What cannot be written is counted as lost,
        and said once; a summary that cannot be written goes into the next one."""
        lines, times = [], []
        for request, reasons in kept:
            line = self._encoded(request, reasons)
            if line:
                lines.append(line)
                times.append(request.started_at)
            else:
                self._lost(request.started_at)  # could not encode: logged there
        gap = self._take_gap() if lines or final else _Gap()
        head = [gap.record(self._stamp(time.time()))] if gap.lost else []
        tail = self._summary_lines(summary)
        if not head and not lines and not tail:
            return
        try:
            self.rotations += self._append(head + lines + tail)
        except OSError as exc:
            failure: OSError | None = exc
            done = exc.written if isinstance(exc, AppendError) else 0
        else:
            failure, done = None, len(head) + len(lines) + len(tail)
        if head and not done:
            with self._lock:
                self._gap.merge(gap)  # the gap record was not written either
        if tail and done < len(head) + len(lines) + len(tail):
            self._summary.give_back(summary.totals)  # type: ignore[union-attr]
        written = max(0, done - len(head))
        self.written += written
        for started_at in times[written:]:
            self._lost(started_at)
        if failure is not None:
            self._say_failing(failure)
        elif self._failing:
            self._failing = False
            self._say_working(gap)

    def _summary_lines(self, summary: _Counted | None) -> list[bytes]:
        if summary is None:
            return []
        try:
            return [self.summary_record(summary.totals, summary.start, summary.end)]
        except Exception:
            log.exception("ioprofiler: could not encode a summary record")
            return []

    def _append(self, lines: list[bytes]) -> int:
        """Append to the log, opened on first use (and again after it could not be)."""
        if self._log is None:
            self._log = SharedLog(self.path, self.max_bytes, self.backups)
        return self._log.append(lines)

    def _say_failing(self, exc: OSError) -> None:
        """One warning, without a traceback, when writing starts failing."""
        if not self._failing:
            self._failing = True
            log.warning(
                "ioprofiler: could not write to %s (%s); kept requests are dropped and "
                "counted until writing works again",
                self.path, exc.strerror or exc,
            )  # fmt: skip

    def _say_working(self, gap: _Gap) -> None:
        """One warning when writing works again, with the kept requests lost meanwhile
        (none, when only a summary could not be written: it is in the next one)."""
        if not gap.lost:
            log.warning("ioprofiler: writing to %s works again", self.path)
            return
        log.warning(
            "ioprofiler: writing to %s works again; %d kept requests were not recorded "
            "between %s and %s",
            self.path, gap.lost, _iso(gap.first), _iso(gap.last),
        )  # fmt: skip

    def _take_gap(self) -> _Gap:
        with self._lock:
            gap, self._gap = self._gap, _Gap()
        return gap

    def _lost(self, started_at: float) -> None:
        """Count a kept request that was not written (the queue was full, or writing
        failed), for :attr:`dropped` and the next gap record."""
        with self._lock:
            self.dropped += 1
            self._gap.add(started_at)

    def _encoded(self, request: FinishedRequest, reasons: list[str]) -> bytes:
        try:
            return self.encode(request, reasons)
        except Exception:
            log.exception("ioprofiler: could not encode a kept request")
            return b""


def _patterns(patterns: object) -> tuple[re.Pattern[str], ...]:
    """``redact_keys`` compiled, or a clear error naming what is wrong."""
    if isinstance(patterns, (str, re.Pattern)) or not isinstance(patterns, Iterable):
        raise TypeError(f"redact_keys must be a list of regular expressions, not {patterns!r}")
    compiled = []
    for pattern in patterns:
        if not isinstance(pattern, (str, re.Pattern)):
            raise TypeError(f"redact_keys holds regular expressions, not {pattern!r}")
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            message = f"redact_keys: {pattern!r} is not a regular expression: {exc}"
            raise ValueError(message) from None
    return tuple(compiled)


@dataclass
class _Counted:
    """The totals a summary record is made of, and the time they were counted in."""

    totals: dict[str, RouteTotals]
    start: float
    end: float


class _Gap:
    """Kept requests that were not written: how many, and when the first and last came."""

    def __init__(self) -> None:
        self.lost = 0
        self.first = math.inf
        self.last = -math.inf

    def add(self, started_at: float) -> None:
        self.lost += 1
        self.first = min(self.first, started_at)
        self.last = max(self.last, started_at)

    def merge(self, other: _Gap) -> None:
        self.lost += other.lost
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)

    def record(self, stamp: dict[str, Any]) -> bytes:
        """The log line that says so: ``{"type": "gap", "lost": N, "from": T1, "until": T2…}``
        (``stamp``: the fields every record carries)."""
        record = {
            "type": "gap",
            "lost": self.lost,
            "from": _iso(self.first),
            "until": _iso(self.last),
            **stamp,
        }
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def stamp(now: float, release: str | None) -> dict[str, Any]:
    """The fields every record a process writes carries, besides its own: when, where,
    which release (left out when there is none), and the record schema's version."""
    fields = {
        "time": _iso(now),
        "ts": round(now, 6),
        "host": HOST,
        "pid": os.getpid(),
        "record_version": RECORD_VERSION,
    }
    if release is not None:
        fields["release"] = release
    return fields


def release_from_env(release: str | None) -> str | None:
    """``release``, or the environment's ``IOPROFILER_RELEASE`` when None (or not set):
    checked, at most 200 characters of text."""
    if release is None:
        release = os.environ.get(RELEASE_ENV) or None
        if release is None:
            return None
    if not isinstance(release, str) or not release.strip():
        raise ValueError(f"release must be a non-empty string such as '4f2a1c', not {release!r}")
    release = release.strip()
    if len(release) > MAX_RELEASE or not release.isprintable():
        raise ValueError(
            f"release must be at most {MAX_RELEASE} printable characters, not {release!r}"
        )
    return release


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def _check_writable(path: Path, max_bytes: int, backups: int) -> None:
    """Open the log and its lock file once, so that a log this process may not write is an
    error at construction, not a warning later."""
    try:
        SharedLog(path, max_bytes, backups).close()
    except OSError as exc:
        raise type(exc)(
            exc.errno, f"the recorder cannot write its log {str(path)!r}: {exc.strerror}"
        ) from exc


def _call(ref: weakref.ref[Recorder], method: str) -> None:
    recorder = ref()
    if recorder is not None:
        getattr(recorder, method)()
