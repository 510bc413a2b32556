"""``ioprofiler diff``: two windows of the log compared per route, the regressions named
with their cause, the costliest per request first.

    ioprofiler diff LOG                                  the two most recent releases
    ioprofiler diff LOG --before-release 1a2b3c --after-release 4f2a1c
    ioprofiler diff LOG --at-marker "deploy 4f2a1c" [--window 30m]
    ioprofiler diff LOG --before 14:00..14:30 --after 14:40..15:10
    ioprofiler diff LOG --before=-2h..-1h --after=-1h..        (``=`` before a leading -)
    ioprofiler diff LOG ... --json --fail-on regression       (exit 1 when there is one)

The rule that makes a change a regression is in :mod:`ioprofiler.diff` and docs/incident.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Any

from rich.text import Text

from ioprofiler.cli.output import Output
from ioprofiler.diff import (
    Diff,
    DiffError,
    RouteChange,
    Side,
    compare,
    compare_releases,
    marker_windows,
    parse_window,
    short_statement,
)
from ioprofiler.logread import Filter, Skipped
from ioprofiler.sql_text import visible
from ioprofiler.summary import ACCURACY
from ioprofiler.timeline import bucket_seconds

FOUND_REGRESSIONS = 1
BAD_OPTIONS = 2


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("diff", help="before and after compared per route: the regressions")
    p.add_argument("log", nargs="+", help="the recorder's log(s) (rotated files beside each too)")
    p.add_argument("--before", metavar="START..END", help="a time window: 14:00..14:30")
    p.add_argument("--after", metavar="START..END", help="the window to compare with it")
    p.add_argument("--at-marker", metavar="TEXT", help='before and after a marker: "deploy 4f2a1c"')
    p.add_argument("--window", metavar="LENGTH", help="with --at-marker: each side at most 30m")
    p.add_argument("--before-release", metavar="R", help="the release before")
    p.add_argument("--after-release", metavar="R", help="the release after")
    p.add_argument("--route", help="only routes matching this glob: /listing/*")
    p.add_argument("--limit", type=int, default=20, help="routes shown in the table (20)")
    p.add_argument(
        "--fail-on", choices=["regression"], help="exit 1 when a regression is found (for CI)"
    )
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    p.set_defaults(
        run=run_diff, path=None, min_ms=None, status=None, since=None, until=None,
    )  # fmt: skip


def run_diff(args: argparse.Namespace, keep: Filter) -> int:
    try:
        diff = _diff(args)
    except DiffError as exc:
        print(f"ioprofiler: {visible(str(exc))}", file=sys.stderr)
        return BAD_OPTIONS
    out = Output()
    if args.json:
        _print_json(out, diff)
    else:
        _print_text(out, diff, args.limit)
    if args.fail_on == "regression" and diff.regressions:
        return FOUND_REGRESSIONS
    return 0


def _diff(args: argparse.Namespace) -> Diff:
    """The comparison the options ask for; DiffError for options that do not make one."""
    by_time = args.before is not None or args.after is not None
    by_marker = args.at_marker is not None
    by_release = args.before_release is not None or args.after_release is not None
    if by_time + by_marker + by_release > 1:
        raise DiffError(
            "compare by one of: time (--before/--after), a marker (--at-marker) or releases "
            "(--before-release/--after-release)"
        )
    if args.window is not None and not by_marker:
        raise DiffError("--window goes with --at-marker")
    if by_time:
        if args.before is None or args.after is None:
            raise DiffError("give both windows: --before 14:00..14:30 --after 14:40..15:10")
        before = parse_window("before", args.before)
        after = parse_window("after", args.after)
        return compare(args.log, before, after, args.route, args.skipped)
    if by_marker:
        length = None
        if args.window is not None:
            try:
                length = bucket_seconds(args.window)
            except ValueError:
                raise DiffError(
                    f"--window is a length such as 30s, 10m or 1h, not {args.window!r}"
                ) from None
        before, after = marker_windows(args.log, args.at_marker, length, Skipped())
        return compare(args.log, before, after, args.route, args.skipped)
    if by_release and (args.before_release is None or args.after_release is None):
        raise DiffError("give both releases: --before-release R1 --after-release R2")
    return compare_releases(
        args.log, args.before_release, args.after_release, args.route, args.skipped
    )


def _side_dict(name: str, side: Side) -> dict[str, Any]:
    window = side.window
    return {
        "type": "window",
        "side": name,
        "release": window.release,
        "since": window.since,
        "until": window.until,
        "first_ts": side.first,
        "last_ts": side.last,
        "summary_records": side.records,
        "requests": side.requests,
    }


def _print_json(out: Output, diff: Diff) -> None:
    out.json(_side_dict("before", diff.before))
    out.json(_side_dict("after", diff.after))
    for regression in diff.regressions:
        out.json({"type": "regression", **regression.as_dict()})
    for change in diff.routes:
        out.json({"type": "route", **change.as_dict()})


def _print_text(out: Output, diff: Diff, limit: int) -> None:
    for name, side in (("before", diff.before), ("after", diff.after)):
        out.line(
            f"{name + ':':<8}{side.window.describe()}: {side.requests} requests counted "
            f"{_time(side.first)} .. {_time(side.last)} UTC ({side.records} summary records)"
        )
    out.line()
    if diff.regressions:
        count = len(diff.regressions)
        out.line(
            Text(
                f"{count} regression{'s' if count != 1 else ''}, the costliest per request first:",
                style="bold",
            )
        )
        for regression in diff.regressions:
            out.line(Text(regression.line(), style="red"))
    else:
        out.line(Text("no regressions: no route does more or slower work than before", "green"))
    out.line()
    out.line(f"per route (every request, from the summaries; percentiles within {ACCURACY:.0%}):")
    shown = diff.routes[:limit]
    out.table(
        ["route", "requests", "p50 ms", "p95 ms", "I/O p95 ms", "verdict"],
        [_row(change) for change in shown],
        numeric={1, 2, 3, 4},
    )
    for change in shown:
        details = _details(change)
        if details:
            out.line()
            out.line(Text(f"{change.route}:", style="bold"))
            for detail in details:
                out.line(f"  {detail}")


def _row(change: RouteChange) -> list[str]:
    b, a = change.before, change.after
    if change.regressions:
        verdict = "regression"
    elif change.moved:
        verdict = "not named: " + change.moved.partition("; not named: ")[2]
    else:
        verdict = "-"
    return [
        change.route,
        f"{b['requests']} → {a['requests']}",
        f"{_ms(b['p50_ms'])} → {_ms(a['p50_ms'])}",
        f"{_ms(b['p95_ms'])} → {_ms(a['p95_ms'])}",
        f"{_ms(b['io_p95_ms'])} → {_ms(a['io_p95_ms'])}",
        verdict,
    ]


def _details(change: RouteChange) -> list[str]:
    lines = []
    for shape in change.shapes:
        if shape.change == "same":
            continue
        what = short_statement(shape.shape) if shape.shape is not None else "calls"
        site = f"  <- {shape.callsite}" if shape.callsite else ""
        lines.append(
            f"{shape.change:<8} {shape.target}  {what}: {shape.calls_before:.2f} → "
            f"{shape.calls_after:.2f} per request{site}"
        )
    if change.findings_appeared:
        lines.append(f"findings that appeared: {', '.join(change.findings_appeared)}")
    if change.moved:
        lines.append(f"latency: {change.moved}")
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
