"""Paired rounds: every configuration runs in one process, each against the same round's raw.

A round runs each configuration in turn, in a shuffled order, several passes over them,
and keeps each configuration's fastest batch. The ratio and the added time are taken
within the round (configuration vs that round's baseline), and the report is the median
over rounds with the spread of the rounds: on a machine shared with other work the load
moves between rounds, and pairing within a round cancels most of it.

Each batch is timed twice: wall clock (what the application sees) and the thread's CPU
time (``time.thread_time_ns``), which leaves out the time the thread was not running, so
the CPU column holds up better when other processes take the cores.
"""

from __future__ import annotations

import contextlib
import gc
import random
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from time import perf_counter_ns, thread_time_ns

import ioprofiler

Config = Callable[[], contextlib.AbstractContextManager]


@dataclass
class Scenario:
    name: str
    call: Callable[[], object]
    calls: int  # per batch
    collect: bool = False  # the garbage collector runs, as in an application (pages)
    # config -> per round: (wall µs per call, CPU µs per call)
    rounds: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Spread:
    """A figure over rounds: the median, the quartiles and the extremes."""

    median: float
    q1: float
    q3: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        ordered = sorted(values)
        if len(ordered) >= 4:
            q1, _, q3 = statistics.quantiles(ordered, n=4)
        else:
            q1, q3 = ordered[0], ordered[-1]
        return cls(statistics.median(ordered), q1, q3, ordered[0], ordered[-1])


def batch_us(call: Callable[[], object], n: int, collect: bool = False) -> tuple[float, float]:
    """(wall µs, CPU µs) per call over ``n`` calls; the garbage collector paused unless
    ``collect``: per call it only adds noise, per page it is part of the cost."""
    if not collect:
        gc.disable()
    try:
        wall, cpu = perf_counter_ns(), thread_time_ns()
        for _ in range(n):
            call()
        return (perf_counter_ns() - wall) / n / 1000, (thread_time_ns() - cpu) / n / 1000
    finally:
        gc.enable()


def run_rounds(
    configs: dict[str, Config],
    scenarios: list[Scenario],
    rounds: int,
    passes: int = 3,
    seed: int = 0,
) -> None:
    """Fill each scenario's ``rounds``: per configuration, one (wall, CPU) pair per round,
    the fastest of ``passes`` batches, the configurations shuffled anew in every pass."""
    shuffle = random.Random(seed).shuffle
    names = list(configs)
    for name in names:  # warm every path once (imports, caches, first connections)
        with configs[name]():
            for scenario in scenarios:
                batch_us(scenario.call, min(20, scenario.calls), scenario.collect)
    for _ in range(rounds):
        best: dict[tuple[str, str], tuple[float, float]] = {}
        for _ in range(passes):
            shuffle(names)
            for name in names:
                gc.collect()
                with configs[name]():
                    for scenario in scenarios:
                        wall, cpu = batch_us(scenario.call, scenario.calls, scenario.collect)
                        old = best.get((scenario.name, name))
                        if old is None:
                            best[scenario.name, name] = (wall, cpu)
                        else:
                            best[scenario.name, name] = (min(old[0], wall), min(old[1], cpu))
        for scenario in scenarios:
            for name in names:
                scenario.rounds.setdefault(name, []).append(best[scenario.name, name])


@dataclass(frozen=True)
class Paired:
    """One configuration against the baseline, over rounds."""

    us: Spread  # wall µs per call
    ratio: Spread  # wall, configuration / baseline, per round
    ratio_cpu: Spread  # the same in CPU time
    added: Spread  # wall µs added, per round
    added_cpu: Spread  # CPU µs added, per round


def paired(scenario: Scenario, name: str, baseline: str = "raw") -> Paired:
    mine, base = scenario.rounds[name], scenario.rounds[baseline]
    pairs = list(zip(mine, base, strict=True))
    return Paired(
        us=Spread.of([wall for wall, _ in mine]),
        ratio=Spread.of([m[0] / b[0] for m, b in pairs]),
        ratio_cpu=Spread.of([m[1] / b[1] for m, b in pairs]),
        added=Spread.of([m[0] - b[0] for m, b in pairs]),
        added_cpu=Spread.of([m[1] - b[1] for m, b in pairs]),
    )


# -- the configurations every benchmark compares ---------------------------------------


@contextlib.contextmanager
def raw() -> Iterator[None]:
    ioprofiler.uninstall()
    yield


@contextlib.contextmanager
def installed() -> Iterator[None]:
    ioprofiler.install()
    try:
        yield
    finally:
        ioprofiler.uninstall()


@contextlib.contextmanager
def recording() -> Iterator[None]:
    ioprofiler.install()
    try:
        with ioprofiler.profile(max_events=sys.maxsize):
            yield
    finally:
        ioprofiler.uninstall()
