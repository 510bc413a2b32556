"""Reading the recorder's log: every file of it (rotated, gzipped), filtered, or followed live.

>>> for record in records("/var/log/shop/ioprofiler.jsonl", Filter(min_ms=500)):
...     print(record["id"], record["duration_ms"])
>>> for record in follow("/var/log/shop/ioprofiler.jsonl"):     # like tail -F
...     print(record["path"])

Everything in the log is untrusted: a line another tool wrote, a line torn by a crash, bytes
that are not UTF-8. A reader takes only lines whose fields have the types the recorder
writes, and counts the others in a :class:`Skipped` it is given:

>>> skipped = Skipped()
>>> list(records("ioprofiler.jsonl", skipped=skipped)); skipped.message()
'skipped 2 lines that are not kept requests (the first: ioprofiler.jsonl line 7)'

Records with a ``type`` are not requests and not damage: ``"gap"`` (requests the recorder
could not write) and ``"marker"`` (``ioprofiler mark``: a deploy) are notices, which
:func:`entries` yields in their place; ``"summary"`` records (every request, counted per
route) are read by :func:`summaries`, merged by the commands that use them:

>>> from ioprofiler.summary import merge_routes
>>> routes = merge_routes(summaries("ioprofiler.jsonl", Filter(since=parse_time("-1h"))))

Readers that add a large log up read no more of a line than they use: :func:`summaries`
parses only summary and marker lines, and :func:`kept_and_summaries` a kept request's own
fields and only the events (and fields of them) asked for; a line either passes over must be
whole as the recorder writes it (:func:`whole`, :func:`one_record`), else it is parsed and
counted when damaged:

>>> for kind, record in kept_and_summaries("ioprofiler.jsonl", events=STATEMENTS):
...     print(record["id"], [event["statement"] for event in record["events"]])
"""

from __future__ import annotations

import fnmatch
import functools
import gzip
import io
import json
import operator
import os
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from ioprofiler.event import CONNECTION_OPS
from ioprofiler.sql_text import visible
from ioprofiler.summary import RouteTotals
from ioprofiler.words import counted

