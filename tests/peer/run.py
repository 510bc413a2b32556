"""``make peer``: the libraries' own test suites, bare and with ioprofiler recording every test.

For each library in ``LIBRARIES`` (SQLAlchemy, pymemcache, redis-py), fetches the sdist of the
version installed here into ``build/peer/``, runs a subset of its suite twice against the
installed library, once bare and once with a trace open around every test
(``tests/peer/ioprofiler_peer.py``), and compares the outcomes test by test. Any difference
fails the run and is listed with the recording run's failure::

    python tests/peer/run.py                        # every library, the subsets below
    python tests/peer/run.py --library redis        # one library (the option repeats)
    python tests/peer/run.py --jobs 0 test/ext/test_horizontal_shard.py  # SQLAlchemy's
    python tests/peer/run.py tests/test_lock.py                          # redis-py's

What runs (each library's ``suites`` below say it exactly):

- SQLAlchemy: the core and ORM suites and the SQLite dialect on SQLite, asyncio on aiosqlite;
  two pytest-xdist workers.
- pymemcache: its whole suite (unit tests on mock sockets, integration tests and the
  pymemcache benchmarks, at 100 iterations) against a private memcached on a free loopback
  port (``--server``/``--port``), but ``test_compression.py``, which needs faker and zstd.
- redis-py: the commands, pipeline, connection, connection pool, pub/sub, lock, scripting,
  encoding, functions, keyspace notifications and MONITOR tests, sync and asyncio, and the
  retry, helpers and multiprocessing tests (sync only): a few minutes' worth. Against a
  private ``redis-server`` on a free loopback port (``--redis-url``, and ``--redis-mod-url``
  so that the module tests find no modules and skip; ``DEBUG`` enabled, which some tests
  send). Left out: the tests marked for a cluster, modules (redis-stack), a replica or TLS,
  the cluster, sentinel, search/JSON/time-series and client-side cache files (servers or a
  server version this machine does not have), and the few tests that connect to a fixed
  address (``localhost:6379``…) rather than the one given: those would reach servers other
  sessions use. Tests that need a newer server than the one installed skip themselves.

One server per pass, fresh for the recording pass; the suites that use one run without
pytest-xdist (their tests share the server's keys and flush it). The sdist's own copy of the
library is removed after unpacking (pymemcache's tests, which live inside its package, move to
``pymemcache_test/``), so the tests import the installed library; the run fails if they did not.

A missing server program (memcached, redis-server) skips that library with the reason, or fails
the run under ``IOPROFILER_REQUIRE_PEER=1`` (CI). Lines of ``tests/peer/flaky.txt`` (``library
test-id  # reason``) are reported, not failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

PEER = Path(__file__).resolve().parent
ROOT = PEER.parents[1]
BUILD = ROOT / "build" / "peer"
REQUIRE = "IOPROFILER_REQUIRE_PEER"
LOOPBACK = "127.0.0.1"
SUITE_TIMEOUT = 900  # seconds for one pytest command; a hung test ends the run, not CI's clock


class Unavailable(Exception):
    """A library's suite cannot run here (its server program is missing)."""


class SuiteFailed(Exception):
    """pytest did not finish, or did not test the installed library."""


# -- servers: each a context manager yielding the pytest arguments that point at it ---------


@contextmanager
def memcached(folder: Path) -> Iterator[list[str]]:
    from ioprofiler.memcached import MemcachedNotInstalled, MemcachedProcess

    try:
        server = MemcachedProcess().start()
    except MemcachedNotInstalled as exc:
        raise Unavailable(str(exc)) from None
    try:
        yield ["--server", LOOPBACK, "--port", str(server.port)]
    finally:
        server.stop()


@contextmanager
def redis_server(folder: Path) -> Iterator[list[str]]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        raise Unavailable(
            "redis-server is not installed (Debian: .ci/apt-install redis-server, "
            "or apt-get install redis-server)"
        )
    sys.path.insert(0, str(ROOT))
    from ioprofiler.memcached import free_port
    from tests.redis_servers import RedisServer

    lines = ["enable-debug-command yes"] if _redis_version(binary) >= (7,) else []
    server = RedisServer(binary, folder, free_port(LOOPBACK), *lines)
    url = f"redis://{LOOPBACK}:{server.port}/0"
    try:
        # Modules are looked for at --redis-mod-url: ours has none, so their tests skip.
        yield [f"--redis-url={url}", f"--redis-mod-url={url}"]
    finally:
        server.stop()


