"""What the newer integrations' patch points cost: redis-py, urllib3, httpx, Django's cursor.

    python benchmarks/integrations.py              # or: --rounds 15

First each wrapper alone around a trivial method, no trace open, against a bare wrapt
pass-through with the same ``enabled`` hook (the floor of any wrapt patch): the idle cost
every call pays once ioprofiler is installed. Then real calls, paired (see paired.py):
a Redis ``GET`` on 127.0.0.1:6379 (skipped when no Redis answers) and a statement
through Django's cursor on a SQLite file, raw / installed (no trace) / recording.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Callable, Iterator

import wrapt
from ioprofiler.integrations import _redis_cluster as redis_cluster
from ioprofiler.integrations import django as django_integration
from ioprofiler.integrations import httpx as httpx_integration
from ioprofiler.integrations import redis as redis_integration
from ioprofiler.integrations import urllib3 as urllib3_integration
from paired import (
    Config,
    Paired,
    Scenario,
    Spread,
    installed,
    paired,
    raw,
    recording,
    run_rounds,
)

from ioprofiler.event import CONNECT
from ioprofiler.patching import Patches
from ioprofiler.trace import active


class Trivial:
    """Stands in for a patched method whose call costs nothing: the wrapper alone."""

    def call(self, *args: object, **kwargs: object) -> None:
        return None


# patch point -> our wrapper for it
WRAPPERS: dict[str, Callable[..., object]] = {
    "redis Redis._send_command_parse_response": redis_integration._command,
    "redis Pipeline._execute_pipeline": redis_integration._pipeline("pipeline"),
    "redis AbstractConnection.connect_check_health": redis_integration._connect,
    "redis a cluster node client's parse_response": redis_cluster._attempt_reply,
    "redis cluster.get_connection": redis_cluster._attempt_connection,
    "redis RedisCluster._execute_command": redis_cluster._command,
    "redis NodeCommands.write": redis_cluster._node_write,
    "redis NodeCommands.read": redis_cluster._node_read,
    "redis ClusterNode.execute_command (asyncio)": redis_cluster._async_node_command,
    "urllib3 HTTPConnectionPool._make_request": urllib3_integration._make_request,
    "urllib3 HTTPResponse.release_conn": urllib3_integration._release_conn,
    "urllib3 HTTPResponse.close": urllib3_integration._close,
    "urllib3 HTTPResponse._raw_read": urllib3_integration._raw_read,
    "urllib3 HTTPResponse._handle_chunk": urllib3_integration._handle_chunk,
    "httpx HTTPTransport.handle_request": httpx_integration._handle_request,
    "django CursorWrapper.execute": django_integration._statement("execute"),
    "django BaseDatabaseWrapper.connect": django_integration._connection_op(CONNECT),
    "django base.debug_transaction": django_integration._debug_transaction,
}


def wrappers_alone(rounds: int, n: int) -> dict[str, Paired]:
    def pass_through(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    plain = Trivial.__dict__["call"]
    patches = Patches()

    @contextlib.contextmanager
    def wrapped_with(wrapper: Callable[..., object] | None) -> Iterator[None]:
        if wrapper is None:
            Trivial.call = wrapt.FunctionWrapper(plain, pass_through, enabled=active.get)
        else:
            patches.wrap(Trivial, "call", wrapper)
        try:
            yield
        finally:
            patches.unwrap_all()
            Trivial.call = plain

    target = Trivial()
    configs: dict[str, Config] = {"raw": contextlib.nullcontext}
    configs["bare wrapt"] = lambda: wrapped_with(None)
    for name, wrapper in WRAPPERS.items():
        configs[name] = lambda wrapper=wrapper: wrapped_with(wrapper)
    scenario = Scenario("trivial", lambda: target.call(None, "GET", "x"), n)
    run_rounds(configs, [scenario], rounds)
    return {name: paired(scenario, name) for name in configs if name != "raw"}


def redis_scenario(calls: int) -> Scenario | None:
    import redis

    client = redis.Redis("127.0.0.1", 6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        return None
    return Scenario(
        "redis GET (miss), 127.0.0.1:6379", lambda: client.get("ioprofiler:bench"), calls
    )


def django_scenario(directory: str, calls: int) -> Scenario:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{directory}/db"}},
        INSTALLED_APPS=[],
    )
    django.setup()
    from django.db import connection

    cursor = connection.cursor()
    cursor.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")

    def statement() -> None:
        cursor.execute("SELECT count(*) FROM t WHERE v = %s", [7])
        cursor.fetchone()

    return Scenario("Django cursor.execute, SQLite", statement, calls)


def _spread(spread: Spread, unit: str = "µs") -> str:
    return f"{spread.median:+.3f} {unit} [{spread.q1:+.3f}, {spread.q3:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=2000, help="calls per batch")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")

    alone = wrappers_alone(args.rounds, args.calls * 50)
    with tempfile.TemporaryDirectory() as directory:
        scenarios = [django_scenario(directory, args.calls)]
        redis_calls = redis_scenario(args.calls)
        if redis_calls is not None:
            scenarios.append(redis_calls)
        configs: dict[str, Config] = {"raw": raw, "installed": installed, "recording": recording}
        run_rounds(configs, scenarios, args.rounds)

    print(
        f"Python {sys.version.split()[0]}; {args.rounds} paired rounds; "
        "median [quartiles] over rounds"
    )
    print("\nthe wrappers alone around a trivial method, no trace open, added per call:")
    for name, result in alone.items():
        print(f"  {name:<44}{_spread(result.added)}  (CPU {_spread(result.added_cpu)})")
    if redis_calls is None:
        print("\nno Redis answers on 127.0.0.1:6379: its real calls are not measured")
    for scenario in scenarios:
        base = paired(scenario, "raw").us.median
        print(f"\n{scenario.name}, {args.calls} calls per batch:")
        print(f"  raw        {base:8.2f} µs")
        for name in ("installed", "recording"):
            result = paired(scenario, name)
            print(
                f"  {name:<10} {result.us.median:8.2f} µs  ratio {result.ratio.median:.3f} "
                f"[{result.ratio.q1:.3f}, {result.ratio.q3:.3f}]  added {_spread(result.added)}"
                f"  (CPU {_spread(result.added_cpu)})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
