"""What ioprofiler costs per intercepted call, paired against the raw call in the same process.

    make bench                      # or: python benchmarks/overhead.py --rounds 41
    python benchmarks/overhead.py --separate     # cross-check: one process per configuration

Real memcached (a private process on a loopback port) and a real SQLite file. Every round
runs every configuration in one process, in a shuffled order (three passes, the fastest
batch of each kept), and each configuration is compared with the same round's raw: the
report is the median over rounds of the per-round ratio and added µs, with the spread of
the rounds (quartiles, and the extremes of the added time). Configurations:

- raw:          ioprofiler not installed
- installed:    ioprofiler installed, no trace open (the cost every request pays)
- recording:    a trace open, every call recorded with its callsite
- otel idle:    OpenTelemetry's pymemcache and SQLAlchemy instrumentations, no SDK
- otel:         the same with the SDK recording spans (in memory), inside a request span
                (both need the `bench` extra: OpenTelemetry's instrumentation and SQLAlchemy 2.0)

install()/uninstall() and OpenTelemetry's instrument()/uninstrument() are exact inverses, so
one process can switch between them. Then: a page of 1,000 SQL queries and 1,000 memcached
gets through the WSGI middleware, with and without ``?ioprofiler=1``; the wrapper alone
around a trivial method; memory per kept event; and the recording path broken down step by
step (see breakdown.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator

import sqlalchemy as sa
import wrapt
from breakdown import ablations, cache_breakdown, sql_breakdown
from ioprofiler.integrations import pymemcache as pymemcache_integration
from middleware import run_wsgi, shop_page
from paired import Config, Scenario, Spread, installed, paired, raw, recording, run_rounds
from pymemcache.client.base import Client

import ioprofiler
from ioprofiler import callsite
from ioprofiler.memcached import MemcachedProcess
from ioprofiler.patching import Patches
from ioprofiler.trace import active
from ioprofiler.wsgi import IOProfilerMiddleware

# (scenario, configuration) -> most µs it may add per call (median of the paired rounds)
TARGET_ADDED_US = {
    ("SQL statement", "installed"): 0.6,
    ("memcache get (hit)", "installed"): 0.6,
    ("memcache get (miss)", "installed"): 0.6,
    ("SQL statement", "recording"): 2.5,
    ("memcache get (hit)", "recording"): 2.5,
    ("memcache get (miss)", "recording"): 2.5,
}
PAGE_QUERIES = 1000
PAGE_TARGET_RATIO = 1.15  # profiled page / unprofiled page
EVENT_BYTES_TARGET = 300
SQL = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :x"


# -- configurations --------------------------------------------------------------------


def opentelemetry_configs(
    engine: sa.Engine, connections: dict[str, sa.Connection]
) -> dict[str, Config]:
    """OpenTelemetry's instrumentations, if the bench extra is installed.

    They get their own engine on the same file: SQLAlchemy keeps an engine's
    "has listeners" flag set after the listeners are removed, which would tax the
    raw and ioprofiler batches that follow.
    """
    try:
        from opentelemetry.instrumentation.pymemcache import PymemcacheInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return {}

    exporter = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(exporter))

    @contextlib.contextmanager
    def instrumented(provider: object | None) -> Iterator[None]:
        ioprofiler.uninstall()
        options = {} if provider is None else {"tracer_provider": provider}
        PymemcacheInstrumentor().instrument(**options)
        SQLAlchemyInstrumentor().instrument(engine=engine, **options)
        ours = connections["current"]
        connections["current"] = connections["otel"]
        try:
            if provider is None:
                yield
            else:
                with sdk.get_tracer("bench").start_as_current_span("request"):
                    yield
        finally:
            connections["current"] = ours
            SQLAlchemyInstrumentor().uninstrument()
            PymemcacheInstrumentor().uninstrument()
            exporter.clear()

    return {
        "otel idle": lambda: instrumented(None),
        "otel": lambda: instrumented(sdk),
    }


# -- the calls -------------------------------------------------------------------------


def make_shard(directory: str) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{directory}/dbshard01.db")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE FavoriteListingUser (id INTEGER PRIMARY KEY, "
            "listing_id INTEGER NOT NULL, user_id INTEGER NOT NULL)"
        )
        conn.exec_driver_sql("CREATE INDEX by_listing ON FavoriteListingUser (listing_id)")
        conn.exec_driver_sql(
            "INSERT INTO FavoriteListingUser (listing_id, user_id) VALUES (?, ?)",
            [(5773453 + n % 50, n) for n in range(5000)],
        )
    return engine


class Trivial:
    """Stands in for a cache client whose call costs nothing, to show the wrapper alone."""

    server = ("127.0.0.1", 0)

    def set(self, key: object, value: object) -> bool:
        return True


def wrapper_alone(rounds: int, n: int) -> dict[str, Spread]:
    """CPU µs added per call of a trivial method, paired against the raw method, by:
    a bare wrapt pass-through wrapper with the same ``enabled`` hook as ours, no trace open
    (the floor of any wrapt patch) and with a trace open (the floor of the recording path);
    ioprofiler's cache wrapper, idle and recording."""

    def pass_through(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    target = Trivial()
    plain = Trivial.__dict__["set"]
    patches = Patches()

    @contextlib.contextmanager
    def bare(open_trace: bool) -> Iterator[None]:
        Trivial.set = wrapt.FunctionWrapper(plain, pass_through, enabled=active.get)
        try:
            with ioprofiler.profile() if open_trace else contextlib.nullcontext():
                yield
        finally:
            Trivial.set = plain

    @contextlib.contextmanager
    def ours(open_trace: bool) -> Iterator[None]:
        patches.wrap(Trivial, "set", pymemcache_integration._write_wrapper("set", "key"))
        try:
            with (
                ioprofiler.profile(max_events=sys.maxsize)
                if open_trace
                else (contextlib.nullcontext())
            ):
                yield
        finally:
            patches.unwrap_all()

    configs: dict[str, Config] = {
        "raw": contextlib.nullcontext,
        "bare wrapt, idle": lambda: bare(False),
        "bare wrapt, trace open": lambda: bare(True),
        "ioprofiler idle": lambda: ours(False),
        "ioprofiler recording": lambda: ours(True),
    }
    scenario = Scenario("trivial", lambda: target.set("k", 1), n)
    run_rounds(configs, [scenario], rounds)
    return {name: paired(scenario, name).added_cpu for name in configs if name != "raw"}


def bytes_per_event(call: Callable[[], object], n: int) -> float:
    """Memory a trace holds per kept event: what ``n`` recorded calls leave allocated while
    their trace is open, less what ``n`` unrecorded calls leave (the library's own). Counted
    whoever allocates it: the compiled recorders allocate from C, on the caller's line."""
    ioprofiler.install()
    with ioprofiler.profile():
        call()  # warm caches (callsite decisions, shard names)
    for _ in range(n):
        call()
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            call()
        gc.collect()
        unrecorded = tracemalloc.get_traced_memory()[0] - start
        start = tracemalloc.get_traced_memory()[0]
        with ioprofiler.profile(max_events=n) as trace:
            for _ in range(n):
                call()
            gc.collect()
            recorded = tracemalloc.get_traced_memory()[0] - start
        assert len(trace.events) == n
    finally:
        tracemalloc.stop()
        ioprofiler.uninstall()
    return (recorded - unrecorded) / n


# -- the run ---------------------------------------------------------------------------


class Discard:
    """A sink that drops every request: the middleware traces every request for it, as it
    does for the recorder or an exporter, and nothing else is measured."""

    def handle(self, request: object) -> None:
        pass

    def close(self) -> None:
        pass


class Bench:
    """The servers, the connections and the calls every measurement shares."""

    def __init__(self, stack: contextlib.ExitStack, otel: bool) -> None:
        directory = stack.enter_context(tempfile.TemporaryDirectory())
        server = stack.enter_context(MemcachedProcess())
        self.client = Client(server.address)
        stack.callback(self.client.close)
        self.client.set("hit", b"x" * 100)
        self.engine = make_shard(directory)
        stack.callback(self.engine.dispose)
        otel_engine = sa.create_engine(self.engine.url)
        stack.callback(otel_engine.dispose)
        self.connections = {
            "current": stack.enter_context(self.engine.connect()),
            "otel": stack.enter_context(otel_engine.connect()),
        }
        self.statement = sa.text(SQL)
        self.configs: dict[str, Config] = {
            "raw": raw,
            "installed": installed,
            "recording": recording,
        }
        if otel:
            self.configs.update(opentelemetry_configs(otel_engine, self.connections))
        self.ablations = ablations(recording, installed)

    def execute(self) -> object:
        return self.connections["current"].execute(self.statement, {"x": 5773453}).scalar()

    def scenarios(self, calls: int) -> list[Scenario]:
        client = self.client
        return [
            Scenario("SQL statement", self.execute, calls),
            Scenario("memcache get (hit)", lambda: client.get("hit"), calls),
            Scenario("memcache get (miss)", lambda: client.get("miss"), calls),
        ]

    def page(self) -> tuple[dict[str, Config], Scenario]:
        app = shop_page(self.engine, self.client, PAGE_QUERIES)
        profiled = IOProfilerMiddleware(app)
        recorded = IOProfilerMiddleware(app, export=[Discard()])
        chosen = {"call": lambda: None}

        @contextlib.contextmanager
        def serve(call: Callable[[], object], install: bool) -> Iterator[None]:
            if install:
                ioprofiler.install()
            chosen["call"] = call
            try:
                yield
            finally:
                ioprofiler.uninstall()

        configs: dict[str, Config] = {
            "raw": lambda: serve(lambda: run_wsgi(app, "/page"), False),
            "unprofiled": lambda: serve(lambda: run_wsgi(profiled, "/page"), True),
            "recorded": lambda: serve(lambda: run_wsgi(recorded, "/page"), True),
            "panel": lambda: serve(lambda: run_wsgi(profiled, "/page?ioprofiler=1"), True),
        }
        return configs, Scenario("page", lambda: chosen["call"](), 1, collect=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # 41: on a shared 2-core host, the medians of 11 rounds moved by several µs from run to
    # run, more than recording a call costs; 41 narrow a statement's quartiles to about ±1 µs.
    parser.add_argument("--rounds", type=int, default=41, help="paired rounds (at least 3)")
    parser.add_argument("--calls", type=int, default=500, help="calls per batch")
    parser.add_argument(
        "--no-otel", action="store_true", help="leave OpenTelemetry out even when installed"
    )
    parser.add_argument(
        "--separate",
        action="store_true",
        help="cross-check: measure each configuration in a process of its own",
    )
    parser.add_argument("--only", help=argparse.SUPPRESS)  # a --separate child
    args = parser.parse_args(argv)
    if args.rounds < 3 or args.calls < 1:
        parser.error("--rounds must be at least 3 and --calls at least 1")
    if args.separate:
        return separate_processes(args)

    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        bench = Bench(stack, otel=not args.no_otel)
        configs = bench.configs
        if args.only:
            configs = {args.only: configs[args.only]}
        else:
            configs = {**configs, **bench.ablations}
        scenarios = bench.scenarios(args.calls)
        run_rounds(configs, scenarios, args.rounds)
        if args.only:
            print(
                json.dumps({s.name: [wall for wall, _ in s.rounds[args.only]] for s in scenarios})
            )
            return 0
        page_configs, page = bench.page()
        run_rounds(page_configs, [page], args.rounds)
        wrapper = wrapper_alone(args.rounds, 20_000)
        memory = {
            "SQL statement": bytes_per_event(bench.execute, 5000),
            "memcache get": bytes_per_event(lambda: bench.client.get("hit"), 5000),
        }
        steps = {
            "SQL statement": sql_breakdown(bench.execute),
            "memcache get (hit)": cache_breakdown(lambda: bench.client.get("hit")),
        }
    names = [name for name in configs if name not in bench.ablations]
    report(args, names, scenarios, page, wrapper, memory, steps, load_before)
    return 0


def separate_processes(args: argparse.Namespace) -> int:
    """Each configuration in its own process, compared by the medians of the processes."""
    names = ["raw", "installed", "recording"]
    if not args.no_otel:
        names.append("otel")
    medians: dict[str, dict[str, float]] = {}
    for name in names:
        command = [sys.executable, __file__, "--only", name]
        command += ["--rounds", str(args.rounds), "--calls", str(args.calls)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rounds = json.loads(output.strip().splitlines()[-1])
        medians[name] = {scenario: Spread.of(values).median for scenario, values in rounds.items()}
    print(f"separate processes, {args.rounds} rounds x {args.calls} calls each; load {_load()}")
    print(f"{'scenario':<22}{'config':<14}{'µs/call':>10}{'ratio':>8}{'added µs':>10}")
    for scenario, raw_us in medians["raw"].items():
        for name in names:
            us = medians[name][scenario]
            shown = "" if name == "raw" else f"{us / raw_us:>8.3f}{us - raw_us:>+10.2f}"
            print(f"{scenario:<22}{name:<14}{us:>10.2f}{shown}")
    return 0


# -- the report ------------------------------------------------------------------------


def _load(before: tuple[float, float, float] | None = None) -> str:
    now = os.getloadavg()[0]
    return f"{before[0]:.1f} -> {now:.1f}" if before else f"{now:.1f}"


def _verdict(met: bool, text: str) -> str:
    return f"{text} {'met' if met else 'MISSED'}"


def _row(label: str, figures, target: str = "") -> str:
    ratio, added, cpu = figures.ratio, figures.added, figures.added_cpu
    return (
        f"{label}{figures.us.median:>9.2f}"
        f"{ratio.median:>8.3f} [{ratio.q1:.3f}-{ratio.q3:.3f}]"
        f"{added.median:>+8.2f} [{added.low:+.2f}..{added.high:+.2f}]"
        f"{cpu.median:>+8.2f} [{cpu.q1:+.2f}..{cpu.q3:+.2f}]  {target}"
    )


def _cpu(spread: Spread) -> str:
    return f"{spread.median:+.2f} [{spread.q1:+.2f}..{spread.q3:+.2f}]"


def report(args, names, scenarios, page, wrapper, memory, steps, load_before) -> None:
    print(
        f"ioprofiler {ioprofiler.__version__}, SQLAlchemy {sa.__version__}, "
        f"wrapt {wrapt.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average {_load(load_before)}"
    )
    print(
        f"{args.rounds} paired rounds x {args.calls} calls per batch (fastest of 3 shuffled "
        "passes); per-round figures against the same round's raw: median [quartiles] for "
        "ratios and CPU, median [min..max] for wall µs added"
    )
    print()
    header = (
        f"{'scenario':<21}{'config':<12}{'µs/call':>9}{'ratio':>8}{'':15}"
        f"{'added µs (wall)':>24}{'added µs (CPU)':>24}  target (µs added)"
    )
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        raw_us = Spread.of([wall for wall, _ in scenario.rounds["raw"]]).median
        print(f"{scenario.name:<21}{'raw':<12}{raw_us:>9.2f}")
        for name in names:
            if name == "raw":
                continue
            figures = paired(scenario, name)
            limit = TARGET_ADDED_US.get((scenario.name, name))
            target = ""
            if limit is not None:
                wall = "met" if figures.added.median <= limit else "MISSED"
                cpu = "met" if figures.added_cpu.median <= limit else "MISSED"
                target = f"<= +{limit}: wall {wall}, CPU {cpu}"
            print(_row(f"{'':<21}{name:<12}", figures, target))
        print()

    print(
        f"page: {PAGE_QUERIES} SQL queries + {PAGE_QUERIES} memcached gets through the WSGI "
        "middleware, ms per page, against the unprofiled page (ioprofiler installed, no "
        "parameter); recorded: traced for a sink, as the recorder and exporters trace every "
        "request, response unchanged; panel: ?ioprofiler=1, the panel rendered into the page"
    )
    unprofiled = Spread.of([w for w, _ in page.rounds["unprofiled"]]).median
    print(
        f"{'':<21}{'':<12}{'ms/page':>9}{'ratio':>8}{'':15}{'ms added':>15}{'':14}{'CPU ratio':>9}"
    )
    print(f"{'':<21}{'unprofiled':<12}{unprofiled / 1000:>9.2f}")
    for name in ("raw", "recorded", "panel"):
        figures = paired(page, name, baseline="unprofiled")
        ratio, added, cpu = figures.ratio, figures.added, figures.ratio_cpu
        target = ""
        if name == "recorded":
            wall = "met" if ratio.median <= PAGE_TARGET_RATIO else "MISSED"
            target = f"<= {PAGE_TARGET_RATIO}: wall {wall}, CPU "
            target += "met" if cpu.median <= PAGE_TARGET_RATIO else "MISSED"
        print(
            f"{'':<21}{name:<12}{figures.us.median / 1000:>9.2f}"
            f"{ratio.median:>8.3f} [{ratio.q1:.3f}-{ratio.q3:.3f}]"
            f"{added.median / 1000:>+8.2f} [{added.low / 1000:+.2f}..{added.high / 1000:+.2f}]"
            f"{cpu.median:>8.3f} [{cpu.q1:.3f}-{cpu.q3:.3f}]  {target}"
        )
    print()

    print("a trivial method (a call that costs nothing): CPU µs added, median [min..max]")
    for name, added in wrapper.items():
        print(f"  {name:<26}{added.median:>+7.3f} [{added.low:+.3f}..{added.high:+.3f}]")
    print()
    for name, size in memory.items():
        met = size <= EVENT_BYTES_TARGET
        print(
            f"memory per kept event ({name}): {size:.0f} bytes "
            f"({_verdict(met, f'target <= {EVENT_BYTES_TARGET}:')})"
        )
    print()

    print(
        "the recording path taken apart in the real calls: CPU µs added per call against raw, "
        "median of the paired rounds [quartiles]"
    )
    lookup = "compiled" if callsite.accelerated else "pure Python, the accelerator not in use"
    for scenario in scenarios:
        whole = paired(scenario, "recording").added_cpu
        wrapper_only = paired(scenario, "wrapper only").added_cpu
        no_callsite = paired(scenario, "no callsite").added_cpu
        print(
            f"  {scenario.name:<21}recording {_cpu(whole)} = wrapper {_cpu(wrapper_only)} "
            f"+ event, clocks, trace, snapshot {no_callsite.median - wrapper_only.median:+.2f} "
            f"+ callsite {whole.median - no_callsite.median:+.2f} ({lookup})"
        )
    if callsite.accelerated:
        print(
            "  the callsite lookup compiled against pure Python, paired in the same rounds "
            "(CPU µs per call, median [quartiles] of the rounds):"
        )
        for scenario in scenarios:
            more = paired(scenario, "pure callsite", baseline="recording").added_cpu
            pure = paired(scenario, "pure callsite").added_cpu.median
            no_callsite = paired(scenario, "no callsite").added_cpu.median
            print(
                f"  {scenario.name:<21}recording with the pure-Python lookup costs "
                f"{_cpu(more)} more; its callsite {pure - no_callsite:+.2f}"
            )
    if all("wrapt patches" in s.rounds for s in scenarios):
        print(
            "  the patched methods as wrapt's FunctionWrapper instead of MethodPatch "
            "(ioprofiler._patch), paired in the same rounds (CPU µs per call, median "
            "[quartiles]):"
        )
        for scenario in scenarios:
            idle = paired(scenario, "idle, wrapt patches", baseline="installed").added_cpu
            more = paired(scenario, "wrapt patches", baseline="recording").added_cpu
            print(f"  {scenario.name:<21}idle: {_cpu(idle)} more; recording: {_cpu(more)} more")
    if all("python wrappers" in s.rounds for s in scenarios):
        print(
            "  the get and statement wrappers compiled (ioprofiler._recorders) against their "
            "Python reference, paired in the same rounds (CPU µs per call, median [quartiles]):"
        )
        for scenario in scenarios:
            more = paired(scenario, "python wrappers", baseline="recording").added_cpu
            print(f"  {scenario.name:<21}recording with the Python wrappers: {_cpu(more)} more")
    if all("pure begin" in s.rounds and "python wrappers" in s.rounds for s in scenarios):
        print(
            "  recording.begin (event, callsite, trace append, clock) compiled against pure "
            "Python, both called by the Python wrappers, paired in the same rounds (CPU µs per "
            "call, median [quartiles]):"
        )
        for scenario in scenarios:
            more = paired(scenario, "pure begin", baseline="python wrappers").added_cpu
            print(f"  {scenario.name:<21}recording with the pure-Python begin: {_cpu(more)} more")
    print()
    print(
        "step by step, inside one real call, warm (in a loop: lower bounds), ns per call; "
        "the wrapper calling the original with a trace open, on a trivial method: "
        f"{wrapper['bare wrapt, trace open'].median * 1000:.0f} ns"
    )
    for scenario, found in steps.items():
        print(f"  {scenario}")
        for step, ns in found.items():
            print(f"    {step:<44}{ns:>7.0f}")
    if not any(name.startswith("otel") for name in names):
        print("\nOpenTelemetry not installed: `make bench` installs the bench extra to compare.")


if __name__ == "__main__":
    raise SystemExit(main())