def _redis_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)", out)
    return tuple(int(part) for part in found.groups()) if found else (0,)


# -- the libraries -----------------------------------------------------------------------


@dataclass(frozen=True)
class Suite:
    """One pytest command: ``paths``, with ``args`` for it alone."""

    label: str
    paths: tuple[str, ...]
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Library:
    """A library whose own suite runs bare and recording."""

    name: str  # the distribution, as pip and importlib.metadata name it
    package: str  # its import name; the sdist's copy is removed after unpacking
    suites: tuple[Suite, ...]
    args: tuple[str, ...] = ()  # for every suite
    server: Callable[[Path], AbstractContextManager[list[str]]] | None = None
    parallel: bool = True  # may run under pytest-xdist
    tests_inside: tuple[str, str] | None = None  # (tests in the package, where they move)


REDIS_MARKS = "not onlycluster and not redismod and not replica and not ssl"
# Tests that connect to a fixed address, not --redis-url: localhost:6379 is a shared Redis
# here, the others are ports something else may own.
REDIS_FIXED_ADDRESS = (
    "tests/test_connection.py::test_create_single_connection_client_from_url",
    "tests/test_connection.py::test_network_connection_failure",
    "tests/test_connection.py::TestConnection::test_connect_with_retries",
    "tests/test_connection.py::TestConnection::test_retry_connect_on_timeout_error",
    "tests/test_connection_pool.py::TestConnection::test_on_connect_error",
    "tests/test_pubsub.py::TestPubSubRedisDown::test_channel_subscribe",
    "tests/test_pubsub.py::TestPubSubSubscriberModeProtocol"
    "::test_subscriber_mode_rejects_regular_command_after_ssubscribe",
    "tests/test_asyncio/test_connection.py::test_connect_with_retries",
    "tests/test_asyncio/test_connection.py::test_network_connection_failure",
    "tests/test_asyncio/test_connection_pool.py::TestConnectionPool::test_multiple_connections",
    "tests/test_asyncio/test_connection_pool.py::TestConnectionPool::test_max_connections",
    "tests/test_asyncio/test_connection_pool.py::TestConnectionPool"
    "::test_reuse_previously_released_connection",
    "tests/test_asyncio/test_connection_pool.py::TestConnection::test_on_connect_error",
    "tests/test_asyncio/test_pubsub.py::TestPubSubRedisDown::test_channel_subscribe",
    "tests/test_asyncio/test_pubsub.py::TestPubSubSubscriberModeProtocol"
    "::test_subscriber_mode_rejects_regular_command_after_ssubscribe",
)
REDIS_MODULES = (
    "commands",
    "pipeline",
    "connection",
    "connection_pool",
    "pubsub",
    "lock",
    "scripting",
    "encoding",
    "function",
    "keyspace_notifications",
    "monitor",
)
REDIS_SYNC_ONLY = ("retry", "helpers", "multiprocessing")

LIBRARIES = {
    library.name: library
    for library in (
        Library(
            "sqlalchemy",
            "sqlalchemy",
            # Databases as SQLAlchemy's setup.cfg names them.
            suites=(
                Suite(
                    "sqlite",
                    (
                        "test/engine",
                        "test/sql",
                        "test/orm",
                        "test/dialect/sqlite",
                        "test/ext/test_horizontal_shard.py",
                    ),
                    ("--db=sqlite",),
                ),
                Suite("aiosqlite", ("test/ext/asyncio",), ("--db=aiosqlite",)),
            ),
            args=("-p", "no:asyncio"),  # SQLAlchemy runs its async tests itself
        ),
        Library(
            "pymemcache",
            "pymemcache",
            suites=(Suite("memcached", ("pymemcache_test",)),),
            args=(
                "--ignore=pymemcache_test/test_compression.py",  # needs faker and zstd
                "--count=100",  # benchmark iterations (10000 by default)
                # setup.cfg adds --cov (pytest-cov is not installed) and -m unit, which
                # would leave the integration tests out.
                "-o",
                "addopts=",
            ),
            server=memcached,
            parallel=False,
            tests_inside=("pymemcache/test", "pymemcache_test"),
        ),
        Library(
            "redis",
            "redis",
            suites=(
                Suite(
                    "sync",
                    tuple(f"tests/test_{n}.py" for n in (*REDIS_MODULES, *REDIS_SYNC_ONLY)),
                ),
                Suite("asyncio", tuple(f"tests/test_asyncio/test_{n}.py" for n in REDIS_MODULES)),
            ),
            args=(
                "-m",
                REDIS_MARKS,
                *(f"--deselect={test_id}" for test_id in REDIS_FIXED_ADDRESS),
            ),
            server=redis_server,
            parallel=False,
        ),
    )
}


