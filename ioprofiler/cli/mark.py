"""``ioprofiler mark``: a deploy (or any moment ops want to see) marked in the log, and drawn
on every Graphite graph.

    ioprofiler mark "deploy 4f2a1c" --log /var/log/shop/ioprofiler.jsonl
    ioprofiler mark "deploy 4f2a1c" --log LOG --statsd 127.0.0.1:8125 --prefix shop

Appends ``{"type": "marker", "text": "deploy 4f2a1c", "release": …, "time": …}`` to each log
given, under the lock the recorder's writers take (the line never lands inside theirs), and,
with a StatsD daemon given (``--statsd`` or ``IOPROFILER_STATSD``), sends
``<prefix>.deploys:1|c``: in Graphite ``drawAsInfinite(stats_counts.<prefix>.deploys)``
draws it as a vertical line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ioprofiler.export.names import check_prefix, with_host
from ioprofiler.export.udp import UDPSender
from ioprofiler.logfile import SharedLog
from ioprofiler.recorder import release_from_env, stamp
from ioprofiler.sql_text import visible

STATSD_ENV = "IOPROFILER_STATSD"
MAX_TEXT = 500
_NEVER_ROTATE = 2**62  # a marker is one line: rotating is the recorder's job


def marker(text: str, release: str | None = None, now: float | None = None) -> bytes:
    """The marker's log line.

    >>> marker("deploy 4f2a1c", release="4f2a1c")
    b'{"type":"marker","text":"deploy 4f2a1c","time":"2026-12-06T14:32:05.1+00:00",…}\\n'
    """
    record = {"type": "marker", "text": text, **stamp(time.time() if now is None else now, release)}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def statsd_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:8125`` -> ("127.0.0.1", 8125); ``[::1]:8125`` for IPv6."""
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a StatsD address is host:port (127.0.0.1:8125), not {text!r}")
    return host, int(port)


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("mark", help="mark a deploy in the log (and in Graphite)")
    p.add_argument("text", help='what happened: "deploy 4f2a1c"')
    p.add_argument(
        "--log", action="append", required=True, help="the recorder's log (repeat for several)"
    )
    p.add_argument("--release", help="the release deployed (default $IOPROFILER_RELEASE)")
    p.add_argument(
        "--statsd", help=f"send the deploy counter to this StatsD host:port (or ${STATSD_ENV})"
    )
    p.add_argument("--prefix", default="ioprofiler", help="the counter's prefix (ioprofiler)")
    p.set_defaults(
        run=run_mark, json=False, path=None, route=None, min_ms=None, status=None, since=None,
        until=None,
    )  # fmt: skip


def run_mark(args: argparse.Namespace, keep: object) -> int:
    try:
        text = _text(args.text)
        release = release_from_env(args.release)
        statsd = args.statsd or os.environ.get(STATSD_ENV)
        address = None if not statsd else statsd_address(statsd)
        prefix = check_prefix(with_host(args.prefix))
    except ValueError as exc:
        print(f"ioprofiler: {visible(str(exc))}", file=sys.stderr)
        return 2
    line = marker(text, release)
    for path in args.log:
        log = SharedLog(path, _NEVER_ROTATE, backups=0)
        try:
            log.append([line])
        finally:
            log.close()
    if address is not None and not _send(address, f"{prefix}.deploys:1|c"):
        print(f"ioprofiler: could not send the deploy counter to {statsd}", file=sys.stderr)
        return 1
    return 0


def _text(text: str) -> str:
    text = text.strip()
    if not text or len(text) > MAX_TEXT or not text.isprintable():
        raise ValueError(f"a marker's text is 1 to {MAX_TEXT} printable characters, not {text!r}")
    return text


def _send(address: tuple[str, int], metric: str) -> bool:
    sender = UDPSender(*address)
    try:
        return sender.send(metric.encode("ascii"))
    finally:
        sender.close()
