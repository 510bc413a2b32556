"""``ioprofiler diff`` over logs a real Recorder wrote: a shop served in-process in two
releases (the second adds an N+1 on one route and a slow statement on another, and leaves a
third alone), compared by release, by marker and by time; the regression rule's edges (load,
spread, a route alone); and the faults: damaged lines, empty windows, bad options, hostile
text."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from werkzeug.test import Client

import ioprofiler
from ioprofiler.diff import (
    DiffError,
    Window,
    compare,
    parse_window,
    release_regressions,
    short_statement,
)
from ioprofiler.recorder import Recorder
from ioprofiler.sinks import FinishedRequest
from ioprofiler.summary import RouteTotals, Summary
from ioprofiler.wsgi import IOProfilerMiddleware
from tests import incident_app as shop
from tests.cli import ioprofiler as installed_command


def command(*args: str) -> subprocess.CompletedProcess[str]:
    return installed_command(*args, columns=200)


def serve_phase(
    log: Path, db: Path, release: str, rounds: int = 45, slow_ms: float = 10_000
) -> None:
    """One release's load, in-process, behind a real Recorder writing summaries every 0.1 s
    (and keeping the requests slower than ``slow_ms``)."""
    recorder = Recorder(log, release=release, summary_every=0.1, slow_ms=slow_ms)
    app = IOProfilerMiddleware(shop.Shop(shop.engine_for(db, release), release), record=recorder)
    client = Client(app)
    for n in range(rounds):
        client.get(f"/listing/{n % 100 + 1}").close()
        client.get("/home").close()
        if n % 3 == 0:
            client.get("/search").close()
        if n % 15 == 14:
            time.sleep(0.15)  # a summary record per slice of the phase
    recorder.close()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, float]:
    """The log of both releases, ``ioprofiler mark "deploy 4f2a1c"`` between them; and
    the marker's time."""
    ioprofiler.install()
    folder = tmp_path_factory.mktemp("diff")
    db, log = folder / "shop.db", folder / "io.jsonl"
    shop.create(db)
    serve_phase(log, db, shop.BEFORE)
    time.sleep(0.05)
    done = command("mark", "deploy 4f2a1c", "--log", str(log), "--release", shop.AFTER)
    assert done.returncode == 0, done.stderr
    marked = json.loads(log.read_text().splitlines()[-1])["ts"]
    time.sleep(0.05)
    serve_phase(log, db, shop.AFTER)
    return log, marked


def check_the_two(regressions, after: str) -> None:
    """Exactly the N+1 on /listing and the slow statement on /search, with their causes."""
    by_route = {r.route: r for r in regressions}
    assert len(regressions) == 2, [r.line() for r in regressions]
    assert sorted(by_route) == ["/listing/<int:id>", "/search"]
    search, listing = by_route["/search"], by_route["/listing/<int:id>"]
    assert regressions[0] is search  # 40 ms per request costs more than 12 fast queries
    assert search.kind == "slower" and search.shape == shop.SEARCH
    assert search.ms_after >= shop.SLOW_MS and search.callsite.startswith("tests/incident_app.py:")
    assert search.callsite.endswith(" in search")
    assert listing.kind == "calls" and listing.new and listing.shape == shop.FAVORITES
    assert (listing.calls_before, listing.calls_after) == (0, shop.RELATED)
    assert listing.callsite.endswith(" in favorites")
    assert listing.line().startswith("/listing/<int:id>  p95 ") and listing.line().split(
        " ms  ", 1
    )[1].startswith(
        "+12 queries/request on shop: SELECT … FROM FavoriteListingUser WHERE listing_id = ? "
        f"(new {after}) <- tests/incident_app.py:"
    )
    assert "n_plus_one" in listing.findings


def test_release_regressions_names_the_n_plus_one_and_the_slow_statement(deployed):
    log, _ = deployed
    check_the_two(release_regressions([log]), f"in {shop.AFTER}")


def test_release_regressions_takes_records_too_and_is_empty_with_one_release(deployed):
    log, _ = deployed
    records = [json.loads(line) for line in log.read_text().splitlines()]
    check_the_two(release_regressions(records), f"in {shop.AFTER}")
    before_only = [r for r in records if r.get("release") != shop.AFTER]
    assert release_regressions(before_only) == []


