"""How long ``ioprofiler top`` takes on a large log (the issue: seconds for 1 GB).

    make bench            # or: PYTHONPATH=. python benchmarks/top_log.py --gib 1

Writes 200 real kept requests (30 events each: 20 SQLite queries over four shards and
10 memcached gets) with a Recorder, repeats them with new ids, times and durations up to
the size asked, then adds them up as ``top`` does by each grouping (reading each line in
part: only what the grouping adds up), timing wall clock and CPU (the CPU figure holds when
other processes share the cores). ``benchmarks/readers.py`` times every reader on a log with
summary records and markers too.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from pymemcache.client.base import Client

import ioprofiler
from ioprofiler import cause
from ioprofiler.aggregate import BY, Top
from ioprofiler.cause import Causes
from ioprofiler.cli.top import EVENTS_READ as READ
from ioprofiler.logread import kept_and_summaries
from ioprofiler.memcached import MemcachedProcess
from ioprofiler.recorder import Recorder
from ioprofiler.sinks import FinishedRequest

ROUTES = ("/listing/<id>", "/shop/<id>", "/")


def real_lines(directory: Path, cache: Client) -> list[dict]:
    engines = [sa.create_engine(f"sqlite:///{directory}/dbshard0{n}.db") for n in range(1, 5)]
    recorder = Recorder(directory / "source.jsonl", slow_ms=0)
    for n in range(200):
        with ioprofiler.profile() as trace:
            for i in range(20):
                with engines[i % 4].connect() as conn:
                    conn.exec_driver_sql(f"SELECT ? + {i % 5}", (n,)).scalar()
            for i in range(10):
                cache.get(f"listing:{n}:{i}")
        route = ROUTES[n % 3]
        request = FinishedRequest(
            trace, "GET", f"/x/{n}", "", route, 200, time.time(), 500.0, f"s{n}", "web1", 1
        )
        recorder.handle(request)
    recorder.close()
    for engine in engines:
        engine.dispose()
    return [json.loads(line) for line in (directory / "source.jsonl").read_text().splitlines()]


def write_log(path: Path, source: list[dict], size: int) -> int:
    rng = random.Random(1)
    written = count = 0
    with open(path, "w") as out:
        while written < size:
            record = dict(rng.choice(source), id=f"gen-{count}", ts=1.7e9 + count / 100)
            record["duration_ms"] = round(rng.uniform(100, 900), 3)
            line = json.dumps(record, separators=(",", ":")) + "\n"
            out.write(line)
            written += len(line)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="log size in GiB (default 1)")
    args = parser.parse_args()
    ioprofiler.install()
    with tempfile.TemporaryDirectory() as name, MemcachedProcess() as server:
        directory = Path(name)
        source = real_lines(directory, Client(server.address))
        log = directory / "io.jsonl"
        lines = write_log(log, source, int(args.gib * 2**30))
        print(f"top on a {args.gib:g} GiB log: {lines:,} kept requests of 30+ events")
        for by in (*BY, *cause.BY):
            wall, cpu = time.perf_counter(), time.process_time()
            top: Top | Causes = Causes(by) if by in cause.BY else Top(by)
            for _, record in kept_and_summaries(
                log, events=READ[by], findings=by == "finding"
            ):  # as the command reads the log: each line in part, what --by adds up
                top.add(record)
            rows = top.rows(20)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"   --by {by:<9} {wall:5.1f} s wall, {cpu:5.1f} s CPU, {len(rows)} rows")


if __name__ == "__main__":
    main()
