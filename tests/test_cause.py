"""A kept request's cause in one line, and the kept requests added up by finding, callsite
and shape (``top --by``), with what the summaries say of every request; ``show``'s cause.

The log is an incident's, written by a real Recorder over real SQLite (tests/incident.py):
release r2 adds an N+1 on /listing and a 40 ms statement on /search.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ioprofiler.cause import DOMINANT, NO_IO, NOT_IO, Causes, cause_of, finding_causes, what_of
from ioprofiler.logread import records
from tests.cli import ioprofiler
from tests.incident import HOSTILE, N_PLUS_ONE, SLOW, write_incident_log


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    return write_incident_log(tmp_path_factory.mktemp("incident"))


def kept(log: Path, path: str, release: str) -> list[dict[str, Any]]:
    return [r for r in records(log) if r["path"].startswith(path) and r.get("release") == release]


def test_a_finding_is_the_cause_named_by_its_target_shape_and_callsite(log):
    listings = kept(log, "/listing/", "r2")
    assert listings, "release r2's listings make 8 calls: past max_calls, kept"
    for record in listings:  # the costliest finding, whatever the machine's load did
        costliest = max(record["findings"], key=lambda f: f["ms"])
        assert cause_of(record).message == costliest["message"]
        assert costliest["message"] in cause_of(record).line()
    n_plus_ones = [c for r in listings for c in finding_causes(r) if c.kind == "n_plus_one"]
    assert len(n_plus_ones) == len(listings)
    cause = n_plus_ones[0]
    assert (cause.title, cause.target, cause.what, cause.calls) == (
        "N+1",
        "dbshard01",
        N_PLUS_ONE,
        8,
    )
    assert cause.callsite is not None and cause.callsite.startswith("tests/incident.py:")
    assert cause.line().startswith(f"N+1: {N_PLUS_ONE} ran 8× on dbshard01 (")
    assert cause.key() == f"N+1  dbshard01  {N_PLUS_ONE}  <- {cause.callsite}"
    assert cause.short() == f"N+1 · {N_PLUS_ONE} · dbshard01"


def test_without_a_finding_the_cause_is_the_target_and_shape_that_took_the_most_time(log):
    (record, *_) = [r for r in records(log) if r["path"].startswith("/x/")]
    record = copy.deepcopy(record)
    record["findings"] = []
    record["duration_ms"] = 40.0
    for event in record["events"]:  # the SELECT and the pool's ROLLBACK, timed for the test
        event["duration_ms"] = 12.0 if event["op"] == "execute" else 0.5
    cause = cause_of(record)
    assert (cause.kind, cause.target, cause.what, cause.calls) == (
        DOMINANT,
        "dbshard01",
        N_PLUS_ONE,
        1,
    )
    assert cause.share == pytest.approx(0.3)
    assert cause.line() == (
        f"most time: {N_PLUS_ONE} on dbshard01, 1 call, 12.0 ms (30%) <- {cause.callsite}"
    )
    for event in record["events"]:  # now the ROLLBACK is what the request waited for
        event["duration_ms"] = 30.0 if event["op"] == "rollback" else 0.2
    assert (cause_of(record).what, cause_of(record).ms) == ("ROLLBACK", 30.0)
    record["summary"]["unexplained_ms"] = 31.5  # more than any call: the time outside them
    outside = cause_of(record)
    assert (outside.kind, outside.short(), outside.key()) == (NOT_IO, NOT_IO, NOT_IO)
    assert outside.line() == (
        "not in I/O: 31.5 ms (79%) outside every call (the application's own work, or "
        f"waiting to run); the most I/O: ROLLBACK on dbshard01, 1 call, 30.0 ms <- "
        f"{outside.callsite}"
    )
    record["findings"] = [  # a finding, and 31.5 ms outside every call: the time outside
        {"kind": "duplicate", "message": "duplicate: SELECT … twice", "ms": 0.4, "events": [1]}
    ]
    assert cause_of(record).line() == (
        "not in I/O: 31.5 ms (79%) outside every call (the application's own work, or "
        "waiting to run); finding: duplicate: SELECT … twice"
    )
    record["summary"]["unexplained_ms"] = 19.0  # under OUTSIDE_MS (and half): the finding
    assert cause_of(record).line() == "duplicate: SELECT … twice"
    record["events"], record["findings"] = [], []
    assert cause_of(record).kind == NO_IO
    assert cause_of(record).line() == "no I/O: no call recorded in 40.0 ms"


def test_a_cause_escapes_what_the_log_holds_and_reads_damaged_findings_as_none(log):
    record = copy.deepcopy(next(iter(kept(log, "/search/", "r2"))))
    for event in record["events"]:
        event["target"] = "db\x1b[2J"
        event["callsite"] = "app.py:1 in \x1b]0;pwned\x07"
    record["findings"] = [{"kind": "n_plus_one", "message": 7, "ms": "x"}, "torn"]
    cause = cause_of(record)
    assert cause.kind == DOMINANT
    assert "\x1b" not in cause.line() and "\\x1b[2J" in cause.line()
    assert "\x07" not in cause.key() and "\\x07" in cause.key()


def test_what_an_event_is_by_its_shape():
    assert what_of({"kind": "db", "op": "execute", "sql": "SELECT 1 FROM t WHERE id = 7"}) == (
        "SELECT ? FROM t WHERE id = ?"
    )
    assert what_of({"kind": "http", "op": "GET", "statement": "https://api/v1/items/42?a=?"}) == (
        "GET https://api/v1/items/#?a=?"
    )
    assert what_of({"kind": "cache", "op": "get_many", "statement": None}) == "get_many"
    assert what_of({"kind": "db", "op": "pool_wait", "statement": None}) == "POOL WAIT"


def test_causes_add_up_by_finding_callsite_and_shape_the_most_time_first(log):
    kept_records = list(records(log))
    by = {name: Causes(name) for name in ("finding", "callsite", "shape", "cause")}
    for record in kept_records:
        for causes in by.values():
            causes.add(record)
    slow_calls = [
        e for r in kept_records for e in r["events"] if e["sql"] and "sleep_ms" in e["sql"]
    ]
    shapes = {row.key: row for row in by["shape"].rows()}
    assert shapes[SLOW].count == len(slow_calls)
    assert shapes[SLOW].total_ms == pytest.approx(sum(e["duration_ms"] for e in slow_calls))
    rows = by["shape"].rows()
    assert [r.total_ms for r in rows] == sorted((r.total_ms for r in rows), reverse=True)
    findings = {by["finding"].parts(row.key)[:3]: row for row in by["finding"].rows()}
    n_plus_one = findings[("N+1", "dbshard01", N_PLUS_ONE)]
    assert n_plus_one.count == len(kept(log, "/listing/", "r2"))  # once per request
    callsites = by["callsite"].rows()
    assert sum(r.count for r in callsites) == sum(
        1 for r in kept_records for e in r["events"] if e["callsite"]
    )
    assert all(r.key.startswith("tests/incident.py:") for r in callsites)
    causes = by["cause"]
    assert sum(row.count for row in causes.rows()) == len(kept_records)
    top = causes.rows(1)[0]
    slowest = max(
        (r for r in kept_records if cause_of(r).key() == top.key), key=lambda r: r["duration_ms"]
    )
    assert causes.example(top.key) == slowest["id"]
    with pytest.raises(ValueError, match="--by takes one of finding, callsite, shape"):
        Causes("statement ")


def test_top_by_finding_names_each_with_its_time_and_what_the_summaries_counted(log):
    done = ioprofiler("top", str(log), "--by", "finding")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "by finding, the most time first" in lines[0]
    assert lines[1].split() == [
        "finding",
        "target",
        "shape",
        "callsite",
        "requests",
        "total",
        "ms",
        "median",
        "ms",
        "p95",
        "ms",
        "share",
    ]
    n_plus_one = next(line for line in lines if line.startswith("N+1 "))
    assert f"dbshard01  {N_PLUS_ONE}  tests/incident.py:" in n_plus_one
    assert any(line.startswith("slow call  dbshard03  SELECT sleep_ms(?)") for line in lines)
    every = lines.index(next(line for line in lines if line.startswith("every request")))
    assert "findings among the" in lines[every]
    assert lines[every + 1].split() == ["finding", "requests", "share"]
    assert {line.split("  ")[0] for line in lines[every + 2 :]} >= {"N+1", "slow call"}

    as_json = [
        json.loads(line) for line in ioprofiler(*_by(log, "finding"), "--json").stdout.splitlines()
    ]
    assert {d["from"] for d in as_json} == {"kept", "summaries"}
    counted = {d["finding"]: d for d in as_json if d["from"] == "summaries"}
    assert counted["N+1"]["requests"] >= 1 and 0 < counted["N+1"]["share"] <= 1


def _by(log: Path, by: str) -> list[str]:
    return ["top", str(log), "--by", by]


def test_top_by_shape_ranks_shapes_over_every_request_from_the_summaries(log):
    as_json = [
        json.loads(line) for line in ioprofiler(*_by(log, "shape"), "--json").stdout.splitlines()
    ]
    kept_rows = {d["key"]: d for d in as_json if d["from"] == "kept"}
    every = {d["shape"]: d for d in as_json if d["from"] == "summaries"}
    assert set(kept_rows) == {N_PLUS_ONE, SLOW}
    for shape in (N_PLUS_ONE, SLOW):  # every request did at least what the kept ones did
        assert every[shape]["calls"] >= kept_rows[shape]["count"]
        assert every[shape]["targets"] == 1
    assert every[SLOW]["total_ms"] == pytest.approx(
        every[SLOW]["calls"] * every[SLOW]["ms_per_call"], rel=0.01
    )
    text = ioprofiler(*_by(log, "shape")).stdout
    assert "every request, from the recorders' summaries: statement shapes by total time" in text
    assert "shape  " in text and "per request" in text


def test_top_by_callsite_says_its_figures_are_the_kept_requests_only(log):
    text = ioprofiler(*_by(log, "callsite")).stdout.splitlines()
    assert text[1].split()[:2] == ["callsite", "calls"]
    assert text[2].startswith("tests/incident.py:")
    assert (
        text[-1] == "callsites are in the kept requests only: the summaries count shapes, not lines"
    )


def test_a_wrong_by_says_which_there_are():
    done = ioprofiler("top", "nowhere.jsonl", "--by", "shapes")
    assert done.returncode == 2 and done.stdout == ""
    assert "argument --by: invalid choice: 'shapes'" in done.stderr
    assert "'finding', 'callsite', 'shape'" in done.stderr


def test_show_list_ends_each_line_with_its_cause_and_show_id_begins_with_it(log):
    listed = ioprofiler("show", str(log), "--list").stdout.splitlines()
    requests = [line for line in listed if " GET " in line]
    assert requests and all("  cause: " in line for line in requests)
    listing = next(r for r in kept(log, "/listing/", "r2"))
    line = next(line for line in requests if f" {listing['id']} " in line)
    assert line.endswith(f"cause: {cause_of(listing).line()}")

    shown = ioprofiler("show", str(log), listing["id"][:12]).stdout.splitlines()
    assert shown[0] == f"cause: {cause_of(listing).line()}"
    assert shown[1].split()[1:3] == [listing["id"], "GET"]
    assert shown[2].startswith("[dbshard01] ")
    whole = ioprofiler("show", str(log), "--route", "/listing/<id>", "--slowest", "1").stdout
    assert whole.splitlines()[1].startswith("cause: ")  # under its headline

    hostile = next(r for r in records(log) if HOSTILE in r["path"])
    assert HOSTILE in ioprofiler("show", str(log), hostile["id"]).stdout.splitlines()[1]


def test_by_finding_names_shared_events_once_and_other_events_as_they_are():
    # a reader shares one event between the requests that hold it, and --by finding names
    # those once; a request with other events of the same kind, number and index, or a
    # shared event's copy, is named by what its own events are
    def event(target: str, callsite: str) -> dict[str, Any]:
        return {"index": 1, "kind": "db", "target": target, "op": "execute",
                "statement": "SELECT 1", "sql": "SELECT 1", "callsite": callsite}  # fmt: skip

    def request(n: int, events: list[dict[str, Any]]) -> dict[str, Any]:
        finding = {"kind": "n_plus_one", "message": "N+1", "ms": 1.0 + n, "events": [1]}
        return {"id": f"r{n}", "duration_ms": 10.0, "findings": [finding], "events": events}

    shared = event("dbshard01", "views.py:1 in a")
    requests = [
        request(0, [shared]),
        request(1, [event("dbshard02", "views.py:2 in b")]),
        request(2, [shared]),
        request(3, [dict(shared, target="dbshard03")]),
        request(4, [shared]),
    ]
    causes, copies = Causes("finding"), Causes("finding")
    for record in requests:
        causes.add(record)
        copies.add(copy.deepcopy(record))
    assert causes.rows() == copies.rows()
    assert [(row.key.split("  ")[1], row.count) for row in causes.rows()] == [
        ("dbshard01", 3), ("dbshard03", 1), ("dbshard02", 1)
    ]  # fmt: skip