def test_diff_by_release_prints_the_regressions_and_every_route(deployed):
    log, _ = deployed
    done = command("diff", str(log))
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith(f"before: release {shop.BEFORE}: ")
    assert out[1].startswith(f"after:  release {shop.AFTER}: ")
    start = out.index("2 regressions, the costliest per request first:")
    assert out[start + 1].startswith("/search  p95 ")
    assert "in_stock(id) on shop: " in out[start + 1] and " ms per call, +" in out[start + 1]
    assert out[start + 2].startswith("/listing/<int:id>  p95 ")
    home = [line for line in out if line.startswith("/home ")]
    assert len(home) == 1 and "regression" not in home[0]  # the table's row: not named
    failing = command("diff", str(log), "--fail-on", "regression")
    assert failing.returncode == 1 and failing.stdout == done.stdout


def test_diff_json_lines(deployed):
    log, _ = deployed
    done = command("diff", str(log), "--json", "--before-release", shop.BEFORE,
                   "--after-release", shop.AFTER)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    windows = [line for line in lines if line["type"] == "window"]
    assert [w["release"] for w in windows] == [shop.BEFORE, shop.AFTER]
    assert all(w["requests"] == 45 + 45 + 15 for w in windows)  # every request, once
    regressions = [line for line in lines if line["type"] == "regression"]
    assert [r["route"] for r in regressions] == ["/search", "/listing/<int:id>"]
    routes = {line["route"]: line for line in lines if line["type"] == "route"}
    assert routes["/home"]["regressions"] == [] and routes["/home"]["changes"] == []
    (new,) = routes["/listing/<int:id>"]["changes"]
    assert new["change"] == "new" and new["shape"] == shop.FAVORITES
    assert "n_plus_one" in routes["/listing/<int:id>"]["findings_appeared"]


def test_diff_at_a_marker_and_by_time_find_the_same(deployed):
    log, marked = deployed
    done = command("diff", str(log), "--at-marker", "deploy 4f2a1c", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    regressions = [line for line in lines if line["type"] == "regression"]
    assert [r["route"] for r in regressions] == ["/search", "/listing/<int:id>"]
    assert "(new after deploy 4f2a1c)" in regressions[1]["line"]
    partial = command("diff", str(log), "--at-marker", "4f2a1c", "--window", "1h")  # a part
    assert partial.returncode == 0 and "2 regressions" in partial.stdout

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")

    by_time = command(
        "diff", str(log), "--before", f"{iso(marked - 3600)}..{iso(marked)}",
        "--after", f"{iso(marked)}..", "--json",
    )  # fmt: skip
    assert by_time.returncode == 0, by_time.stderr
    timed = [json.loads(line) for line in by_time.stdout.splitlines()]
    assert [r["route"] for r in timed if r["type"] == "regression"] == [
        "/search",
        "/listing/<int:id>",
    ]


def test_damaged_and_foreign_lines_are_skipped_and_counted(deployed, tmp_path):
    log, _ = deployed
    damaged = tmp_path / "io.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    summary = next(n for n, line in enumerate(lines) if b'"type":"summary"' in line)
    lines.insert(summary, lines[summary][:40] + b"\n")  # a torn summary
    lines.insert(3, b"\xff\xfe not utf-8\n")
    lines.insert(5, b'{"type":"summary","from_ts":1,"ts":2,"routes":{"/x":{"requests":"9"}}}\n')
    damaged.write_bytes(b"".join(lines) + b'{"half a line')
    done = command("diff", str(damaged))
    assert done.returncode == 0, done.stderr
    assert "2 regressions" in done.stdout
    assert "skipped 4 lines" in done.stderr and "Traceback" not in done.stderr


def test_a_kept_request_torn_into_the_next_one_is_counted_as_damage(tmp_path):
    # a crash tears a kept request; the recorder started again writes the next one on the
    # same line: a line that begins and ends as a recorder's does, and holds two records
    ioprofiler.install()
    db, log = tmp_path / "shop.db", tmp_path / "io.jsonl"
    shop.create(db)
    serve_phase(log, db, shop.BEFORE, rounds=3, slow_ms=0)
    serve_phase(log, db, shop.AFTER, rounds=3, slow_ms=0)
    lines = log.read_bytes().splitlines(keepends=True)
    kept = [n for n, line in enumerate(lines) if line.startswith(b'{"schema":')][:2]
    assert len(kept) == 2
    lines[kept[0]] = lines[kept[0]][:60] + lines.pop(kept[1])
    log.write_bytes(b"".join(lines))
    done = command("diff", str(log))
    assert done.returncode == 0, done.stderr
    assert "skipped 1 line" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--before", "14:00-14:30", "--after", "15:00..15:30"], "a window is START..END"),
        (["--before", "14:00..25:00", "--after", "15:00..15:30"], "not a time of day"),
        (["--before", "yesterday..", "--after", "15:00.."], "not a time: 'yesterday'"),
        (["--before", "14:30..14:00", "--after", "15:00.."], "ends before it starts"),
        (["--before", "14:00..14:30"], "give both windows"),
        (["--before-release", "nope", "--after-release", shop.AFTER], "no release 'nope'"),
        (["--after-release", shop.AFTER], "give both releases"),
        (["--at-marker", "rollback 99"], "no marker 'rollback 99' in the log"),
        (["--at-marker", "deploy 4f2a1c", "--window", "soon"], "--window is a length"),
        (["--window", "5m"], "--window goes with --at-marker"),
        (["--at-marker", "deploy", "--before-release", "x"], "compare by one of"),
        (["--before", "2001-01-01T00:00..2001-01-02T00:00", "--after=-1h.."], "no summary"),
    ],
)
def test_bad_options_exit_2_with_a_message(deployed, options, message):
    log, _ = deployed
    done = command("diff", str(log), *options)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_log_of_one_release_or_none_says_so(tmp_path):
    missing = command("diff", str(tmp_path / "nothing.jsonl"))
    assert missing.returncode == 2 and "no log at" in missing.stderr
    log = tmp_path / "io.jsonl"
    write_summaries(log, "only", {"/a": [[5.0] * 20] * 2})
    done = command("diff", str(log))
    assert done.returncode == 2
    assert "the log holds 1 release (the latest: 'only')" in done.stderr