_ROTATED = re.compile(r"\.(\d+)(\.gz)?$")  # PATH.3, PATH.3.gz
# logrotate's dateext: PATH-20261206, PATH-2026120603, PATH-2026-12-06, PATH-20261206.gz
_DATED = re.compile(r"-(\d{4}-?\d{2}-?\d{2}[\d-]*)(\.gz)?$")


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of the log at ``path``, oldest first: logrotate's date-named files
    (``PATH-20261205``, ``PATH-20261206.gz``) by date, then ``PATH.5`` … ``PATH.1`` (or
    their ``.gz``), then ``PATH``. A path to one rotated file (``PATH.2.gz``) is that file
    alone."""
    path = Path(path)
    if _ROTATED.search(path.name) or _DATED.search(path.name) or path.suffix == ".gz":
        return [path]
    dated, numbered = [], []
    for candidate in path.parent.glob(glob_escape(path.name) + "[.-]*"):
        suffix = candidate.name[len(path.name) :]
        if match := _ROTATED.fullmatch(suffix):
            numbered.append((-int(match.group(1)), candidate))
        elif match := _DATED.fullmatch(suffix):
            dated.append((match.group(1).replace("-", ""), candidate))
    files = [candidate for _, candidate in sorted(dated) + sorted(numbered)]
    if path.exists():
        files.append(path)
    if not files:
        raise FileNotFoundError(f"no log at {path} (nor rotated files beside it)")
    return files


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


_BUFFER = 1 << 20  # a kept request's line is tens of KB: read in 8 KB pieces, each is
#                   joined again; a buffer of 1 MB holds dozens (a third of the time)


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return io.BufferedReader(gzip.GzipFile(path, "rb"), _BUFFER)  # type: ignore[arg-type]
    return open(path, "rb", buffering=_BUFFER)


class Skipped:
    """The lines a reader could not take as records: torn by a crash, written by another
    tool, not JSON, not UTF-8, fields of the wrong type. Counted, the first one named.

    >>> skipped = Skipped()
    >>> skipped.add(Path("io.jsonl"), 7)
    >>> skipped.message()
    'skipped 1 line that is not a kept request (the first: io.jsonl line 7)'
    """

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None  # "io.jsonl.1 line 17"

    def add(self, file: Path, number: int) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{file} line {number}"

    def message(self) -> str | None:
        """One sentence for stderr, or None when nothing was skipped."""
        if not self.count:
            return None
        what = "that is not a kept request" if self.count == 1 else "that are not kept requests"
        return (
            f"skipped {counted(self.count, 'line')} {what} (the first: {visible(self.first or '')})"
        )


def lines(path: str | os.PathLike[str], skipped: Skipped | None = None) -> Iterator[bytes]:
    """Every line of the log, oldest first, streamed."""
    for _file, _number, line in _numbered_lines(path, skipped or Skipped()):
        yield line


def numbered_lines(
    path: str | os.PathLike[str], skipped: Skipped
) -> Iterator[tuple[Path, int, bytes]]:
    """``(file, line number, line)`` for every line of every file of the log, oldest first,
    unparsed: for a reader that picks the lines it parses (and names those it skips)."""
    return _numbered_lines(path, skipped)


def _numbered_lines(
    path: str | os.PathLike[str], skipped: Skipped
) -> Iterator[tuple[Path, int, bytes]]:
    """``(file, line number, line)`` for every line of every file of the log. A gzipped file
    that ends early or is damaged counts as one skipped line where it breaks off."""
    for file in log_files(path):
        try:
            handle = _open(file)
        except FileNotFoundError:  # rotated away while we read the others
            continue
        number = 0
        with handle:
            try:
                for number, line in enumerate(handle, start=1):  # noqa: B007
                    yield file, number, line
            except (OSError, EOFError, zlib.error):
                skipped.add(file, number + 1)


REQUEST, GAP, MARKER, SUMMARY = "request", "gap", "marker", "summary"
NOTICES = (GAP, MARKER)  # shown among the requests, in their place


def classify(line: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """What a line of the log is: ``("request", record)``, ``("gap", record)``,
    ``("marker", record)``, ``("summary", record)`` (its ``routes`` read into
    :class:`~ioprofiler.summary.RouteTotals`), ``(None, None)`` for a line that is not a
    record (torn, foreign, wrong types), and ``("other", None)`` for a record of another
    type (what a newer recorder may write): not damage."""
    try:
        record = json.loads(line)
    except ValueError:  # not JSON, not UTF-8
        return None, None
    if not isinstance(record, dict):
        return None, None
    kind = record.get("type", REQUEST)
    if kind == REQUEST:
        return (REQUEST, record) if _is_request(record) else (None, None)
    if kind == GAP:
        return (GAP, record) if _fields_fit(record, _GAP_FIELDS) else (None, None)
    if kind == MARKER:
        fits = _fields_fit(record, _MARKER_FIELDS, required=("text", "ts"))
        return (MARKER, record) if fits else (None, None)
    if kind == SUMMARY:
        return (SUMMARY, record) if _summary_read(record) else (None, None)
    return ("other", None) if isinstance(kind, str) else (None, None)


def parse(line: bytes) -> dict[str, Any] | None:
    """A line as a kept request; None for a line that is not one."""
    kind, record = classify(line)
    return record if kind == REQUEST else None


# Exact types, as json.loads makes them (a bool is not a number here).
_NONE = type(None)
_TEXT = frozenset({str})
_NUMBER = frozenset({int, float})
_INT = frozenset({int})
_MAYBE_TEXT = frozenset({str, _NONE})
_MAYBE_NUMBER = frozenset({int, float, _NONE})
_MAYBE_INT = frozenset({int, _NONE})
_LIST = frozenset({list})
_MAYBE_LIST = frozenset({list, _NONE})

# The fields the readers use, with the types the recorder writes them with (present or not).
_REQUEST_FIELDS = {
    "id": _TEXT,
    "time": _TEXT,
    "ts": _NUMBER,
    "host": _TEXT,
    "pid": _INT,
    "method": _TEXT,
    "path": _TEXT,
    "query": _MAYBE_TEXT,
    "route": _MAYBE_TEXT,
    "status": frozenset({int, str}),
    "duration_ms": _NUMBER,
    "elapsed_ms": _NUMBER,
    "io_ms": _NUMBER,
    "calls": _INT,
    "reason": _TEXT,
    "reasons": _MAYBE_LIST,
    "events": _LIST,
    "targets": _LIST,
    "summary": frozenset({dict}),
    "request": frozenset({dict, _NONE}),
}
_EVENT_FIELDS = {
    "kind": _TEXT,
    "op": _TEXT,
    "target": _TEXT,
    "start_ms": _MAYBE_NUMBER,
    "duration_ms": _MAYBE_NUMBER,
    "statement": _MAYBE_TEXT,
    "sql": _MAYBE_TEXT,
    "keys": _MAYBE_LIST,
    "missed_keys": _MAYBE_LIST,
    "hit": frozenset({bool, _NONE}),
    "hit_count": _MAYBE_INT,
    "miss_count": _MAYBE_INT,
    "rows": _MAYBE_INT,
    "note": _MAYBE_TEXT,
    "error": _MAYBE_TEXT,
    "error_message": _MAYBE_TEXT,
    "callsite": _MAYBE_TEXT,
    "line": _MAYBE_TEXT,
}
_TARGET_FIELDS = {
    "kind": _TEXT,
    "target": _TEXT,
    "calls": _INT,
    "ms": _NUMBER,
    "errors": _INT,
    "ops": frozenset({dict, _NONE}),
}
_OP_FIELDS = {"count": _INT, "ms": _NUMBER, "errors": _INT}
_REQUEST_INFO_FIELDS = {"method": _TEXT, "path": _TEXT, "status": _TEXT}
_SUMMARY_FIELDS = {"profiler_errors": _INT}
_GAP_FIELDS = {
    "lost": _INT,
    "from": _TEXT,
    "until": _TEXT,
    "ts": _NUMBER,
    "host": _TEXT,
    "pid": _INT,
}


_MARKER_FIELDS = {
    "text": _TEXT,
    "time": _TEXT,
    "ts": _NUMBER,
    "host": _TEXT,
    "pid": _INT,
    "release": _TEXT,
}
_SUMMARY_RECORD_FIELDS = {
    "from_ts": _NUMBER,
    "ts": _NUMBER,
    "host": _TEXT,
    "pid": _INT,
    "release": _TEXT,
    "routes": frozenset({dict}),
}


def _summary_read(record: dict[str, Any]) -> bool:
    """Whether a summary record is whole; if so its ``routes`` are read in place."""
    required = ("from_ts", "ts", "routes")
    if not _fields_fit(record, _SUMMARY_RECORD_FIELDS, required):
        return False
    try:
        record["routes"] = {
            route: RouteTotals.from_json(totals) for route, totals in record["routes"].items()
        }
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _is_request(record: dict[str, Any]) -> bool:
    """Whether every field the readers use has its type, down to each event and total."""
    if type(record.get("id")) is not str or not _fields_fit(record, _REQUEST_FIELDS):
        return False
    return (
        _texts(record.get("reasons"))
        and all(_is_event(event) for event in record.get("events") or ())
        and all(_is_total(total) for total in record.get("targets") or ())
        and _fields_fit(record.get("request") or {}, _REQUEST_INFO_FIELDS)
        and _fields_fit(record.get("summary") or {}, _SUMMARY_FIELDS)
    )


def _is_event(event: Any) -> bool:
    return (
        type(event) is dict
        and _fields_fit(event, _EVENT_FIELDS, ("kind", "op", "target"))
        and _texts(event.get("keys"))
        and _texts(event.get("missed_keys"))
    )


def _is_total(total: Any) -> bool:
    return (
        type(total) is dict
        and _fields_fit(total, _TARGET_FIELDS, ("kind", "target", "calls", "ms"))
        and all(
            type(part) is dict and _fields_fit(part, _OP_FIELDS, ("count", "ms", "errors"))
            for part in (total.get("ops") or {}).values()
        )
    )


def _texts(values: list[Any] | None) -> bool:
    return values is None or all(type(value) is str for value in values)


def _fields_fit(
    record: dict[str, Any], fields: dict[str, frozenset[type]], required: tuple[str, ...] = ()
) -> bool:
    """Whether each field of ``record`` named in ``fields`` has one of its types, and the
    ``required`` ones are there."""
    for name, value in record.items():
        types = fields.get(name)
        if types is not None and type(value) not in types:
            return False
    return all(name in record for name in required)


RELATIVE_TIME = re.compile(r"-(\d+(?:\.\d+)?)([smhd])")  # -1h, -30m, -2d, -90s


def parse_time(text: str) -> float:
    """``2026-11-27T03:12``, ``2026-11-27 03:12:30``, ``-1h``, ``-30m``, ``-2d``: a Unix time.
    Times without a zone are UTC, as the log's are."""
    relative = RELATIVE_TIME.fullmatch(text.strip())
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
    route: str | None = None  # a glob too: /listing/<int:id>, /listing/*
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
        if self.route is not None and not fnmatch.fnmatchcase(
            record.get("route") or "", self.route
        ):
            return False
        if self.path is not None and not fnmatch.fnmatchcase(record.get("path", ""), self.path):
            return False
        if self.status is not None and not _status_matches(record.get("status"), self.status):
            return False
        return self.in_time(record)

    def in_time(self, record: dict[str, Any]) -> bool:
        """Whether the record (a request or a gap) is within ``since`` and ``until``."""
        ts = record.get("ts", 0)
        if self.since is not None and ts < self.since:
            return False
        return self.until is None or ts <= self.until