@dataclass
class Run:
    """One pass over a library's subset: bare, or recording."""

    name: str
    outcomes: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=lambda: {"tests": 0, "events": 0})
    imported_from: set[str] = field(default_factory=set)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


@dataclass
class Result:
    """A library's two passes, or why it did not run."""

    library: Library
    version: str
    bare: Run | None = None
    recording: Run | None = None
    skipped: str = ""
    failure: str = ""
    seconds: float = 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--library",
        action="append",
        choices=sorted(LIBRARIES),
        help="run this library's suite (repeat for more; default: all)",
    )
    parser.add_argument("--jobs", default="2", help="pytest-xdist workers (0: none)")
    parser.add_argument(
        "paths",
        nargs="*",
        help="run only these, of one library's suite (with its first suite's arguments)",
    )
    args = parser.parse_args(argv)
    names = args.library or (owners(args.paths) if args.paths else list(LIBRARIES))
    if args.paths and len(names) != 1:
        parser.error("paths need exactly one --library (or paths only one library's suite has)")

    BUILD.mkdir(parents=True, exist_ok=True)
    flaky = load_flaky(PEER / "flaky.txt")
    results = []
    for name in names:
        library = LIBRARIES[name]
        suites = library.suites
        if args.paths:
            suites = (Suite(suites[0].label, tuple(args.paths), suites[0].args),)
        results.append(run_library(library, suites, args.jobs))
    return report(results, flaky)


def owners(paths: list[str]) -> list[str]:
    """The libraries whose suites hold these paths, by their top folder (``test/``: SQLAlchemy,
    ``tests/``: redis-py, ``pymemcache_test/``: pymemcache)."""
    tops = {Path(path).parts[0] for path in paths}
    return [
        name
        for name, library in LIBRARIES.items()
        if tops & {Path(path).parts[0] for suite in library.suites for path in suite.paths}
    ]


def run_library(library: Library, suites: tuple[Suite, ...], jobs: str) -> Result:
    result = Result(library, version(library.name))
    started = time.monotonic()
    print(f"\n==== {library.name} {result.version}", flush=True)
    try:
        source = fetch_sdist(library, result.version)
        result.bare = run_suite("bare", library, source, suites, jobs)
        result.recording = run_suite("recording", library, source, suites, jobs, "--peer-record")
    except Unavailable as exc:
        if os.environ.get(REQUIRE) == "1":
            result.failure = f"{exc} ({REQUIRE}=1 makes this a failure)"
        else:
            result.skipped = str(exc)
        print(f"   {result.failure or 'skipped: ' + result.skipped}", flush=True)
    except SuiteFailed as exc:
        result.failure = str(exc)
        print(f"   {exc}", flush=True)
    result.seconds = time.monotonic() - started
    return result