# -- the rule's edges, over summary records the real Recorder encodes -----------------------


def write_summaries(
    log: Path, release: str, routes: dict[str, list[list[float]]], start: float | None = None
) -> None:
    """Per route, one summary record per list of request durations (ms), as a Recorder of
    ``release`` counts and writes them, one second each from ``start``; no I/O."""
    recorder = Recorder(log, release=release, summary_every=None)
    start = time.time() if start is None else start
    slices = max(len(records) for records in routes.values())
    with log.open("ab") as out:
        for index in range(slices):
            summary = Summary()
            for route, records in routes.items():
                for ms in records[index] if index < len(records) else ():
                    with ioprofiler.profile() as trace:
                        pass
                    summary.count(
                        FinishedRequest(trace, "GET", "/", "", route, 200, start, ms, "i", "h", 1)
                    )
            out.write(recorder.summary_record(summary.take(), start + index, start + index + 1))


def spread(base: float, n: int = 20) -> list[float]:
    """n durations around ``base``: ±5%."""
    return [base * (0.95 + 0.1 * k / (n - 1)) for k in range(n)]


def test_a_route_slower_while_the_others_stay_is_named_for_its_latency(tmp_path):
    log = tmp_path / "io.jsonl"
    write_summaries(log, "a", {"/slow": [spread(10)] * 3, "/b": [spread(5)] * 3,
                               "/c": [spread(8)] * 3})  # fmt: skip
    write_summaries(log, "b", {"/slow": [spread(30)] * 3, "/b": [spread(5)] * 3,
                               "/c": [spread(8)] * 3})  # fmt: skip
    (regression,) = release_regressions([log])
    assert regression.route == "/slow" and regression.kind == "latency"
    assert "3× slower at p95 while other unchanged routes moved 1×" in regression.line()


