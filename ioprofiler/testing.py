"""I/O budgets for tests: how many queries per shard and cache calls a block may make.

>>> from ioprofiler.testing import assert_io, at_most
>>> with assert_io(db={"dbshard01": 1, "dbshard0[2-4]": 0}, cache=at_most(3), no_repeats=True):
...     client.get("/shop/7")
>>> with assert_io(findings=[]):            # no N+1, duplicate, serial fan-out, ...
...     client.get("/shop/7?fixed=1")

A plain context manager: it works under pytest, unittest or a script. When a budget is
exceeded it raises :class:`IOBudgetExceeded` (an ``AssertionError``) whose message shows
the exceeded budgets, the repeated statements and the numbered listing of every call.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import ioprofiler
from ioprofiler.analysis import Repeat, find_repeats
from ioprofiler.config import check_flag
from ioprofiler.event import CACHE, COMMIT, CONNECT, DB, HTTP, POOL_WAIT, ROLLBACK, Event
from ioprofiler.findings import KINDS, Finding, find
from ioprofiler.targets import target_matches
from ioprofiler.trace import Trace

__all__ = [
    "Budget",
    "IOBudgetExceeded",
    "IOExpectation",
    "assert_io",
    "at_least",
    "at_most",
    "between",
    "exactly",
]


@dataclass(frozen=True)
class Budget:
    """How many calls are allowed: ``low <= calls <= high`` (``high`` None: no limit)."""

    low: int = 0
    high: int | None = None

    def allows(self, calls: int) -> bool:
        return calls >= self.low and (self.high is None or calls <= self.high)

    def __str__(self) -> str:
        if self.high == self.low:
            return f"exactly {self.low}"
        if self.high is None:
            return f"at least {self.low}"
        if self.low == 0:
            return f"at most {self.high}"
        return f"between {self.low} and {self.high}"


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} takes a whole number of calls (0 or more), not {value!r}")
    return value


def exactly(n: int) -> Budget:
    return Budget(_count(n, "exactly()"), n)


def at_most(n: int) -> Budget:
    return Budget(0, _count(n, "at_most()"))


def at_least(n: int) -> Budget:
    return Budget(_count(n, "at_least()"), None)


def between(low: int, high: int) -> Budget:
    low, high = _count(low, "between()"), _count(high, "between()")
    if low > high:
        raise ValueError(f"between({low}, {high}): the first number must not exceed the second")
    return Budget(low, high)


BudgetSpec = int | Budget | Mapping[str, int | Budget] | None

# Budgets on the round trips and waits around the calls: keyword -> (the op counted, the
# word the failure table shows). They count on every kind (``connects`` counts database
# and cache connects alike; name a target to tell them apart).
OP_BUDGETS = {
    "commits": (COMMIT, "commit"),
    "rollbacks": (ROLLBACK, "rollback"),
    "connects": (CONNECT, "connect"),
    "pool_waits": (POOL_WAIT, "pool wait"),
}
_OP_OF_WORD = {word: op for op, word in OP_BUDGETS.values()}


def _budget(value: int | Budget, where: str) -> Budget:
    if isinstance(value, Budget):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{where}: a budget is a number of calls, at_most(n), at_least(n) or "
            f"between(a, b), not {value!r}"
        )
    return exactly(value)


@dataclass
class Verdict:
    """One budget as checked: what was allowed and what happened."""

    kind: str
    target: str  # a target name, a glob pattern, or "all" for the kind as a whole
    budget: Budget
    calls: int
    hits: int = 0
    misses: int = 0

    @property
    def ok(self) -> bool:
        return self.budget.allows(self.calls)


@dataclass
class IOExpectation:
    """What a block of code may do; checked against a trace by :meth:`check`."""

    db: BudgetSpec = None
    cache: BudgetSpec = None
    strict: bool = False
    ignore: Iterable[str] = ()
    no_repeats: bool = False
    http: BudgetSpec = None
    redis: BudgetSpec = None
    memcache: BudgetSpec = None
    commits: BudgetSpec = None
    rollbacks: BudgetSpec = None
    connects: BudgetSpec = None
    pool_waits: BudgetSpec = None
    findings: Iterable[str] | None = None  # the kinds allowed; None: findings not checked
    _ignore: list[re.Pattern[str]] = field(init=False, default_factory=list)

    def _budgets(self) -> list[tuple[str, str | None, BudgetSpec]]:
        """(kind, service or None for the whole kind, spec) for every budget; the kind of
        a budget on connects, commits… is the word the failure table shows."""
        return [
            (DB, None, self.db),
            (CACHE, None, self.cache),
            (HTTP, None, self.http),
            (CACHE, "redis", self.redis),
            (CACHE, "memcache", self.memcache),
        ] + [(word, None, getattr(self, name)) for name, (_, word) in OP_BUDGETS.items()]

    def __post_init__(self) -> None:
        if self.findings is not None:
            if isinstance(self.findings, str):
                self.findings = [self.findings]
            self.findings = tuple(self.findings)
            unknown = [k for k in self.findings if k not in KINDS]
            if unknown:
                raise ValueError(
                    f"findings= takes the kinds allowed, from {', '.join(KINDS)}; "
                    f"not {', '.join(repr(k) for k in unknown)}"
                )
        for kind, service, spec in self._budgets():
            kind = service or kind
            if isinstance(spec, Mapping):
                for pattern, value in spec.items():
                    if not isinstance(pattern, str):
                        raise TypeError(f"{kind} budget keys are target names, not {pattern!r}")
                    _budget(value, f"{kind}[{pattern!r}]")
            elif spec is not None:
                _budget(spec, kind)
        check_flag("strict", self.strict)
        check_flag("no_repeats", self.no_repeats)
        self.ignore = [self.ignore] if isinstance(self.ignore, str) else list(self.ignore)
        if not all(isinstance(p, str) for p in self.ignore):
            raise TypeError(f"ignore= takes regular expressions as strings, not {self.ignore!r}")
        try:
            self._ignore = [re.compile(p, re.I) for p in self.ignore]
        except re.error as exc:
            raise ValueError(f"ignore= takes regular expressions: {exc}") from None

    def counted(self, events: list[Event]) -> list[Event]:
        """The events that count: the application's calls, but the statements matching
        ``ignore`` (connects, pool waits and transaction ends have budgets of their own)."""
        calls = [e for e in events if e.is_call]
        if not self._ignore:
            return calls
        return [
            e
            for e in calls
            if not (e.kind == DB and any(p.search(e.statement or "") for p in self._ignore))
        ]

    def check(self, trace: Trace) -> tuple[list[Verdict], list[Repeat]]:
        """(every budget with its verdict, the repeats that break ``no_repeats``)."""
        events = self.counted(trace.events)
        verdicts: list[Verdict] = []
        for kind, service, spec in self._budgets():
            if kind in _OP_OF_WORD:
                if spec is None:
                    continue
                of_kind = [e for e in trace.events if e.op == _OP_OF_WORD[kind]]
            else:
                of_kind = [e for e in events if e.kind == kind]
            if service is not None:
                if spec is None:
                    continue
                of_kind = [e for e in of_kind if target_matches(e.target, service)]
            targets = sorted({e.target for e in of_kind})
            if isinstance(spec, Mapping):
                claimed: set[str] = set()
                for pattern, value in spec.items():
                    matched = [e for e in of_kind if _target_matches(kind, e.target, pattern)]
                    claimed.update(e.target for e in matched)
                    verdicts.append(_verdict(kind, pattern, _budget(value, kind), matched))
                if self.strict and service is None:
                    for target in targets:
                        if target not in claimed:
                            matched = [e for e in of_kind if e.target == target]
                            verdicts.append(_verdict(kind, target, exactly(0), matched))
            elif spec is not None:
                verdicts.append(_verdict(kind, service or "all", _budget(spec, kind), of_kind))
            elif self.strict and of_kind:
                verdicts.append(_verdict(kind, "all", exactly(0), of_kind))
        repeats = find_repeats(events) if self.no_repeats else []
        return verdicts, repeats

    def unexpected_findings(self, trace: Trace) -> list[Finding]:
        """The findings of ``trace`` whose kind ``findings=`` does not allow."""
        if self.findings is None:
            return []
        return [f for f in find(trace) if f.kind not in self.findings]


def _target_matches(kind: str, target: str, pattern: str) -> bool:
    return target_matches(target, pattern) or fnmatch.fnmatchcase(target, pattern)


def _verdict(kind: str, target: str, budget: Budget, events: list[Event]) -> Verdict:
    hits = sum(e.hit_count or 0 for e in events)
    misses = sum(e.miss_count or 0 for e in events)
    return Verdict(kind, target, budget, len(events), hits, misses)


class IOBudgetExceeded(AssertionError):
    """A block made more (or fewer) I/O calls than its budget allows, or I/O with findings.

    ``verdicts``, ``repeats``, ``findings`` and ``trace`` hold the details; the message
    shows them all.
    """

    def __init__(
        self,
        verdicts: list[Verdict],
        repeats: list[Repeat],
        trace: Trace,
        color: bool = False,
        findings: list[Finding] | None = None,
    ) -> None:
        self.verdicts = verdicts
        self.repeats = repeats
        self.findings = findings or []
        self.trace = trace
        from ioprofiler.render.failure import failure_report

        super().__init__(failure_report(verdicts, repeats, trace, color, self.findings))


def enforce(expectation: IOExpectation, trace: Trace, color: bool | None = None) -> None:
    """Raise :class:`IOBudgetExceeded` if ``trace`` breaks ``expectation``
    (in colour if ``color``; by default as :func:`use_color` said)."""
    __tracebackhide__ = True
    verdicts, repeats = expectation.check(trace)
    findings = expectation.unexpected_findings(trace)
    if any(not v.ok for v in verdicts) or repeats or findings:
        color = _color if color is None else color
        raise IOBudgetExceeded(verdicts, repeats, trace, color, findings)


class CheckedTrace:
    """A ``with`` block recorded into a new trace, then checked by ``check(trace)`` unless
    the block raised. A class, not ``@contextmanager``: a failed check then shows the
    user's ``with`` line, not contextlib's frames or ours (``__tracebackhide__``)."""

    def __init__(self, check: Callable[[Trace], None]) -> None:
        self._check = check
        self._trace: Trace | None = None

    def __enter__(self) -> Trace:
        ioprofiler.install()
        self._trace = ioprofiler.profile().__enter__()
        return self._trace

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        __tracebackhide__ = True
        assert self._trace is not None
        self._trace.close()
        if exc_type is None:
            self._check(self._trace)


def assert_io(
    db: BudgetSpec = None,
    cache: BudgetSpec = None,
    *,
    strict: bool = False,
    ignore: Iterable[str] = (),
    no_repeats: bool = False,
    http: BudgetSpec = None,
    redis: BudgetSpec = None,
    memcache: BudgetSpec = None,
    commits: BudgetSpec = None,
    rollbacks: BudgetSpec = None,
    connects: BudgetSpec = None,
    pool_waits: BudgetSpec = None,
    findings: Iterable[str] | None = None,
) -> CheckedTrace:
    """Fail unless the block's I/O fits the budgets.

    ``db``, ``cache`` and ``http`` (the kinds of call): an int (exactly), ``at_most(n)``,
    ``at_least(n)``, ``between(a, b)``, or a dict of target names or glob patterns to those.
    ``redis`` and ``memcache``: the same, for the cache calls to that service's servers.
    ``strict=True``: targets the dicts do not name may make no calls.
    ``ignore``: regular expressions of statements not to count (``"^BEGIN"``, ``"SAVEPOINT"``).
    ``no_repeats=True``: fail on a statement shape run more than once on a target, and on
    single-key cache reads that could have been one batched read (``get_many``, ``MGET``).
    ``commits``, ``rollbacks``, ``connects``, ``pool_waits``: budgets of the same shape on
    those round trips and waits, which the budgets above do not count
    (``connects={"dbshard01": 0}``: the pool already holds a connection).
    ``findings``: the finding kinds allowed (``[]``: none; see :mod:`ioprofiler.findings`);
    by default findings are not checked.

    ``with assert_io(...) as trace`` gives the block's trace. An exception raised inside
    the block propagates as it is.
    """
    expectation = IOExpectation(
        db,
        cache,
        strict,
        ignore,
        no_repeats,
        http=http,
        redis=redis,
        memcache=memcache,
        commits=commits,
        rollbacks=rollbacks,
        connects=connects,
        pool_waits=pool_waits,
        findings=findings,
    )
    return CheckedTrace(functools.partial(enforce, expectation))


_color = False


def use_color(enabled: bool) -> None:
    """Failure messages in colour (set by the pytest plugin when the terminal has it)."""
    global _color
    _color = enabled
