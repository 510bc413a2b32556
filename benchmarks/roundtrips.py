"""What the round-trip patch points cost: pool checkout, commit, rollback on check-in.

    python benchmarks/roundtrips.py                # or: --rounds 15

A checkout of a pooled SQLite connection, a transaction that commits, and the pool's
rollback when the connection goes back (``with engine.begin(): pass``) passes through three
of the new patch points per iteration (``QueuePool._do_get``, ``do_commit``,
``do_rollback``). Paired rounds (see paired.py), against raw in the same round:

- raw:        ioprofiler not installed
- installed:  installed, no trace open: the cost every request pays
- recording:  a trace open: the COMMIT and ROLLBACK recorded; the checkout did not wait,
              so it is no event

Then the wrappers alone around a trivial method, no trace open, against a bare wrapt
pass-through with the same ``enabled`` hook (the floor of any wrapt patch).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator

import sqlalchemy as sa
import wrapt
from ioprofiler.integrations import sqlalchemy as sqlalchemy_integration
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

from ioprofiler.patching import Patches
from ioprofiler.trace import active

ROUND_TRIPS_PER_CALL = 3  # checkout, commit, rollback on check-in


class Trivial:
    """Stands in for a dialect and a pool whose calls cost nothing: the wrapper alone."""

    def do_commit(self, connection: object) -> None:
        return None

    def _do_get(self) -> object:
        return self


def wrappers_alone(rounds: int, n: int) -> dict[str, Paired]:
    """µs added per call of a trivial method, no trace open: a bare wrapt wrapper with our
    ``enabled`` hook; ioprofiler's commit wrapper; ioprofiler's pool checkout wrapper."""

    def pass_through(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    target = Trivial()
    patches = Patches()

    @contextlib.contextmanager
    def wrapped_with(name: str, wrapper, bare: bool = False) -> Iterator[None]:
        plain = Trivial.__dict__[name]
        if bare:
            setattr(Trivial, name, wrapt.FunctionWrapper(plain, pass_through, enabled=active.get))
        else:
            patches.wrap(Trivial, name, wrapper)
        try:
            yield
        finally:
            patches.unwrap_all()
            setattr(Trivial, name, plain)

    # the wrappers install() puts on: compiled where ioprofiler._recorders is built
    commit = sqlalchemy_integration._ROUND_TRIP_WRAPPERS["do_commit"]
    checkout = sqlalchemy_integration._POOL_CHECKOUT
    configs: dict[str, Config] = {
        "raw": contextlib.nullcontext,
        "bare wrapt": lambda: wrapped_with("do_commit", None, bare=True),
        "do_commit wrapper": lambda: wrapped_with("do_commit", commit),
    }
    commit_scenario = Scenario("commit", lambda: target.do_commit(None), n)
    run_rounds(configs, [commit_scenario], rounds)
    checkout_configs: dict[str, Config] = {
        "raw": contextlib.nullcontext,
        "bare wrapt": lambda: wrapped_with("_do_get", None, bare=True),
        "_do_get wrapper": lambda: wrapped_with("_do_get", checkout),
    }
    checkout_scenario = Scenario("checkout", lambda: target._do_get(), n)
    run_rounds(checkout_configs, [checkout_scenario], rounds)
    return {
        "bare wrapt (do_commit)": paired(commit_scenario, "bare wrapt"),
        "do_commit wrapper": paired(commit_scenario, "do_commit wrapper"),
        "bare wrapt (_do_get)": paired(checkout_scenario, "bare wrapt"),
        "_do_get wrapper": paired(checkout_scenario, "_do_get wrapper"),
    }


def _spread(spread: Spread, unit: str = "µs") -> str:
    return f"{spread.median:+.3f} {unit} [{spread.q1:+.3f}, {spread.q3:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=2000, help="calls per batch")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")

    with tempfile.TemporaryDirectory() as directory:
        engine = sa.create_engine(f"sqlite:///{directory}/dbshard01.db", pool_size=1)

        def transaction() -> None:
            with engine.begin():
                pass

        scenario = Scenario("checkout + commit + check-in", transaction, args.calls)
        configs: dict[str, Config] = {"raw": raw, "installed": installed, "recording": recording}
        run_rounds(configs, [scenario], args.rounds)
        engine.dispose()
    alone = wrappers_alone(args.rounds, args.calls * 50)

    print(
        f"SQLAlchemy {sa.__version__}, Python {sys.version.split()[0]}; {args.rounds} paired "
        f"rounds x {args.calls} calls; median [quartiles] over rounds"
    )
    print(f"\n{scenario.name} ({ROUND_TRIPS_PER_CALL} patched methods per call), SQLite:")
    base = paired(scenario, "raw").us.median
    print(f"  raw        {base:8.2f} µs")
    for name in ("installed", "recording"):
        result = paired(scenario, name)
        print(
            f"  {name:<10} {result.us.median:8.2f} µs  ratio {result.ratio.median:.3f} "
            f"[{result.ratio.q1:.3f}, {result.ratio.q3:.3f}]  added {_spread(result.added)}"
            f"  (CPU {_spread(result.added_cpu)})"
        )
    print("\nthe wrappers alone around a trivial method, no trace open, added per call:")
    for name, result in alone.items():
        print(f"  {name:<24}{_spread(result.added)}  (CPU {_spread(result.added_cpu)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
