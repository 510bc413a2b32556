"""How much CPU ``top``, ``timeline`` and ``diff`` take per GiB of log (issue 24: under 10 s).

    PYTHONPATH=. python benchmarks/readers.py --gib 0.3             # write a log and time
    PYTHONPATH=. python benchmarks/readers.py --log /tmp/io.jsonl   # time an existing log
    PYTHONPATH=. python benchmarks/readers.py --gib 1 --write /tmp/io.jsonl --no-time

The log is made of real records: 240 kept requests written by a Recorder (30+ events each:
SQLite queries over four shards, memcached gets, an N+1 in every fourth request, callsites
on), repeated with new ids, times and durations; every 10 s of log time a summary record
from each of four processes (the recorder's own summary line, re-stamped); a marker every
ten minutes. Each command runs in a child process and its CPU (user + sys) is read from
``resource.getrusage(RUSAGE_CHILDREN)``: the figure holds when other processes share the
cores, wall time does not.

To time another checkout against this one, run from outside both with PYTHONPATH naming it
(``cd /tmp && PYTHONPATH=/path/to/other python /path/to/benchmarks/readers.py --log …``):
the commands run as ``python -m ioprofiler``, which puts the working directory first on the
path, so from inside a checkout they run that checkout whatever PYTHONPATH says.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUTES = ("/listing/<int:id>", "/shop/<name>", "/", "/search")
KEPT_PER_S = 5  # kept requests per second of log time
SUMMARY_EVERY_S = 10
PROCESSES = (4101, 4102, 4103, 4104)
MARKER_EVERY_S = 600

COMMANDS = {
    "top --by route": ["top", "--by", "route"],
    "top --by target": ["top", "--by", "target"],
    "top --by statement": ["top", "--by", "statement"],
    "top --by wait": ["top", "--by", "wait"],
    "top --by finding": ["top", "--by", "finding"],
    "top --by callsite": ["top", "--by", "callsite"],
    "top --by shape": ["top", "--by", "shape"],
    "top --min-ms 800": ["top", "--min-ms", "800"],
    "top --by statement --path /x/1*": ["top", "--by", "statement", "--path", "/x/1*"],
    "timeline": ["timeline"],
    "diff --at-marker": ["diff", "--at-marker", "deploy 2"],
}


def real_lines(directory: Path) -> tuple[list[dict], dict]:
    """Kept requests and one summary record, as a Recorder writes them."""
    import sqlalchemy as sa
    from pymemcache.client.base import Client

    import ioprofiler
    from ioprofiler.memcached import MemcachedProcess
    from ioprofiler.recorder import Recorder
    from ioprofiler.sinks import FinishedRequest

    ioprofiler.install()
    engines = [sa.create_engine(f"sqlite:///{directory}/dbshard0{n}.db") for n in range(1, 5)]
    log = directory / "source.jsonl"
    recorder = Recorder(log, slow_ms=0, release="4f2a1c", summary_every=3600)
    with MemcachedProcess() as server:
        cache = Client(server.address)
        for n in range(240):
            with ioprofiler.profile() as trace:
                for i in range(20):
                    with engines[i % 4].connect() as conn:
                        conn.exec_driver_sql(f"SELECT ? + {i % 5}", (n,)).scalar()
                if n % 4 == 0:  # an N+1
                    with engines[0].connect() as conn:
                        for i in range(12):
                            conn.exec_driver_sql("SELECT ? * 2 AS fav", (i,)).scalar()
                for i in range(10):
                    cache.get(f"listing:{n}:{i}")
            route = ROUTES[n % len(ROUTES)]
            status = 500 if n % 37 == 0 else 200
            request = FinishedRequest(
                trace, "GET", f"/x/{n}", "", route, status, time.time(), 500.0, f"s{n}", "web1", 1
            )
            recorder.handle(request)
        recorder.close()
    for engine in engines:
        engine.dispose()
    kept, summary = [], None
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("type") == "summary":
            summary = record
        elif "type" not in record:
            kept.append(record)
    assert summary is not None and kept
    return kept, summary


def _dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_log(path: Path, kept: list[dict], summary: dict, size: int) -> dict[str, int]:
    """Repeats the real records up to ``size`` bytes; how many of each kind."""
    rng = random.Random(1)
    start = 1.8e9
    written = 0
    counts = {"kept": 0, "summary": 0, "marker": 0}
    next_summary, next_marker = start + SUMMARY_EVERY_S, start + MARKER_EVERY_S
    with open(path, "w", encoding="utf-8") as out:
        while written < size:
            ts = start + counts["kept"] / KEPT_PER_S
            lines = []
            if ts >= next_summary:
                for pid in PROCESSES:
                    lines.append(
                        _dumps(
                            dict(
                                summary,
                                from_ts=round(next_summary - SUMMARY_EVERY_S, 6),
                                ts=round(next_summary + pid / 1e6, 6),
                                pid=pid,
                                release=f"r{int((next_summary - start) // MARKER_EVERY_S)}",
                            )
                        )
                    )
                counts["summary"] += len(PROCESSES)
                next_summary += SUMMARY_EVERY_S
            if ts >= next_marker:
                number = int((next_marker - start) // MARKER_EVERY_S)
                lines.append(
                    _dumps(
                        {
                            "type": "marker",
                            "text": f"deploy {number}",
                            "time": "2027-01-15T08:00:00.000000+00:00",
                            "ts": next_marker,
                            "host": "deploy",
                            "pid": 1,
                            "release": f"r{number}",
                        }
                    )
                )
                counts["marker"] += 1
                next_marker += MARKER_EVERY_S
            record = dict(rng.choice(kept), id=f"gen-{counts['kept']}", ts=round(ts, 6))
            record["duration_ms"] = round(rng.uniform(100, 900), 3)
            record["path"] = f"/x/{counts['kept'] % 1000}"
            lines.append(_dumps(record))
            counts["kept"] += 1
            for line in lines:
                out.write(line)
                written += len(line.encode())
    return counts


def cpu_of(argv: list[str]) -> tuple[float, bytes]:
    """CPU seconds (user + sys) of a child process running ``argv``, and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stderr.decode(errors="replace"))
    return cpu, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=0.3, help="log size to write (default 0.3)")
    parser.add_argument("--log", type=Path, help="time this log instead of writing one")
    parser.add_argument("--write", type=Path, help="write the log here (and keep it)")
    parser.add_argument("--no-time", action="store_true", help="only write the log")
    parser.add_argument("--only", action="append", help="time only these commands")
    parser.add_argument("--outputs", type=Path, help="save each command's output here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        log = args.log
        if log is None:
            log = args.write or Path(name) / "io.jsonl"
            kept, summary = real_lines(Path(name))
            counts = write_log(log, kept, summary, int(args.gib * 2**30))
            print(f"wrote {log}: {counts}")
        if args.no_time:
            return
        gib = os.path.getsize(log) / 2**30
        print(f"{gib:.3f} GiB log ({log}); CPU seconds (user + sys) per GiB")
        command = [sys.executable, "-m", "ioprofiler"]
        if args.outputs:
            args.outputs.mkdir(parents=True, exist_ok=True)
        for label, extra in COMMANDS.items():
            if args.only and label not in args.only:
                continue
            cpu, output = cpu_of([*command, extra[0], str(log), *extra[1:]])
            print(f"   {label:<34} {cpu / gib:6.1f} s/GiB  ({cpu:.1f} s)", flush=True)
            if args.outputs:
                slug = label.replace(" ", "_").replace("/", "-").replace("*", "x")
                (args.outputs / f"{slug}.txt").write_bytes(output)


if __name__ == "__main__":
    main()