def summaries_note(keep: Filter) -> str | None:
    """One line saying which of ``keep``'s conditions the summary records cannot apply
    (they count every request per route, with no path, status or duration of its own):
    ``--path``, ``--status``, ``--min-ms``; None when none is given. ``--route``,
    ``--since`` and ``--until`` apply to them."""
    given = [
        f"{option} {value}"
        for option, value in (
            ("--path", keep.path),
            ("--status", keep.status),
            ("--min-ms", None if keep.min_ms is None else f"{keep.min_ms:g}"),
        )
        if value is not None
    ]
    if not given:
        return None
    return visible(
        f"note: {', '.join(given)} not applied to the figures from summaries, which count "
        "every request per route, with no path, status or duration of its own (--route, "
        "--since and --until apply)"
    )


def _status_matches(status: Any, wanted: str) -> bool:
    text = str(status)
    wanted = wanted.strip().lower()
    if len(wanted) == 3 and wanted.endswith("xx"):
        return text[:1] == wanted[0]
    return text == wanted


_SUMMARY_OR_MARKER = re.compile(rb'"type"\s*:\s*"(?:summary|marker)"')
# The lines a recorder writes begin so: kept requests, and notices (gaps, markers, summaries).
_KEPT_START = b'{"schema":"ioprofiler.trace"'
_RECORDER_LINE = (_KEPT_START, b'{"type":')


