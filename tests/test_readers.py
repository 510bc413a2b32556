"""The readers that add the log up (``top``, ``timeline``) read a kept request in part — its
own fields, then only the events and fields a grouping needs — and give what reading every
line whole gave; a line not laid out as the recorder writes it is read whole, and counted
when damaged; the filters summaries cannot apply are said to be ignored.

The log is an incident's, written by a real Recorder over real SQLite (tests/incident.py):
kept requests with findings, callsites and connection round trips, summary records, a marker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ioprofiler.aggregate import Top
from ioprofiler.cause import Causes
from ioprofiler.cli.top import EVENTS_READ
from ioprofiler.logread import (
    EVENTS,
    REQUEST,
    SUMMARY,
    TARGETS,
    Filter,
    Skipped,
    kept_and_summaries,
    records,
    summaries,
)
from ioprofiler.summary import merge_routes
from tests.cli import ioprofiler
from tests.incident import write_incident_log


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    return write_incident_log(tmp_path_factory.mktemp("readers"))


def kept_lines(log: Path) -> list[bytes]:
    return [line for line in log.read_bytes().splitlines() if line.startswith(b'{"schema"')]


def added_up(by: str, requests: list[dict[str, Any]]) -> list[Any]:
    top: Top | Causes = Causes(by) if by in ("finding", "callsite", "shape") else Top(by)
    for record in requests:
        top.add(record)
    rows = top.rows()
    examples = [top.example(row.key) for row in rows] if isinstance(top, Causes) else []
    return [(top.requests, top.request_ms), rows, examples]


@pytest.mark.parametrize("by", sorted(EVENTS_READ))
@pytest.mark.parametrize(
    "keep", [None, Filter(min_ms=20), Filter(path="/listing/*", status="2xx")], ids=repr
)
def test_read_in_part_top_adds_up_what_it_did_reading_every_line_whole(log, by, keep):
    whole = list(records(log, keep))
    assert len(whole) > 20
    in_part = [
        record
        for kind, record in kept_and_summaries(
            log, keep, Skipped(), events=EVENTS_READ[by], findings=by == "finding"
        )
        if kind == REQUEST
    ]
    assert [r["id"] for r in in_part] == [r["id"] for r in whole]
    assert added_up(by, in_part) == added_up(by, whole)


def test_every_event_field_read_is_what_the_whole_line_holds(log):
    whole = {r["id"]: r for r in records(log)}
    read = 0
    for kind, record in kept_and_summaries(log, events=EVENTS):
        assert kind == REQUEST
        events = whole[record["id"]]["events"]
        read_events = record["events"]
        assert len(read_events) == len(events)
        pairs = zip(events, read_events, strict=True)
        assert [{name: e.get(name) for name in ev} for e, ev in pairs] == read_events
        own = {k: v for k, v in whole[record["id"]].items() if k in record and k != "events"}
        assert own == {k: v for k, v in record.items() if k != "events"}
        read += 1
    assert read == len(whole)


def test_the_summaries_come_in_the_same_pass_as_with_summaries(log):
    keep = Filter(route="/listing/*")
    read = [r for kind, r in kept_and_summaries(log, keep, summaries=True) if kind == SUMMARY]
    merged = {route: t.to_json() for route, t in merge_routes(read).items()}
    alone = {route: t.to_json() for route, t in merge_routes(summaries(log, keep)).items()}
    assert read and merged == alone
    assert set(merged) == {"/listing/<id>"}


def in_events(line: bytes, old: bytes, new: bytes) -> bytes:
    at = line.index(b',"events":[')
    return line[:at] + line[at:].replace(old, new, 1)


def retyped(line: bytes, change: Any) -> bytes:
    record = json.loads(line)
    change(record)
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("by", sorted(EVENTS_READ))
def test_damage_in_what_is_read_is_skipped_and_counted_as_reading_whole_does(log, tmp_path, by):
    # with findings: --by finding reads the events of a request that has some (all their
    # fields are checked then, those of the events they name read), none of one without
    line = next(line for line in kept_lines(log) if b'"findings":[]' not in line)
    in_own_fields = [
        line[: len(line) // 2] + line,  # torn by a crash, run into the next line
        retyped(line, lambda r: r.update(status=None)),
        retyped(line, lambda r: r.update(reasons="slow")),
        line.replace(b'"record_version":', b'"record_version":{', 1),  # not JSON
    ]
    in_events_read = [
        retyped(line, lambda r: r["events"][0].update(kind=1)),
        retyped(line, lambda r: r["events"][-1].update(duration_ms="slow")),
        retyped(line, lambda r: r["events"][0].update(target=None)),
    ]
    fine = [line, retyped(line, lambda r: r.update(type="request"))]  # the 2nd: read whole
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(b"\n".join([*in_own_fields, *in_events_read, *fine]) + b"\n")
    whole_skipped, part_skipped = Skipped(), Skipped()
    whole = [r["id"] for r in records(damaged, skipped=whole_skipped)]
    in_part = [
        r["id"]
        for _, r in kept_and_summaries(
            damaged, None, part_skipped, events=EVENTS_READ[by], findings=by == "finding"
        )
    ]
    assert whole_skipped.count == len(in_own_fields) + len(in_events_read)
    assert len(whole) == len(fine)
    if by == "route":  # reads no event: damage only there is not seen, as diff's
        assert part_skipped.count == len(in_own_fields)
        assert len(in_part) == len(fine) + len(in_events_read)
    else:
        assert part_skipped.count == whole_skipped.count
        assert in_part == whole


def test_by_finding_reads_no_event_of_a_request_without_findings(log, tmp_path):
    line = next(line for line in kept_lines(log) if b'"findings":[]' in line)
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(retyped(line, lambda r: r["events"][0].update(kind=1)) + b"\n")
    skipped = Skipped()
    ((_, record),) = kept_and_summaries(damaged, None, skipped, findings=True)
    assert (record["findings"], record["events"], skipped.count) == ([], [], 0)


@pytest.mark.parametrize("events", [EVENTS, TARGETS])
@pytest.mark.parametrize("bad", [b"\xff", b"\x01", b"\\q"], ids=["not UTF-8", "control", "escape"])
def test_a_field_read_that_json_would_refuse_is_refused(log, tmp_path, events, bad):
    line = kept_lines(log)[0]
    target = json.loads(line)["events"][0]["target"].encode()
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(in_events(line, b'"%s"' % target, b'"%s%s"' % (target, bad)) + b"\n")
    skipped = Skipped()
    assert list(kept_and_summaries(damaged, None, skipped, events=events)) == []
    assert skipped.count == 1
    assert list(records(damaged)) == []


def test_an_escaped_field_reads_as_json_reads_it(log, tmp_path):
    line = kept_lines(log)[0]
    target = json.loads(line)["events"][0]["target"].encode()
    escaped = tmp_path / "escaped.jsonl"
    escaped.write_bytes(in_events(line, b'"%s"' % target, b'"%s\\u00e9\\n"' % target) + b"\n")
    (whole,) = records(escaped)
    ((_, in_part),) = kept_and_summaries(escaped, events=EVENTS)
    assert in_part["events"][0]["target"] == whole["events"][0]["target"]
    assert whole["events"][0]["target"].endswith("\u00e9\n")


def test_a_torn_line_run_into_the_next_is_damage_for_every_reader(log, tmp_path):
    line = kept_lines(log)[0]
    damaged = tmp_path / "torn.jsonl"
    damaged.write_bytes(line[:100] + line + b"\n" + line + b"\n")
    for by in sorted(EVENTS_READ):
        skipped = Skipped()
        found = list(
            kept_and_summaries(damaged, None, skipped, EVENTS_READ[by], findings=by == "finding")
        )
        assert (len(found), skipped.count) == (1, 1), by
    timeline = ioprofiler("timeline", str(damaged))
    assert "skipped 1 line" in timeline.stderr


def test_timeline_counts_damage_among_the_lines_it_does_not_parse(log, tmp_path):
    damaged = tmp_path / "io.jsonl"
    lines = log.read_bytes().splitlines()
    first_kept = next(line for line in lines if line.startswith(b'{"schema"'))
    extra = [first_kept[:80], b'{"level": "info", "msg": "another tool"}', b"\xff\xfe"]
    damaged.write_bytes(b"\n".join([*lines, *extra]) + b"\n")
    done = ioprofiler("timeline", str(damaged))
    assert done.returncode == 0, done.stderr
    assert f"skipped 3 lines that are not kept requests (the first: {damaged} line " in (
        done.stderr
    )
    assert "deploy" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["top"],
        ["top", "--by", "shape"],
        ["top", "--by", "finding"],
        ["timeline"],
    ],
    ids=" ".join,
)
def test_filters_the_summaries_cannot_apply_are_said_to_be_ignored(log, args):
    plain = ioprofiler(args[0], str(log), *args[1:])
    assert "not applied" not in plain.stdout + plain.stderr
    for given, said in (
        (["--path", "/listing/*"], "--path /listing/*"),
        (["--status", "5xx", "--min-ms", "20"], "--status 5xx, --min-ms 20"),
    ):
        done = ioprofiler(args[0], str(log), *args[1:], *given)
        assert done.returncode == 0, done.stderr
        note = f"note: {said} not applied to the figures from summaries"
        assert note in done.stdout
        assert len([line for line in done.stdout.splitlines() if note in line]) == 1
        as_json = ioprofiler(args[0], str(log), *args[1:], *given, "--json")
        assert note in as_json.stderr
        for line in as_json.stdout.splitlines():
            json.loads(line)  # stdout stays JSON lines


def test_callsite_grouping_reads_no_summary_and_says_no_note(log):
    done = ioprofiler("top", str(log), "--by", "callsite", "--path", "/listing/*")
    assert "not applied" not in done.stdout
    assert "callsites are in the kept requests only" in done.stdout


def reordered(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its target before its kind: not laid out as the recorder writes."""
    first = {"index": event["index"], "target": event["target"], "kind": event["kind"]}
    return {**first, **event}


