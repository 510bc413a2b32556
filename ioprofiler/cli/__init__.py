"""The ``ioprofiler`` command: read the recorder's log like tcpdump reads the wire.

    ioprofiler show LOG [ID] [--path GLOB] [--route GLOB] [--min-ms N] [--status 5xx]
                             [--since T] [--until T] [--slowest N] [--list] [--callsites]
                             [--json]
    ioprofiler tail LOG      [same filters] [--list] [--callsites] [--json]
    ioprofiler top LOG       [--by route|target|statement|wait|finding|callsite|shape]
                             [--limit N] [filters] [--json]
    ioprofiler report LOG -o report.html [filters] [--slowest N]
    ioprofiler timeline LOG  [--bucket 1m] [--routes N] [--slow-ms N] [filters] [--json]
    ioprofiler diff LOG      [--before T..T --after T..T | --at-marker TEXT | --before-release R
                             --after-release R] [--route GLOB] [--fail-on regression] [--json]
    ioprofiler mark "deploy 4f2a1c" --log LOG [--log LOG2] [--release R] [--statsd HOST:PORT]
    ioprofiler doctor        the version, the Python, which compiled modules and libraries run
    ioprofiler --version

Also ``python -m ioprofiler``. Output is coloured in a terminal and plain when piped;
``--json`` prints JSON lines for scripts. Lines of the log that are not kept requests are
skipped, and counted once on stderr at the end.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ioprofiler import __version__
from ioprofiler.cli import diff, doctor, mark, report, show, timeline, top
from ioprofiler.logread import RELATIVE_TIME, Filter, Skipped, parse_time
from ioprofiler.sql_text import visible

_TIME_OPTIONS = ("--since", "--until")
_CALLSITES_HELP = "the callsite of every call (slow calls always have theirs)"


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "log", help="the recorder's log file (rotated and .gz files beside it are read too)"
    )
    parser.add_argument("--path", help="only paths matching this glob: /listing/*")
    parser.add_argument("--route", help="only routes matching this glob: /listing/*")
    parser.add_argument("--min-ms", type=float, help="only requests that took at least this long")
    parser.add_argument("--status", help="only this status: 500, or 5xx")
    parser.add_argument("--since", type=parse_time, help="from this time: 2026-11-27T03:00, -1h")
    parser.add_argument("--until", type=parse_time, help="up to this time")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioprofiler", description="Find slow requests in the recorder's log."
    )
    parser.add_argument("--version", action="version", version=f"ioprofiler {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("show", help="kept requests as listings")
    _filters(p)
    p.add_argument("id", nargs="?", help="one request's id (or its beginning)")
    p.add_argument("--slowest", type=int, metavar="N", help="only the N slowest")
    p.add_argument("--list", action="store_true", help="one line per request, no listing")
    p.add_argument("--callsites", action="store_true", help=_CALLSITES_HELP)
    p.set_defaults(run=show.run_show)

    p = commands.add_parser("tail", help="follow the log and print each kept request")
    _filters(p)
    p.add_argument("--from-start", action="store_true", help="print what is there first")
    p.add_argument("--list", action="store_true", help="one line per request, no listing")
    p.add_argument("--callsites", action="store_true", help=_CALLSITES_HELP)
    p.set_defaults(run=show.run_tail)

    p = commands.add_parser(
        "top",
        help="what made requests slow, added up",
        description=(
            "What made requests slow, added up: the kept requests (slow, failing or sampled), "
            "and beside them what the summaries count of every request. --path, --status "
            "and --min-ms apply to the kept requests only: a summary holds no request's "
            "path, status or duration (--route, --since and --until apply to both)."
        ),
    )
    _filters(p)
    p.add_argument("--by", default="route", choices=top.BY, help="group by (default route)")
    p.add_argument("--limit", type=int, default=20, help="rows shown (default 20)")
    p.set_defaults(run=top.run_top)

    p = commands.add_parser("report", help="a self-contained HTML file of kept requests")
    _filters(p)
    p.add_argument("-o", "--output", required=True, help="the HTML file to write")
    p.add_argument(
        "--slowest", type=int, default=1000, metavar="N", help="at most N (default 1000)"
    )
    p.add_argument("--title", default=None, help="the report's title")
    p.set_defaults(run=report.run_report)

    timeline.add_parser(commands, _filters)
    diff.add_parser(commands)
    mark.add_parser(commands)
    p = commands.add_parser("doctor", help="which Python, compiled modules and libraries run here")
    p.set_defaults(run=doctor.run_doctor)
    return parser


def relative_times_attached(argv: Sequence[str]) -> list[str]:
    """``--since -1h`` as ``--since=-1h``: argparse takes a lone ``-1h`` for an option."""
    attached: list[str] = []
    for arg in argv:
        if attached and attached[-1] in _TIME_OPTIONS and RELATIVE_TIME.fullmatch(arg):
            attached[-1] += f"={arg}"
        else:
            attached.append(arg)
    return attached


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(relative_times_attached(sys.argv[1:] if argv is None else argv))
    if args.command == "doctor":  # reads no log
        return doctor.run_doctor(args)
    args.skipped = Skipped()  # what every reader skips, said once at the end
    keep = Filter(
        path=args.path,
        route=args.route,
        min_ms=args.min_ms,
        status=args.status,
        since=args.since,
        until=args.until,
        id=getattr(args, "id", None),
    )
    try:
        return args.run(args, keep)
    except FileNotFoundError as exc:
        print(f"ioprofiler: {visible(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # | head
        sys.stderr.close()
        return 0
    finally:
        _tell_skipped(args.skipped)


def _tell_skipped(skipped: Skipped) -> None:
    message = skipped.message()
    if message is not None and not sys.stderr.closed:
        print(f"ioprofiler: {message}", file=sys.stderr)