def fetch_sdist(library: Library, library_version: str) -> Path:
    """The unpacked sdist of this version, downloaded once, made to test the installed
    library: its own copy removed, tests that live inside it moved out."""
    source = BUILD / f"{library.name}-{library_version}"
    ready = source / ".peer-ready"
    if ready.exists():
        return source
    downloads = BUILD / "sdists" / f"{library.name}-{library_version}"
    archives = list(downloads.glob("*.tar.gz"))
    if not archives:
        downloads.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            # --no-binary for this one package: its build requirements (setuptools, Cython…)
            # come as wheels, not built from source.
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", library.name]
            + ["--no-deps", "--dest", str(downloads), f"{library.name}=={library_version}"],
            check=True,
        )
        archives = list(downloads.glob("*.tar.gz"))
    if len(archives) != 1:
        raise SuiteFailed(f"expected one sdist in {downloads}, found {len(archives)}")
    unpacked = Path(tempfile.mkdtemp(prefix=f".{library.name}-", dir=BUILD))
    try:
        with tarfile.open(archives[0]) as tar:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(unpacked, **safe)
        (top,) = unpacked.iterdir()
        if library.tests_inside:
            inside, outside = library.tests_inside
            (top / inside).rename(top / outside)
        shutil.rmtree(top / library.package, ignore_errors=True)
        ready_file = top / ready.name
        ready_file.touch()
        if source.exists():
            shutil.rmtree(source)
        top.rename(source)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    return source


def run_suite(
    name: str, library: Library, source: Path, suites: tuple[Suite, ...], jobs: str, *extra: str
) -> Run:
    run = Run(name)
    started, cpu_started = time.monotonic(), _children_cpu()
    with tempfile.TemporaryDirectory(prefix="peer-server-", dir=BUILD) as folder:
        server = library.server(Path(folder)) if library.server else _no_server()
        with server as server_args:
            for suite in suites:
                _run_pytest(run, library, source, suite, jobs, server_args, extra)
    run.seconds = time.monotonic() - started
    run.cpu_seconds = _children_cpu() - cpu_started
    installed = _installed_location(library)
    for place in run.imported_from:
        if Path(place).resolve().is_relative_to(source.resolve()):
            raise SuiteFailed(
                f"{name}: the suite imported {library.package} from the sdist ({place}), "
                f"not the installed one ({installed})"
            )
    return run


@contextmanager
def _no_server() -> Iterator[list[str]]:
    yield []


def _installed_location(library: Library) -> str:
    import importlib.util

    spec = importlib.util.find_spec(library.package)
    return str(spec.origin) if spec else "not installed"


def _run_pytest(
    run: Run,
    library: Library,
    source: Path,
    suite: Suite,
    jobs: str,
    server_args: list[str],
    extra: tuple[str, ...],
) -> None:
    stem = f"{library.name}-{run.name}-{suite.label}"
    outcomes_file = BUILD / f"{stem}.json"
    log_file = BUILD / f"{stem}.log"
    outcomes_file.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        *suite.paths,
        *suite.args,
        *library.args,
        *server_args,
        "-p",
        "ioprofiler_peer",
        f"--peer-outcomes={outcomes_file}",
        f"--peer-library={library.package}",
        *extra,
        "-p",
        "no:ioprofiler",  # the library's plugins only, not ours
        "-p",
        "no:cacheprovider",
        "-q",
        "--maxfail=1000000",
        *(["-n", jobs] if jobs != "0" and library.parallel else []),
    ]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PEER), os.environ.get("PYTHONPATH")])),
        PYTHONNOUSERSITE="1",  # SQLAlchemy's conftest then uses the installed SQLAlchemy
    )
    print(f"== {run.name}: {suite.label}: {' '.join(suite.paths)} (log: {log_file})", flush=True)
    with open(log_file, "w") as log:
        try:
            subprocess.run(
                command,
                cwd=source,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=SUITE_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise SuiteFailed(f"pytest ran over {SUITE_TIMEOUT} s; see {log_file}") from None
    print("   " + last_line(log_file), flush=True)
    if not outcomes_file.exists():
        raise SuiteFailed(f"pytest did not finish the {run.name} run; see {log_file}")
    result = json.loads(outcomes_file.read_text())
    run.outcomes.update(result["outcomes"])
    run.reasons.update(result["reasons"])
    run.imported_from.update(result.get("imported_from") or ())
    for key, value in (result["recorded"] or {}).items():
        run.recorded[key] += value


def _children_cpu() -> float:
    """CPU of the finished children: pytest, its workers, and the server of the pass."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1].strip("= ") if lines else "(no output)"


def load_flaky(path: Path) -> dict[tuple[str, str], str]:
    """{(library, test id): reason} from lines like ``redis tests/x.py::T::t  # why``."""
    flaky = {}
    if path.exists():
        for line in path.read_text().splitlines():
            entry, _, reason = line.partition("#")
            if entry.strip():
                library, _, test_id = entry.strip().partition(" ")
                flaky[(library, test_id.strip())] = reason.strip()
    return flaky


def differences(bare: Run, recording: Run) -> dict[str, tuple[str, str]]:
    """{test id: (bare outcome, recording outcome)} where they differ or one lacks it."""
    ids = sorted(set(bare.outcomes) | set(recording.outcomes))
    missing = "not run"
    return {
        test_id: (bare.outcomes.get(test_id, missing), recording.outcomes.get(test_id, missing))
        for test_id in ids
        if bare.outcomes.get(test_id) != recording.outcomes.get(test_id)
    }


def _summary(run: Run) -> str:
    counts: dict[str, int] = {}
    for outcome in run.outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))