def whole(line: bytes) -> bool:
    """Whether a line a reader does not parse is a whole line a recorder wrote (not torn,
    not another tool's): its beginning and its end, without parsing the rest."""
    return line.startswith(_RECORDER_LINE) and line.rstrip().endswith(b"}")


def one_record(line: bytes) -> bool:
    """Whether no other record begins inside the line: a line torn by a crash runs on into
    the next one written, which begins as every recorder line does."""
    return line.rfind(b'{"schema":', 1) < 0 and line.rfind(b'{"type":', 1) < 0  # as fast


def unread_damaged(line: bytes) -> bool:
    """Whether a line a reader passes over unread is damage to count: one that is not a
    whole recorder line (or holds the start of another) and does not read as a record."""
    if whole(line) and one_record(line):
        return False
    return classify(line)[0] is None


def summaries(
    path: str | os.PathLike[str],
    keep: Filter | None = None,
    skipped: Skipped | None = None,
    markers: bool = False,
) -> Iterator[dict[str, Any]]:
    """The summary records whose end is within ``keep``'s time, oldest first, each with its
    ``routes`` as :class:`~ioprofiler.summary.RouteTotals` (only those matching
    ``keep.route``); with ``markers``, the markers in that time too, in their place.
    Lines that cannot be summaries or markers are passed over unread: with ``skipped``,
    those that are not whole recorder lines (torn, another tool's) are read to tell whether
    they are damage, and damaged lines are counted in it; without it (a reader that has
    counted them already) they are not looked at."""
    wanted = (SUMMARY, MARKER) if markers else (SUMMARY,)
    unread = skipped is None
    skipped = skipped or Skipped()
    for file, number, line in _numbered_lines(path, skipped):
        if not line.strip():
            continue
        if not _SUMMARY_OR_MARKER.search(line):
            if not unread and unread_damaged(line):
                skipped.add(file, number)
            continue
        kind, record = classify(line)
        if kind is None:
            skipped.add(file, number)
        elif kind in wanted and record is not None and (keep is None or keep.in_time(record)):
            yield _route_kept(record, keep) if kind == SUMMARY else record


def _route_kept(summary: dict[str, Any], keep: Filter | None) -> dict[str, Any]:
    """The summary with only the routes ``keep.route`` matches."""
    if keep is not None and keep.route is not None:
        summary["routes"] = {
            route: totals
            for route, totals in summary["routes"].items()
            if fnmatch.fnmatchcase(route, keep.route)
        }
    return summary


# -- kept requests read in part, for the readers that add them up ---------------------------

# Which events of a kept request a reader asks for, and which of their fields it reads.
EVENTS = "events"  # every event: index, kind, target, op, duration_ms, statement, sql, callsite
TARGETS = "targets"  # every event: target, duration_ms
STATEMENTS = "statements"  # events with a statement or sql: kind, target, op, duration_ms,
#                            statement, sql
WAITS = "waits"  # round trips around the calls (event.CONNECTION_OPS): op, target, duration_ms
SITED = "sited"  # events with a callsite: target, duration_ms, callsite