def test_every_route_slower_with_the_load_is_not_named(tmp_path):
    log = tmp_path / "io.jsonl"
    write_summaries(log, "a", {"/a": [spread(10)] * 3, "/b": [spread(5)] * 3,
                               "/c": [spread(8)] * 3})  # fmt: skip
    write_summaries(log, "b", {"/a": [spread(31)] * 3, "/b": [spread(14)] * 3,
                               "/c": [spread(25)] * 3})  # fmt: skip
    assert release_regressions([log]) == []
    done = command("diff", str(log))
    assert (
        "no regressions" in done.stdout
        and "not named: load (other unchanged routes moved" in done.stdout
    )


def test_a_move_within_the_spread_of_a_window_is_not_named(tmp_path):
    log = tmp_path / "io.jsonl"
    noisy = [spread(10), spread(40), spread(12)]  # its p95 moves 4× within the window
    write_summaries(log, "a", {"/a": noisy, "/b": [spread(5)] * 3})
    write_summaries(log, "b", {"/a": [spread(35)] * 3, "/b": [spread(5)] * 3})
    assert release_regressions([log]) == []


def test_a_lone_route_that_moved_is_shown_not_named(tmp_path):
    log = tmp_path / "io.jsonl"
    write_summaries(log, "a", {"/a": [spread(10)] * 3})
    write_summaries(log, "b", {"/a": [spread(50)] * 3})
    assert release_regressions([log]) == []
    done = command("diff", str(log))
    assert "no other unchanged route to tell load from code" in done.stdout


def test_statements_slower_with_the_load_are_not_named_and_one_slower_than_that_is():
    def record(release: str, ts: float, factor: float, slow: float = 1.0) -> dict:
        def route(name: str, ms: float) -> dict:
            return {
                "requests": 20, "detailed": 20, "duration_ms": {"100": 20}, "io_ms": {"50": 20},
                "shapes": [{"target": "db", "shape": f"SELECT {name}", "calls": 40,
                            "ms": 40 * ms * factor * (slow if name == "x" else 1)}],
            }  # fmt: skip

        return {
            "type": "summary", "from_ts": ts, "ts": ts + 1, "release": release,
            "routes": {name: route(name, 0.5) for name in ("x", "y", "z")},
        }  # fmt: skip

    loaded = [record("a", 0, 1), record("a", 1, 1), record("b", 2, 3), record("b", 3, 3.2)]
    assert release_regressions(loaded) == []  # everything 3× slower: the machine's load
    worse = [record("a", 0, 1), record("a", 1, 1), record("b", 2, 3, 10), record("b", 3, 3, 10)]
    (regression,) = release_regressions(worse)
    assert (regression.route, regression.kind, regression.shape) == ("x", "slower", "SELECT x")


def test_a_big_statement_slower_is_judged_by_statements_of_its_size_not_tiny_ones():
    """Tiny statements stretched 9x by scheduling delays do not excuse a 5 ms statement that
    became 40 ms; a 4 ms one that moved with a like-sized one stays unnamed."""

    def record(release: str, ts: float, after: bool) -> dict:
        def route(shapes: dict[str, float]) -> dict:
            return {
                "requests": 20, "detailed": 20, "duration_ms": {"100": 20}, "io_ms": {"50": 20},
                "shapes": [{"target": "db", "shape": f"SELECT {name}", "calls": 40,
                            "ms": 40 * ms} for name, ms in shapes.items()],
            }  # fmt: skip

        tiny = 0.02 * (9 if after else 1)
        return {
            "type": "summary", "from_ts": ts, "ts": ts + 1, "release": release,
            "routes": {
                "/search": route({"big": 40.0 if after else 5.0, "t1": tiny}),
                "/home": route({"t2": tiny, "t3": tiny, "mid": 8.0 if after else 4.0}),
                "/other": route({"mid2": 8.0 if after else 4.0}),
            },
        }  # fmt: skip

    log = [record("a", 0, False), record("a", 1, False), record("b", 2, True), record("b", 3, True)]
    (regression,) = release_regressions(log)
    assert (regression.route, regression.shape) == ("/search", "SELECT big")