def reversed_and_told_apart(record: dict[str, Any]) -> None:
    """The events in the opposite order, each with a callsite of its own: a finding names
    the callsite of the first of its events (all differ), so picking an event by its place
    rather than its index would name another."""
    for event in record["events"]:
        event["callsite"] = f"views.py:{event['index']} in listing"
    record["events"].reverse()


@pytest.mark.parametrize("by", sorted(EVENTS_READ))
def test_events_the_fast_read_cannot_take_are_read_whole_with_the_same_result(log, tmp_path, by):
    # each line below is one the reading in part passes to the whole reading: an event out
    # of the recorder's layout (among those a finding names, and not), events not numbered
    # 1, 2, … in their order (--by finding picks events by their number only when they
    # are), an index twice, a callsite escaped; what is added up must not change
    lines = [line for line in kept_lines(log) if b'"findings":[]' not in line][:3]
    changes = [
        lambda r: r["events"].__setitem__(0, reordered(r["events"][0])),
        lambda r: r["events"].__setitem__(-1, reordered(r["events"][-1])),
        reversed_and_told_apart,
        lambda r: [e.update(index=e["index"] + 1) for e in r["events"]],
        lambda r: r["events"][1].update(index=r["events"][0]["index"]),
        lambda r: r["events"][0].update(callsite='views.py:"88" \\ \u00e9\x01'),
        lambda r: r["events"][0].update(callsite=None, duration_ms=None, index=None),
    ]
    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(
        b"\n".join(retyped(line, change) for line in lines for change in changes) + b"\n"
    )
    whole_skipped, part_skipped = Skipped(), Skipped()
    whole = list(records(changed, skipped=whole_skipped))
    in_part = [
        record
        for _, record in kept_and_summaries(
            changed, None, part_skipped, events=EVENTS_READ[by], findings=by == "finding"
        )
    ]
    assert len(whole) == len(lines) * len(changes)
    assert (part_skipped.count, whole_skipped.count) == (0, 0)
    assert added_up(by, in_part) == added_up(by, whole)


def test_by_finding_names_the_events_shared_between_requests_as_their_copies(log):
    # the events read for the findings are shared by the requests that hold them, and
    # named once; requests whose events are copies (read whole) are named the same
    shared = [r for kind, r in kept_and_summaries(log, findings=True) if kind == REQUEST]
    copies = [json.loads(json.dumps(record)) for record in shared]
    assert any(record["findings"] for record in shared)
    assert added_up("finding", shared + shared) == added_up("finding", copies + copies)