# A kept request as the recorder lays it out: ``{"schema":"ioprofiler.trace", …, "findings":
# […], "events":[{"index":1,"kind":…,"target":…,"op":…,"start_ms":…,"duration_ms":…,
# "statement":…,"sql":…, …,"callsite":…,"line":…}, …],"record_version":1,"id":…, …}``: the
# request's own fields come last, after the events. A quotation mark inside a string is
# escaped, so ``,"events":[`` or ``{"index":`` found in the raw line is JSON's structure.
_TAIL = b',"record_version":'
_EVENTS_KEY = b',"events":['
_FINDINGS_KEY = b',"findings":['
_TAIL_KEYS = frozenset(
    {
        "record_version", "id", "time", "ts", "host", "pid", "method", "path", "query",
        "route", "status", "duration_ms", "io_ms", "calls", "reason", "reasons", "release",
        "error",
    }
)  # fmt: skip
# Possessive on 3.11 and later (``*+``, ``?+``; 3.10's re has no such repeats, and the same
# patterns match the same there): what each repeat takes, no match could give back (a
# string's characters are never its closing quote or a backslash; a number's digits never
# what follows it), so the engine keeps no place to go back to: a quarter less time.
_P = b"+" if sys.version_info >= (3, 11) else b""
_STRING = rb'"[^"\\]*' + _P + rb'(?:\\.[^"\\]*' + _P + rb")*" + _P + rb'"'
_INTEGER = rb"-?" + _P + rb"(?:0|[1-9][0-9]*" + _P + rb")"
_NUMERIC = (
    _INTEGER + rb"(?:\.[0-9]+" + _P + rb")?" + _P + rb"(?:[eE][-+]?" + _P + rb"[0-9]+" + _P
    + rb")?" + _P
)  # fmt: skip
_MAYBE_STRING = rb"(" + _STRING + rb"|null)"
# The fields of an event the readers add up, each only in a type the recorder writes it with
# (as logread._EVENT_FIELDS): index, kind, target, op, duration_ms, statement, sql. Every
# ``{"index":`` matches, the fields after it only when they are so: an event that is not
# laid out so gives empty tokens (:data:`_UNREAD`), and one pass finds every event and tells
# whether each is whole (no second pass counts them).
_EVENT_HEAD = re.compile(
    rb'\{"index":(?:(' + _INTEGER + rb'|null),"kind":(' + _STRING + rb'),"target":('
    + _STRING + rb'),"op":(' + _STRING + rb'),"start_ms":(?:' + _NUMERIC + rb'|null),'
    rb'"duration_ms":(' + _NUMERIC + rb'|null),"statement":' + _MAYBE_STRING
    + rb',"sql":' + _MAYBE_STRING + rb",)?"
)  # fmt: skip
# The same events read only to their duration (index, kind, target, op, duration_ms).
_EVENT_SHORT = re.compile(
    rb'\{"index":(?:(' + _INTEGER + rb'|null),"kind":(' + _STRING + rb'),"target":('
    + _STRING + rb'),"op":(' + _STRING + rb'),"start_ms":(?:' + _NUMERIC + rb'|null),'
    rb'"duration_ms":(' + _NUMERIC + rb'|null),)?'
)  # fmt: skip
# An event's tokens when its fields are not laid out as the recorder writes them.
_UNREAD = {_EVENT_HEAD: (b"",) * _EVENT_HEAD.groups, _EVENT_SHORT: (b"",) * _EVENT_SHORT.groups}
_EVENT_SITE = re.compile(rb',"callsite":' + _MAYBE_STRING + rb',"line":')  # its line unread


class _Tokens(dict[bytes, Any]):
    """JSON tokens read once: a log's targets, ops, statements and callsites repeat."""

    def __missing__(self, token: bytes) -> Any:
        if token[:1] == b'"':  # escapes and control characters as json.loads reads them
            plain = b"\\" not in token and not _CONTROL.search(token)
            value = token[1:-1].decode() if plain else json.loads(token)
        elif b"." in token or b"e" in token or b"E" in token:
            value = float(token)
        else:
            value = int(token)
        if len(self) > 100_000:  # durations hardly repeat: start again
            self.clear()
            self[b"null"] = None
        self[token] = value
        return value


_CONTROL = re.compile(rb"[\x00-\x1f]")
_tokens = _Tokens({b"null": None})
_read = _tokens.__getitem__
_WAIT_OPS = frozenset(json.dumps(op).encode() for op in CONNECTION_OPS)

_Head = tuple[bytes, ...]  # an event's tokens: _EVENT_HEAD's groups (and _EVENT_SITE's)
_Event = dict[str, Any]


def _every(head: _Head, site: bytes) -> _Event:
    index, kind, target, op, ms, statement, sql = head
    return {
        "index": _read(index), "kind": _read(kind), "target": _read(target), "op": _read(op),
        "duration_ms": _read(ms), "statement": _read(statement), "sql": _read(sql),
        "callsite": _read(site),
    }  # fmt: skip