def test_hostile_route_and_statement_text_are_escaped(tmp_path):
    log = tmp_path / "io.jsonl"
    evil = "/evil\x1b[2J\x07"
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'evil.db'}")
    for release, calls in (("a", 1), ("b", 4)):
        recorder = Recorder(log, release=release, summary_every=None, slow_ms=0)
        summary = Summary()
        for _ in range(3):
            with ioprofiler.profile() as trace, engine.connect() as conn:
                for _ in range(calls):
                    conn.exec_driver_sql("SELECT 1 /* \x1b]0;owned\x07 */").all()
            request = FinishedRequest(trace, "GET", "/", "", evil, 200, time.time(), 1.0, "i",
                                      "h", 1)  # fmt: skip
            summary.count(request)
            recorder.handle(request)  # kept too (slow_ms=0): callsites from kept requests
        recorder.close()
        with log.open("ab") as out:
            out.write(recorder.summary_record(summary.take(), time.time(), time.time()))
    for options in ([], ["--json"]):
        done = command("diff", str(log), *options)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout
        assert "+3 queries/request" in done.stdout
    assert "/evil\\x1b[2J\\x07" in command("diff", str(log)).stdout


def test_windows_and_statements_in_words():
    now = datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc).timestamp()
    window = parse_window("before", "14:00..14:30", now)
    assert window.since == now - 3600 and window.until == now - 1800
    late = parse_window("before", "23:00..", now)  # still to come today: yesterday's
    assert late.since == now - 16 * 3600 and late.until is None
    with pytest.raises(DiffError):
        parse_window("before", "..", now)
    assert short_statement(shop.FAVORITES) == (
        "SELECT … FROM FavoriteListingUser WHERE listing_id = ?"
    )
    assert short_statement("SELECT count(*) FROM t") == "SELECT count(*) FROM t"


def test_compare_says_which_window_is_empty(deployed):
    log, marked = deployed
    with pytest.raises(DiffError, match="no summary records in the after window"):
        compare([log], Window("before", until=marked), Window("after", since=marked + 3600))


def test_callsites_come_from_kept_requests_when_the_summaries_have_none(tmp_path):
    """A log written before summaries carried callsites: diff finds them in kept requests
    of the route that sent the same shape; with none kept, the line goes without."""
    ioprofiler.install()
    db, log = tmp_path / "shop.db", tmp_path / "io.jsonl"
    shop.create(db)
    serve_phase(log, db, shop.BEFORE, rounds=30, slow_ms=0)  # every request kept
    serve_phase(log, db, shop.AFTER, rounds=30, slow_ms=0)
    old, bare = tmp_path / "old.jsonl", tmp_path / "bare.jsonl"
    with old.open("w") as with_kept, bare.open("w") as without:
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if record.get("type") == "summary":
                for totals in record["routes"].values():
                    for item in totals["shapes"]:
                        item.pop("callsite", None)
                line = json.dumps(record)
            with_kept.write(line + "\n")
            if record.get("type") == "summary":
                without.write(line + "\n")
    found = {r.route: r.callsite for r in release_regressions([old])}
    assert found["/listing/<int:id>"].endswith(" in favorites")
    assert found["/search"].endswith(" in search")
    assert all(r.callsite is None and " <- " not in r.line() for r in release_regressions([bare]))


def test_after_a_rollback_the_release_rolled_back_to_is_the_after_one(tmp_path):
    log = tmp_path / "io.jsonl"
    steady = {"/b": [spread(5)] * 3, "/c": [spread(8)] * 3}
    write_summaries(log, "a", {"/a": [spread(10)] * 3, **steady}, start=1000)
    write_summaries(log, "b", {"/a": [spread(40)] * 3, **steady}, start=2000)
    write_summaries(log, "a", {"/a": [spread(10)] * 3, **steady}, start=3000)
    done = command("diff", str(log), "--json")
    windows = [json.loads(line) for line in done.stdout.splitlines()][:2]
    assert [w["release"] for w in windows] == ["b", "a"]  # b, then back to a: faster
    assert [r.route for r in release_regressions([log])] == []


def test_records_given_that_are_damaged_are_skipped_not_raised(deployed):
    log, _ = deployed
    records = [json.loads(line) for line in log.read_text().splitlines()]
    records.insert(
        2, {"type": "summary", "from_ts": 1, "ts": 2, "routes": {"/x": {"requests": "9"}}}
    )
    records.insert(4, {"type": "summary", "routes": []})
    check_the_two(release_regressions(records), f"in {shop.AFTER}")