def report_library(result: Result, flaky: dict[tuple[str, str], str]) -> list[str]:
    """Prints one library's comparison; returns its failures (empty: it passed)."""
    name = result.library.name
    print(f"\n==== {name} {result.version}")
    if result.skipped:
        print(f"skipped: {result.skipped}")
        return []
    if result.failure:
        print(f"FAIL: {result.failure}")
        return [result.failure]
    bare, recording = result.bare, result.recording
    assert bare is not None and recording is not None
    for run in (bare, recording):
        print(
            f"{run.name}: {len(run.outcomes)} tests in {run.seconds:.0f} s "
            f"({run.cpu_seconds:.1f} s of CPU): {_summary(run)}"
        )
    compared = len(set(bare.outcomes) | set(recording.outcomes))
    print(
        f"recording: ioprofiler recorded {recording.recorded['events']} events "
        f"in traces around {recording.recorded['tests']} tests"
    )
    places = sorted(bare.imported_from | recording.imported_from)
    print(f"tested {result.library.package} from {', '.join(places) or '(not imported)'}")
    if not bare.outcomes or recording.recorded["events"] == 0:
        return ["nothing ran, or nothing was recorded"]
    found = differences(bare, recording)
    failing = [test_id for test_id in found if (name, test_id) not in flaky]
    for test_id, (was, became) in found.items():
        reason = flaky.get((name, test_id))
        known = f"  (known flaky: {reason})" if reason is not None else ""
        print(f"\n{test_id}: bare {was}, recording {became}{known}")
        if test_id in recording.reasons and not known:
            print("    " + recording.reasons[test_id].replace("\n", "\n    "))
    print(
        f"{name}: {compared} outcomes compared, {len(found)} differ "
        f"({len(found) - len(failing)} known flaky)"
    )
    return [f"{len(failing)} tests end differently while ioprofiler records"] if failing else []


def report(results: list[Result], flaky: dict[tuple[str, str], str]) -> int:
    failures = {}
    for result in results:
        found = report_library(result, flaky)
        if found:
            failures[result.library.name] = found
    print("\nlibrary      tests  compared  events   CPU bare  CPU recording  wall")
    for result in results:
        bare, recording = result.bare, result.recording
        if bare is None or recording is None:
            state = f"FAIL: {result.failure}" if result.failure else f"skipped: {result.skipped}"
            print(f"{result.library.name:<12} {state}")
            continue
        compared = len(set(bare.outcomes) | set(recording.outcomes))
        print(
            f"{result.library.name:<12} {len(recording.outcomes):>5}  {compared:>8}  "
            f"{recording.recorded['events']:>6}  {bare.cpu_seconds:>7.1f} s  "
            f"{recording.cpu_seconds:>11.1f} s  {result.seconds:>4.0f} s"
        )
    if failures:
        for name, found in failures.items():
            print(f"FAIL: {name}: {'; '.join(found)}")
        return 1
    ran = [r.library.name for r in results if r.bare is not None]
    if not ran:
        print("\nOK, but nothing ran: every library was skipped")
        return 0
    print(
        f"\nOK: every test ends the same with and without ioprofiler recording ({', '.join(ran)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