def _found(head: _Head, site: bytes) -> _Event:
    """An event a finding is about, with what a finding's cause names of it (not its
    duration): the same in many requests, so made once (while fewer than 10,000 differ) and
    shared by the records that hold it."""
    key = (head[0], head[1], head[2], head[3], head[5], head[6], site)  # all but its duration
    event = _found_events.get(key)
    if event is None:
        index, kind, target, op, statement, sql, site = key
        event = {
            "index": _read(index), "kind": _read(kind), "target": _read(target),
            "op": _read(op), "statement": _read(statement), "sql": _read(sql),
            "callsite": _read(site),
        }  # fmt: skip
        if len(_found_events) > 10_000:
            _found_events.clear()
        _found_events[key] = event
    return event


_found_events: dict[tuple[bytes, ...], _Event] = {}


def _statement(head: _Head) -> _Event:
    _, kind, target, op, ms, statement, sql = head
    return {
        "kind": _read(kind), "target": _read(target), "op": _read(op),
        "duration_ms": _read(ms), "statement": _read(statement), "sql": _read(sql),
    }  # fmt: skip


# Per kind of events asked for: the pattern read (with the callsite's after it, or not),
# which events are kept (told from their tokens before any is read; an escaped token is
# kept, for the reader adding them up to judge what it says), and the event made of them;
# with callsites, each is given the event's tokens and its callsite's.
_Chooser = Callable[..., bool]
_READS: dict[str, tuple[re.Pattern[bytes], bool, _Chooser | None, Callable[..., _Event]]] = {
    EVENTS: (_EVENT_HEAD, True, None, _every),
    TARGETS: (
        _EVENT_SHORT,
        False,
        None,
        lambda h: {"target": _read(h[2]), "duration_ms": _read(h[4])},
    ),
    STATEMENTS: (_EVENT_HEAD, False, lambda h: h[5] != b"null" or h[6] != b"null", _statement),
    WAITS: (
        _EVENT_SHORT,
        False,
        lambda h: h[3] in _WAIT_OPS or b"\\" in h[3],
        lambda h: {"op": _read(h[3]), "target": _read(h[2]), "duration_ms": _read(h[4])},
    ),
    SITED: (
        _EVENT_SHORT,
        True,
        lambda h, site: site != b"null" and site != b'""',
        lambda h, site: {
            "target": _read(h[2]),
            "duration_ms": _read(h[4]),
            "callsite": _read(site),
        },
    ),
}
_PASSED = object()  # a whole kept request the filter does not let through


def _kept_in_part(
    line: bytes, keep: Filter | None, events: str | None, findings: bool
) -> dict[str, Any] | object | None:
    """A kept request in the recorder's layout read in part: its own fields (the last ones,
    all a :class:`Filter` looks at), then only the ``events`` (and ``findings``) asked for,
    each field read checked for the types the recorder writes. :data:`_PASSED` when
    ``keep`` does not let it through; None when the line is not laid out so (it is then
    read whole, and damage told from what it holds): torn, run into the next line, another
    tool's, with a ``"type"``, a field out of its place."""
    # (rfind: where a needle is absent, as it is in every line read so, searching from the
    # end takes a third of the time searching from the start does)
    if not line.rstrip().endswith(b"}") or line.rfind(b'{"schema":', 1) >= 0:
        return None
    tail = line.rfind(_TAIL)
    if tail < 0 or line.rfind(b'"type":', 0, tail) >= 0:
        return None
    try:
        record = json.loads(b"{" + line[tail + 1 :])
    except ValueError:
        return None
    if (
        type(record) is not dict
        or not record.keys() <= _TAIL_KEYS
        or type(record.get("id")) is not str
        or "duration_ms" not in record
        or not _fields_fit(record, _REQUEST_FIELDS)
        or not _texts(record.get("reasons"))
    ):
        return None
    if keep is not None and not keep(record):
        return _PASSED
    if events is None and not findings:
        return record
    events_at = line.rfind(_EVENTS_KEY, 0, tail)
    if events_at < 0 or line[tail - 1 : tail] != b"]":
        return None
    start = events_at + len(_EVENTS_KEY) - 1  # at its "["
    pattern, sited, chosen, made = _READS[EVENTS if events is None else events]
    picks: list[int] | None = None  # the events chosen by their index, when all are ints
    try:
        if findings:
            found = line.rfind(_FINDINGS_KEY, 0, events_at)
            if found < 0:
                return None
            record["findings"] = json.loads(line[found + len(_FINDINGS_KEY) - 1 : events_at])
            if events is None:
                chosen, made = _about(record["findings"]), _found
                picks = getattr(chosen, "indexes", None)
                if record["findings"] == []:  # about no event: none is read
                    record["events"] = []
                    return record
        heads: list[_Head] = pattern.findall(line, start, tail)
        if _UNREAD[pattern] in heads:  # an event not laid out so
            return None
        if not sited:
            record["events"] = list(map(made, filter(chosen, heads) if chosen else heads))
        else:
            sites: list[bytes] = _EVENT_SITE.findall(line, start, tail)
            if len(sites) != len(heads):
                return None
            if chosen is None:
                record["events"] = list(map(made, heads, sites))
            elif picks is not None and list(map(_first, heads)) == _ordinals(len(heads)):
                # the recorder's events, numbered 1, 2, … in their order: those the
                # findings are about picked by their number, as choosing each would
                count = len(heads)
                record["events"] = [made(heads[i - 1], sites[i - 1]) for i in picks if i <= count]
            elif events == SITED:  # as _READS[SITED] reads them, without a call per event
                read = _read
                record["events"] = [
                    {"target": read(head[2]), "duration_ms": read(head[4]), "callsite": read(site)}
                    for head, site in zip(heads, sites)  # noqa: B905
                    if site != b"null" and site != b'""'
                ]
            else:
                pairs = zip(heads, sites)  # noqa: B905
                record["events"] = [made(head, site) for head, site in pairs if chosen(head, site)]
    except ValueError:  # not UTF-8, a bad escape, findings that are not JSON
        return None
    return record