def test_more_cache_calls_per_request_are_named_on_their_server(memcached, tmp_path):
    """A target without statement shapes (a cache) is judged by its calls per request."""
    from pymemcache.client.base import Client as Memcache

    ioprofiler.install()
    cache = Memcache(memcached.address, default_noreply=False)
    log = tmp_path / "io.jsonl"
    for release, gets in (("a", 1), ("b", 4)):
        recorder = Recorder(log, release=release, summary_every=None, slow_ms=10_000)
        for _ in range(2):  # two summary records per release
            summary = Summary()
            for n in range(12):
                with ioprofiler.profile() as trace:
                    for k in range(gets):
                        cache.get(f"item:{n}:{k}")
                summary.count(
                    FinishedRequest(trace, "GET", "/", "", "/cart", 200, time.time(), 1.0, "i",
                                    "h", 1)
                )  # fmt: skip
            with log.open("ab") as out:
                out.write(recorder.summary_record(summary.take(), time.time(), time.time()))
        recorder.close()
    (regression,) = release_regressions([log])
    assert (regression.route, regression.kind, regression.shape) == ("/cart", "calls", None)
    assert regression.target.startswith("memcache")
    assert regression.line().split(" ms  ", 1)[1] == (
        f"+3 calls/request on {regression.target} (1 → 4 per request in b)"
    )


def test_the_summary_carries_one_callsite_per_shape_and_refuses_a_damaged_one(deployed):
    log, _ = deployed
    summaries = [json.loads(line) for line in log.read_text().splitlines() if '"summary"' in line]
    sites = {
        item["shape"]: item["callsite"]
        for record in summaries
        for totals in record["routes"].values()
        for item in totals["shapes"]
    }
    assert sites[shop.FAVORITES].startswith("tests/incident_app.py:")
    assert sites[shop.FAVORITES].endswith(" in favorites")
    assert sites[shop.HOME_COUNT].endswith(" in home")
    totals = next(iter(summaries[0]["routes"].values()))
    totals["shapes"][0]["callsite"] = 88
    with pytest.raises(ValueError, match="a callsite is text"):
        RouteTotals.from_json(totals)


def test_only_the_routes_asked_for(deployed):
    log, _ = deployed
    done = command("diff", str(log), "--route", "/search*", "--json")
    routes = [json.loads(line) for line in done.stdout.splitlines()]
    assert {line["route"] for line in routes if line["type"] != "window"} == {"/search"}


def rolling_deploy(log: Path, marked_release: str | None) -> None:
    """Release a, a marker (naming release b, or none), then both a's stragglers and b."""
    from ioprofiler.cli.mark import marker

    steady = {"/b": [spread(5)] * 2, "/c": [spread(8)] * 2}
    write_summaries(log, "a", {"/a": [spread(10)] * 2, **steady}, start=1000)
    with log.open("ab") as out:
        out.write(marker("deploy b", release=marked_release, now=1002.5))
    write_summaries(log, "a", {"/a": [spread(10)] * 2, **steady}, start=1003)  # stragglers
    write_summaries(log, "b", {"/a": [spread(40)] * 2, **steady}, start=1003)


def test_at_a_marker_naming_its_release_old_workers_after_it_count_as_before(tmp_path):
    """A rolling deploy: workers of the old release still serve (and write summaries) after
    the marker. The marker names the new release, so those records count as before."""
    rolled, unnamed = tmp_path / "rolled.jsonl", tmp_path / "unnamed.jsonl"
    rolling_deploy(rolled, "b")
    done = command("diff", str(rolled), "--at-marker", "deploy b", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [w["requests"] for w in lines[:2]] == [4 * 60, 2 * 60]
    (regression,) = [line for line in lines if line["type"] == "regression"]
    assert (regression["route"], regression["kind"]) == ("/a", "latency")
    rolling_deploy(unnamed, None)  # without the release, the marker's time splits them
    by_time = command("diff", str(unnamed), "--at-marker", "deploy b", "--json")
    lines = [json.loads(line) for line in by_time.stdout.splitlines()]
    assert [w["requests"] for w in lines[:2]] == [2 * 60, 4 * 60]
    assert not [line for line in lines if line["type"] == "regression"]  # the spread hides it