def _about(findings: Any) -> _Chooser | None:
    """The events the findings are about (by their index), when read for the findings
    alone; None (every event) when an index list is not one. When every index is a
    positive int, as the recorder writes them, the chooser's ``indexes`` are those, in
    order: the events to pick by their place in a line whose events are numbered 1, 2, …"""
    indexes: set[Any] = set()
    try:
        for finding in findings if type(findings) is list else ():
            if type(finding) is dict:
                indexes.update(finding.get("events") or ())
    except TypeError:
        return None
    if all(type(index) is int and index > 0 for index in indexes):  # as the recorder's
        tokens: set[bytes] = set()  # each int has one token: made when first asked

        def chosen(head: _Head, _: bytes) -> bool:
            if not tokens:
                tokens.update(b"%d" % index for index in indexes)
            return head[0] in tokens

        chosen.indexes = sorted(indexes)  # type: ignore[attr-defined]
        return chosen
    return lambda head, _: _read(head[0]) in indexes


_first = operator.itemgetter(0)


@functools.lru_cache(maxsize=64)
def _ordinals(count: int) -> list[bytes]:
    """The index tokens of ``count`` events as the recorder numbers them: 1, 2, …"""
    return [b"%d" % number for number in range(1, count + 1)]


def kept_and_summaries(
    path: str | os.PathLike[str],
    keep: Filter | None = None,
    skipped: Skipped | None = None,
    events: str | None = None,
    findings: bool = False,
    summaries: bool = False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``("request", record)`` for each kept request that passes ``keep`` and, with
    ``summaries``, ``("summary", record)`` for each summary record in its time (as
    :func:`summaries` yields them), oldest first, in one pass; damaged lines counted in
    ``skipped``.

    A kept request laid out as the recorder writes it is read in part, which costs a
    fraction of parsing it: its own fields (id, time, route, path, status, durations,
    reasons: what a :class:`Filter` looks at, checked before anything else is read); with
    ``events`` (:data:`EVENTS`, :data:`TARGETS`, :data:`STATEMENTS`, :data:`WAITS` or
    :data:`SITED`), those of its events with those of their fields; with ``findings``, its
    findings as written (and, without ``events``, the events they are about, none when
    there are none, without their duration: shared by the records that hold the same
    event, to be read, not changed). Each field read has the types :func:`records`
    checks. A line not laid out so is read whole, as :func:`records` reads it. What no
    part holds (the request's summary, targets and repeats; its events when not asked
    for) is not read: a line whose damage is only there is taken, as ``ioprofiler diff``
    takes the kept requests it does not read."""
    skipped = skipped or Skipped()
    for file, number, line in _numbered_lines(path, skipped):
        if line.startswith(_KEPT_START):
            record = _kept_in_part(line, keep, events, findings)
            if record is _PASSED:
                continue
            if record is not None:
                yield REQUEST, record  # type: ignore[misc]
                continue
        if not line.strip():
            continue
        kind, whole_record = classify(line)
        if kind is None or whole_record is None:
            if kind is None:
                skipped.add(file, number)
        elif kind == REQUEST:
            if keep is None or keep(whole_record):
                yield REQUEST, whole_record
        elif kind == SUMMARY and summaries and (keep is None or keep.in_time(whole_record)):
            yield SUMMARY, _route_kept(whole_record, keep)


def records(
    path: str | os.PathLike[str], keep: Filter | None = None, skipped: Skipped | None = None
) -> Iterator[dict[str, Any]]:
    """The kept requests in the log, oldest first, that pass ``keep``. Lines that are not
    records are counted in ``skipped``."""
    for record in entries(path, keep, skipped):
        if record.get("type", REQUEST) == REQUEST:
            yield record


def entries(
    path: str | os.PathLike[str], keep: Filter | None = None, skipped: Skipped | None = None
) -> Iterator[dict[str, Any]]:
    """The kept requests that pass ``keep`` and the notices within its time (``{"type":
    "gap", "lost": 3, ...}``: requests the recorder could not write; ``{"type": "marker",
    "text": "deploy 4f2a1c", ...}``), oldest first."""
    skipped = skipped or Skipped()
    for file, number, line in _numbered_lines(path, skipped):
        record = _taken(file, number, line, keep, skipped)
        if record is not None and record.get("type") != SUMMARY:
            yield record


def _taken(
    file: Path, number: int, line: bytes, keep: Filter | None, skipped: Skipped
) -> dict[str, Any] | None:
    """The line's record when ``keep`` lets it through (a notice or summary: when in its
    time); a damaged line counted."""
    if not line.strip():
        return None
    kind, record = classify(line)
    if kind is None:
        skipped.add(file, number)
        return None
    if record is None or keep is None:
        return record
    if kind != REQUEST:
        return record if keep.in_time(record) else None
    return record if keep(record) else None


def gap_notice(gap: dict[str, Any]) -> str:
    """``3 requests not recorded between T1 and T2 (web1, pid 4121)``"""
    lost = counted(gap.get("lost", 0), "request")
    return visible(
        f"{lost} not recorded between {gap.get('from', '?')} and {gap.get('until', '?')} "
        f"({gap.get('host', '?')}, pid {gap.get('pid', '?')})"
    )


def marker_notice(marker: dict[str, Any]) -> str:
    """``marker 2026-12-06T14:32:05: deploy 4f2a1c (release 4f2a1c, deploy-host, pid 88)``"""
    release = f"release {marker['release']}, " if marker.get("release") else ""
    return visible(
        f"marker {str(marker.get('time', '?'))[:19]}: {marker.get('text', '')} "
        f"({release}{marker.get('host', '?')}, pid {marker.get('pid', '?')})"
    )


def follow(
    path: str | os.PathLike[str],
    keep: Filter | None = None,
    poll: float = 0.2,
    from_start: bool = False,
    stop_after: timedelta | None = None,
    skipped: Skipped | None = None,
    gaps: bool = False,
    waiting: Callable[[str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Kept requests as they are written, across rotation (like ``tail -F``). A rotated file
    is read to its end, then the file that came after it, even if that one has been rotated
    too in the meantime. Starts at the end of the log unless ``from_start``. ``gaps`` yields
    the notices (gaps and markers) too; ``waiting`` is told, once, when there is no log yet
    (and when it appears)."""
    path = Path(path)
    skipped = skipped or Skipped()
    handle: IO[bytes] | None = None
    inode: tuple[int, int] | None = None
    pending = b""
    number = 0  # of the last complete line read from the open file
    told = False
    deadline = None if stop_after is None else time.monotonic() + stop_after.total_seconds()
    at_end = not from_start and path.exists()  # a log that appears later is read whole
    while deadline is None or time.monotonic() < deadline:
        if handle is None:
            following, expected = _successor(path, inode)
            try:
                handle = open(following, "rb")
            except FileNotFoundError:
                if waiting is not None and not told and inode is None:
                    waiting(f"{path}: no such file yet; waiting for it")
                    told = True
                time.sleep(poll)
                continue
            if told and waiting is not None:
                waiting(f"{path} has appeared; following it")
                told = False
            opened = _inode(os.fstat(handle.fileno()))
            if expected is not None and opened != expected:  # renamed meanwhile: look again
                handle.close()
                handle = None
                continue
            inode, number = opened, 0
            if at_end:
                number = _read_to_end(handle)
                at_end = False
        rotated = _replaced(path, inode)  # before reading: no line is written to it after
        chunk = handle.read()
        if chunk:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                number += 1
                record = _taken(Path(following), number, line, keep, skipped)
                kind = None if record is None else record.get("type", REQUEST)
                if kind == REQUEST or (gaps and kind in NOTICES):
                    yield record  # type: ignore[misc]
        if rotated:  # that was the rest of the old file: go on with the next one
            handle.close()
            handle, pending = None, b""
        elif not chunk:
            time.sleep(poll)
    if handle is not None:
        handle.close()


def _read_to_end(handle: IO[bytes]) -> int:
    """Moves to the end of the file; the number of lines passed (to name skipped lines)."""
    passed = 0
    while chunk := handle.read(1 << 20):
        passed += chunk.count(b"\n")
    return passed


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
