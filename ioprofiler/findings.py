"""Named findings: what is wrong with a request's I/O, each in one line with a fix.

>>> for finding in find(trace):
...     print(finding.kind, finding.message)
n_plus_one N+1: SELECT shard FROM UserIndex WHERE user_id = ? ran 12× on index (0.3 ms) <- …
n_plus_one N+1 API calls: GET /v1/items/# called 5× on http api.example.com:443 (84.1 ms) <- …
serial_fanout serial fan-out: SELECT … WHERE user_id IN (?…) sent to 4 shards one after …

Every finding has a ``kind`` (one of :data:`KINDS`), a one-line ``message``, the ``events``
it is about, the time it costs (``ms``) and a ``hint``. The thresholds live in
:class:`ioprofiler.thresholds.Thresholds` (``ioprofiler.configure(findings=...)``).
Analysis runs when a trace is rendered, never while the application runs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from ioprofiler import config
from ioprofiler.analysis import is_query, is_transaction_control, is_write
from ioprofiler.cache_text import BATCH_OPS, key_text
from ioprofiler.event import (
    BEGIN,
    CACHE,
    COMMIT,
    COMMIT_TWOPHASE,
    CONNECT,
    CONNECTION_OPS,
    DB,
    HTTP,
    PING,
    POOL_WAIT,
    PREPARE_TWOPHASE,
    RESET,
    ROLLBACK,
    ROLLBACK_TWOPHASE,
    SETUP,
    Event,
)
from ioprofiler.event import callsite_text as _callsite_text
from ioprofiler.sql_text import safe_repr, shape
from ioprofiler.thresholds import Thresholds
from ioprofiler.urls import url_shape

if TYPE_CHECKING:
    from ioprofiler.trace import Trace

N_PLUS_ONE = "n_plus_one"
DUPLICATE = "duplicate"
SERIAL_FANOUT = "serial_fanout"
SLOW_CALL = "slow_call"
CACHE_MISSES = "cache_misses"
LOW_HIT_RATIO = "low_hit_ratio"
WAITS = "waits"
UNEXPLAINED_TIME = "unexplained_time"
KINDS = (
    N_PLUS_ONE,
    DUPLICATE,
    SERIAL_FANOUT,
    SLOW_CALL,
    CACHE_MISSES,
    LOW_HIT_RATIO,
    WAITS,
    UNEXPLAINED_TIME,
)
TITLES = {
    N_PLUS_ONE: "N+1",
    DUPLICATE: "duplicate",
    SERIAL_FANOUT: "serial fan-out",
    SLOW_CALL: "slow call",
    CACHE_MISSES: "cache misses",
    LOW_HIT_RATIO: "low hit ratio",
    WAITS: "waits",
    UNEXPLAINED_TIME: "unexplained time",
}
# Round trips spent waiting for a connection rather than asking for data.
WAIT_OPS = (POOL_WAIT, CONNECT)
# Cache writes that fill a key (memcached's and Redis's names).
FILL_OPS = frozenset(
    {"set", "set_many", "add", "replace", "cas", "setex", "setnx", "psetex", "mset", "msetnx"}
)
MAX_SHOWN = 120  # characters of a statement or key in a message

READ_LOOP_HINT = (
    "load the rows in one query (WHERE … IN (…) or a join; with the ORM, "
    "selectinload or joinedload), one query per shard at most"
)
WRITE_LOOP_HINT = (
    "write the rows in one round trip: executemany or one INSERT with many VALUES rows; "
    "with the ORM, add them all and flush once, or bulk_save_objects / bulk_create / "
    "bulk_update"
)
REPEATED_READ_HINT = (
    "keep the first result for the rest of the request (pass it along, or memoise the "
    "lookup per request)"
)
REPEATED_WRITE_HINT = "the same write with the same values: send it once"
# What to do about a slow round trip that is not a query, by its op.
_NETWORK = "one network round trip: a slow one is the network or a busy server"
DURABILITY_HINT = (
    "a commit waits until the server has made the transaction durable (its log fsynced): "
    "check the disk's write latency and the server's flush settings "
    "(innodb_flush_log_at_trx_commit, synchronous_commit), or commit fewer, larger transactions"
)
SLOW_OP_HINTS = {
    COMMIT: DURABILITY_HINT,
    COMMIT_TWOPHASE: DURABILITY_HINT,
    PREPARE_TWOPHASE: DURABILITY_HINT,
    ROLLBACK: "a rollback undoes what the transaction wrote: keep transactions small; "
    f"with nothing written it is {_NETWORK}",
    ROLLBACK_TWOPHASE: "a rollback undoes what the transaction wrote: keep transactions small",
    BEGIN: f"BEGIN is {_NETWORK}",
    CONNECT: "a new connection costs network, TLS and authentication round trips: reuse "
    "connections (a pool) and check name resolution and the network",
    SETUP: "statements that set a new connection up run once per connection: reuse "
    "connections (a pool)",
    PING: f"the pool's pre-ping is {_NETWORK}; pool_recycle instead of pool_pre_ping saves it",
    RESET: f"resetting a connection is {_NETWORK}",
}
CONNECTION_OP_HINT = f"a round trip of the connection, not a query: {_NETWORK}"


@dataclass(frozen=True)
class Finding:
    """One named problem in a trace."""

    kind: str
    message: str
    events: tuple[Event, ...]
    ms: float
    hint: str
    # the message without the cache key it names, for logs that keep no keys
    keyless_message: str | None = None

    @property
    def without_keys(self) -> str:
        """The message, naming no cache key."""
        return self.keyless_message or self.message

    @property
    def title(self) -> str:
        """``N+1``, ``serial fan-out``: the kind as a person reads it."""
        return TITLES[self.kind]

    @property
    def heading(self) -> str:
        """What the message names before its colon: ``N+1``, ``N+1 API calls``,
        ``cache misses went to the database``."""
        head, colon, _ = self.message.partition(": ")
        return head if colon else self.title

    @property
    def detail(self) -> str:
        """The message without its :attr:`heading`."""
        head, colon, rest = self.message.partition(": ")
        return rest if colon else self.message

    def __str__(self) -> str:
        return self.message


def find(
    trace: Trace, thresholds: Thresholds | None = None, slow_ms: float | None = None
) -> list[Finding]:
    """The findings of ``trace``, the costliest first.

    ``thresholds``: default ``ioprofiler.configure``'s; ``slow_ms`` overrides theirs (the
    middleware passes its own).
    """
    limits = thresholds if thresholds is not None else config.settings.findings
    if slow_ms is not None and slow_ms != limits.slow_ms:
        limits = replace(limits, slow_ms=slow_ms)
    if trace.recording:
        return _find(trace, limits)
    # A closed trace is shown several times per response (panel, Server-Timing): once is enough.
    known = _found.get(trace)
    if known is None or known[0] != limits:
        known = _found[trace] = (limits, _find(trace, limits))
    return list(known[1])


_found: weakref.WeakKeyDictionary[Trace, tuple[Thresholds, list[Finding]]] = (
    weakref.WeakKeyDictionary()
)


def _find(trace: Trace, limits: Thresholds) -> list[Finding]:
    events = trace.events
    # is_query, inline: the queries, in the order they were made
    connection_ops = CONNECTION_OPS
    statements = [
        e
        for e in events
        if e.kind == DB
        and e.op not in connection_ops
        and e.statement is not None
        and not is_transaction_control(e.statement)
    ]
    groups = _by_shape(statements)
    found: list[Finding] = []
    n_plus_ones = _n_plus_one(groups, limits)
    found += n_plus_ones
    found += _n_plus_one_api(events, limits)
    found += _duplicate_statements(groups, limits)
    found += _duplicate_reads(events, limits)
    flagged = {id(f.events[0]) for f in n_plus_ones}
    found += _serial_fanout(groups, flagged, limits)
    found += _slow_calls(events, trace.elapsed_ms, limits)
    misses = _cache_misses(events, limits, statements)
    found += misses
    if not misses:
        found += _low_hit_ratio(events, limits)
    found += _waits(events, limits)
    found += _unexplained_time(trace, events, limits)
    found.sort(key=lambda f: (-f.ms, KINDS.index(f.kind)))
    return found


# -- grouping ------------------------------------------------------------------------------


@dataclass
class _Group:
    """The statements of one shape, and among them the exact repeats."""

    events: list[Event] = field(default_factory=list)
    # (the raw target, the statement and its values) -> the calls that made it
    copies: dict[tuple[Any, object], list[Event]] = field(default_factory=dict)

    @property
    def distinct_values(self) -> int:
        return len({fingerprint for _, fingerprint in self.copies})


def _by_shape(statements: list[Event]) -> dict[str, _Group]:
    groups: dict[str, _Group] = {}
    shapes: dict[tuple[str, str | None, str | None], _Group] = {}
    last: tuple[object, object, object] | None = None  # a run of one statement: looked up once
    group = _Group()
    for event in statements:
        statement: str = event.statement  # type: ignore[assignment]
        paramstyle, dialect = event.paramstyle, event.dialect
        if (
            last is None
            or statement is not last[0]
            or paramstyle is not last[1]
            or dialect is not last[2]
        ):
            key = (statement, paramstyle, dialect)
            group = shapes.get(key)  # type: ignore[assignment]
            if group is None:
                text = shape(statement, paramstyle, dialect)
                group = groups.get(text)
                if group is None:
                    group = groups[text] = _Group()
                shapes[key] = group
            last = key
        group.events.append(event)
        copy: tuple[Any, object] = (event._target, (statement, event.params))
        try:
            same = group.copies.get(copy)
        except TypeError:  # a dict of parameters, a list among them
            copy = (event._target, f"{statement}\x00{safe_repr(event.params)}")
            same = group.copies.get(copy)
        if same is None:
            group.copies[copy] = [event]
        else:
            same.append(event)
    return groups


def _key(key: Any) -> object:
    try:
        hash(key)
    except TypeError:
        return key_text(key)
    return key


def _ms(events: list[Event] | tuple[Event, ...]) -> float:
    """The finished calls' time together."""
    return sum([e.end_ns - e.start_ns for e in events if e.end_ns is not None]) / 1e6


def _short(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _targets(events: list[Event]) -> str:
    try:  # each raw target named once (as Event.target names it), in the order first seen
        names = list(dict.fromkeys([str(raw) for raw in dict.fromkeys(map(_raw_target, events))]))
    except TypeError:  # a target that cannot be a dict key
        names = list(dict.fromkeys(e.target for e in events))
    if len(names) > 4:
        return f"{', '.join(names[:3])} and {len(names) - 3} more"
    return ", ".join(names)


def _where(events: list[Event]) -> str:
    """`` <- file.py:12 in fn``: where most of the events were made."""
    # Counted by the code object's id, which the events keep alive: hashing a code object
    # hashes all its constants (a module's code: thousands of them). Calls in a loop come
    # from one site, one after another: a run of one site is counted at once.
    counts: dict[tuple[int, int], int] = {}
    codes: dict[tuple[int, int], Any] = {}
    last_code = last_line = None
    run = 0
    for event in events:
        site = event._site
        if site is None:
            continue
        code, line = site
        if code is last_code and line == last_line:
            run += 1
            continue
        if run:
            key = (id(last_code), last_line)
            counts[key] = counts.get(key, 0) + run
        last_code, last_line, run = code, line, 1
        key = (id(code), line)
        if key not in codes:
            codes[key] = code
            counts[key] = 0
    if not run:
        return ""
    key = (id(last_code), last_line)
    counts[key] += run
    # Counter.most_common(1): the first counted of the most made
    best = max(counts.items(), key=itemgetter(1))[0]
    return f" <- {_callsite_text(codes[best], best[1])}"


_start = attrgetter("start_ns")
_raw_target = attrgetter("_target")


def _times(count: int) -> str:
    return {2: "twice", 3: "3 times"}.get(count, f"{count}×")


# -- the detectors -------------------------------------------------------------------------


def _n_plus_one(groups: dict[str, _Group], limits: Thresholds) -> list[Finding]:
    found = []
    for text, group in groups.items():
        members = group.events
        if len(members) < limits.n_plus_one_count:
            continue
        if group.distinct_values < limits.n_plus_one_count:
            continue
        ms = _ms(members)
        if ms < limits.n_plus_one_ms:
            continue
        found.append(
            Finding(
                N_PLUS_ONE,
                f"N+1: {_short(text)} ran {len(members)}× on {_targets(members)} "
                f"({ms:.3f} ms){_where(members)}",
                tuple(members),
                ms,
                WRITE_LOOP_HINT if is_write(text) else READ_LOOP_HINT,
            )
        )
    return found


def _n_plus_one_api(events: list[Event], limits: Thresholds) -> list[Finding]:
    """HTTP calls to one URL shape (ids in the path folded) on one server, as many as an
    N+1 needs. Query-string values are never kept, so calls are not told apart by them."""
    groups: dict[tuple[Any, str], list[Event]] = {}
    for event in events:
        if event.kind == HTTP and event.statement is not None:
            key = (event._target, f"{event.op} {url_shape(event.statement)}")
            groups.setdefault(key, []).append(event)
    found = []
    for (_, text), members in groups.items():
        if len(members) < limits.n_plus_one_count:
            continue
        ms = _ms(members)
        if ms < limits.n_plus_one_ms:
            continue
        found.append(
            Finding(
                N_PLUS_ONE,
                f"N+1 API calls: {_short(text)} called {len(members)}× on {_targets(members)} "
                f"({ms:.3f} ms){_where(members)}",
                tuple(members),
                ms,
                "fetch them in one request (a batch or list endpoint), or all at once "
                "(asyncio.gather with httpx.AsyncClient) when the API has none",
            )
        )
    return found


def _duplicate_statements(groups: dict[str, _Group], limits: Thresholds) -> list[Finding]:
    found = []
    for text, group in groups.items():
        if len(group.events) < limits.duplicate_count:
            continue
        repeated = [same for same in group.copies.values() if len(same) >= limits.duplicate_count]
        if not repeated:
            continue
        involved = sorted([e for same in repeated for e in same], key=_start)
        wasted = [e for same in repeated for e in same[1:]]
        ms = _ms(wasted)
        if len(repeated) == 1:
            what = f"ran {_times(len(involved))} with the same values"
        else:
            what = f"ran {len(involved)} times, {len(wasted)} with values already used"
        found.append(
            Finding(
                DUPLICATE,
                f"duplicate: {_short(text)} {what} on {_targets(involved)} "
                f"({ms:.3f} ms wasted){_where(involved)}",
                tuple(involved),
                ms,
                REPEATED_WRITE_HINT if is_write(text) else REPEATED_READ_HINT,
            )
        )
    return found


def _duplicate_reads(events: list[Event], limits: Thresholds) -> list[Finding]:
    """The same cache key read more than once, per cache target."""
    reads: dict[str, dict[object, list[Event]]] = {}
    shown: dict[object, Any] = {}
    for event in events:
        if event.kind != CACHE or event.hit is None or event.op in BATCH_OPS:
            continue  # a batch's keys are its writes' too
        per_key = reads.setdefault(event.target, {})
        for key in event.keys:
            marker = _key(key)
            shown.setdefault(marker, key)
            per_key.setdefault(marker, []).append(event)
    found = []
    for target, per_key in reads.items():
        repeated = {k: v for k, v in per_key.items() if len(v) >= limits.duplicate_count}
        if not repeated:
            continue
        involved = sorted(
            {id(e): e for v in repeated.values() for e in v}.values(), key=lambda e: e.start_ns
        )
        wasted = {id(e): e for v in repeated.values() for e in v[1:]}
        ms = _ms(list(wasted.values()))
        tail = f" on {target} ({ms:.3f} ms wasted){_where(involved)}"
        keyless = f"duplicate: {len(repeated)} cache keys read more than once{tail}"
        message = keyless
        if len(repeated) == 1:
            ((marker, same),) = repeated.items()
            key = _short(key_text(shown[marker]))
            message = f"duplicate: cache key {key} read {_times(len(same))}{tail}"
            keyless = f"duplicate: 1 cache key read {_times(len(same))}{tail}"
        found.append(
            Finding(
                DUPLICATE,
                message,
                tuple(involved),
                ms,
                "keep the value once read for the rest of the request (a per-request dict)",
                keyless_message=keyless,
            )
        )
    return found


def _serial_fanout(
    groups: dict[str, _Group], flagged: set[int], limits: Thresholds
) -> list[Finding]:
    found = []
    for text, group in groups.items():
        members = group.events
        if len(members) < limits.fanout_targets or id(members[0]) in flagged:
            continue
        targets = {e._target for e in members}
        if len(targets) != len(members):  # one query per shard, no more
            continue
        if any(e.end_ns is None for e in members):
            continue
        ordered = sorted(members, key=lambda e: e.start_ns)
        if any(b.start_ns < (a.end_ns or 0) for a, b in zip(ordered, ordered[1:], strict=False)):
            continue  # they overlapped: already concurrent
        total = _ms(ordered)
        longest = max(e.duration_ms or 0.0 for e in ordered)
        saving = total - longest
        if saving < limits.fanout_saving_ms:
            continue
        found.append(
            Finding(
                SERIAL_FANOUT,
                f"serial fan-out: {_short(text)} sent to {len(ordered)} shards one after "
                f"another ({total:.3f} ms; {saving:.3f} ms saved if run at once)"
                f"{_where(ordered)}",
                tuple(ordered),
                saving,
                "send the per-shard queries concurrently (a thread pool with "
                "ioprofiler.propagate, or asyncio.gather)",
            )
        )
    return found


def _slow_calls(events: list[Event], elapsed_ms: float, limits: Thresholds) -> list[Finding]:
    found = []
    slowest: Event | None = None
    slowest_ns, slow_ns = -1, limits.slow_ms * 1e6
    for event in events:
        if event.end_ns is None or event.op in WAIT_OPS:
            continue
        took = event.end_ns - event.start_ns
        if took > slowest_ns:
            slowest, slowest_ns = event, took
        if took >= slow_ns:
            found.append(_slow_call(event, took / 1e6, ""))
    if slowest is not None and not found and elapsed_ms > 0:
        duration = slowest_ns / 1e6
        share = duration / elapsed_ms
        if duration >= limits.dominant_ms and share >= limits.dominant_share:
            found.append(_slow_call(slowest, duration, f" is {share:.0%} of the request"))
    return found


def _slow_call(event: Event, duration: float, share: str) -> Finding:
    head = f"slow call: {duration:.3f} ms on {event.target}{share}: "
    where = _where([event])
    keyless = None
    if event.kind == DB and event.statement is not None:
        what = shape(event.statement, event.paramstyle, event.dialect)
    else:
        what = event.description()
        if event.keys:  # a cache call names its keys; logs that keep none get their count
            keyless = f"{head}{event.op} of {len(event.keys)} key{'s' * (len(event.keys) != 1)}"
            keyless += where
    return Finding(
        SLOW_CALL,
        f"{head}{_short(what)}{where}",
        (event,),
        duration,
        _slow_hint(event),
        keyless_message=keyless,
    )


def _slow_hint(event: Event) -> str:
    if event.op in CONNECTION_OPS:
        return SLOW_OP_HINTS.get(event.op, CONNECTION_OP_HINT)
    if event.kind == DB and event.statement is not None and is_transaction_control(event.statement):
        commits = event.statement.lstrip().upper().startswith(("COMMIT", "END"))
        return DURABILITY_HINT if commits else CONNECTION_OP_HINT
    if event.kind == DB:
        return "EXPLAIN it: an index, fewer rows or columns; or cache its result"
    if event.kind == CACHE:
        return "check the cache server's load and the size of the values"
    return "check the remote side; add a timeout, or cache the result"


def _cache_misses(
    events: list[Event], limits: Thresholds, queries: list[Event] | None = None
) -> list[Finding]:
    """Missed keys that the request then filled from the database. ``queries``: the
    events that are queries (:func:`is_query`), in order, when known."""
    statements = [e for e in events if is_query(e)] if queries is None else queries
    missed: dict[object, tuple[Event, int]] = {}  # key -> (the read, statements made before it)
    filled: list[tuple[Event, Event]] = []
    spans: list[tuple[int, int]] = []  # statements[a:b] ran between a miss and its fill
    made = 0  # statements made so far
    following = statements[0] if statements else None  # the next of them
    for event in events:
        if event is following:
            made += 1
            following = statements[made] if made < len(statements) else None
        elif event.kind != CACHE:
            continue
        elif event.hit is not None:
            for key in event.missed_keys or ():
                missed.setdefault(_key(key), (event, made))
        elif event.op.lower() in FILL_OPS:
            for key in event.keys:
                read, before = missed.pop(_key(key), (None, 0))
                if read is not None and made > before:
                    filled.append((read, event))
                    spans.append((before, made))
    if len(filled) < limits.cache_fill_count:
        return []
    queries = _union(statements, spans)
    involved = {id(e): e for pair in filled for e in pair}
    involved.update((id(e), e) for e in queries)
    ordered = sorted(involved.values(), key=lambda e: e.start_ns)
    ms = _ms(queries)
    reads = _read_counts(events)
    count = f"{len(queries)} {'query' if len(queries) == 1 else 'queries'}"
    return [
        Finding(
            CACHE_MISSES,
            f"cache misses went to the database: {len(filled)} keys missed and filled by "
            f"{count} ({ms:.3f} ms); hit ratio {_ratio(*reads)}{_where([r for r, _ in filled])}",
            tuple(ordered),
            ms,
            "a cold or ineffective cache: if it stays cold on reload, check the TTLs, the "
            "keys (a part that changes per request?) and evictions",
        )
    ]


def _union(items: list[Event], spans: list[tuple[int, int]]) -> list[Event]:
    """The items covered by any of the ``[a, b)`` spans, each once, in order."""
    chosen: list[Event] = []
    reach = 0
    for a, b in sorted(spans):
        a = max(a, reach)
        chosen += items[a:b]
        reach = max(reach, b)
    return chosen


def _read_counts(events: list[Event]) -> tuple[int, int]:
    hits = misses = 0
    for event in events:
        if event.kind == CACHE and event.hit is not None:
            misses += event.miss_count or 0
            hits += event.hit_count or 0
    return hits, misses


def _ratio(hits: int, misses: int) -> str:
    reads = hits + misses
    return f"{hits / reads:.0%} ({hits} of {reads} keys found)" if reads else "n/a"


def _low_hit_ratio(events: list[Event], limits: Thresholds) -> list[Finding]:
    hits, misses = _read_counts(events)
    reads = hits + misses
    if reads < limits.hit_ratio_reads or hits / reads >= limits.hit_ratio_below:
        return []
    missing = [e for e in events if e.kind == CACHE and e.miss_count]
    ms = _ms(missing)
    return [
        Finding(
            LOW_HIT_RATIO,
            f"low hit ratio: {_ratio(hits, misses)}{_where(missing)}",
            tuple(missing),
            ms,
            "keys that are read but never found: are they ever set? check the TTLs, the "
            "keys (a part that changes per request?) and evictions",
        )
    ]


def _waits(events: list[Event], limits: Thresholds) -> list[Finding]:
    wait_ops = WAIT_OPS
    waits = [e for e in events if e.op in wait_ops and _is_wait(e)]
    ms = _ms(waits)
    if not waits or ms < limits.waits_ms:
        return []
    parts = []
    for op, word in (("pool_wait", "pool wait"), ("connect", "new connection")):
        of_op = [e for e in waits if e.op == op]
        if of_op:
            plural = "s" if len(of_op) != 1 else ""
            parts.append(f"{len(of_op)} {word}{plural} {_ms(of_op):.3f} ms")
    hints = []
    if any(e.op == "pool_wait" for e in waits):
        hints.append("the pool ran out: raise pool_size/max_overflow or hold connections shorter")
    connects = [e for e in waits if e.op == CONNECT]
    if any(e.pool_held is None for e in connects):
        hints.append(
            "connections opened per request: reuse them (a pool, persistent clients, "
            "Django's CONN_MAX_AGE)"
        )
    if any(e.pool_held for e in connects):
        hints.append(
            "the pool opened more connections (all of them in use, or one recycled): "
            "raise pool_size if it happens on every request"
        )
    return [
        Finding(
            WAITS,
            f"waits: {ms:.3f} ms waiting for connections on {_targets(waits)}: {', '.join(parts)}",
            tuple(waits),
            ms,
            "; ".join(hints),
        )
    ]


def _is_wait(event: Event) -> bool:
    """A pool wait or a new connection, finished; not the first connection a pool opens
    (once per process and pool, not per request)."""
    if event.op not in WAIT_OPS or event.end_ns is None:
        return False
    return not (event.op == CONNECT and event.pool_held == 0)


def _unexplained_time(trace: Trace, events: list[Event], limits: Thresholds) -> list[Finding]:
    elapsed = trace.elapsed_ms
    if elapsed <= 0 or elapsed < limits.unexplained_request_ms:
        return []
    end = trace.start_ns + round(elapsed * 1e6)
    covered = 0
    reach = trace.start_ns  # where the I/O seen so far ends
    gap, before_gap = 0, None  # the longest stretch without I/O, and the call before it
    last: Event | None = None
    for event in sorted(events, key=_start):
        start = event.start_ns
        event_end = event.end_ns
        if event_end is None or event_end > end:  # min(end, its end)
            event_end = end
        if start - reach > gap:
            gap, before_gap = start - reach, last
        if event_end > reach:
            covered += event_end - (start if start > reach else reach)
            reach, last = event_end, event
    if end - reach > gap:
        gap, before_gap = end - reach, last
    covered_ms = covered / 1e6 + sum(ms for _, ms, *_ in trace.overflow().values())
    unexplained = max(0.0, elapsed - covered_ms)
    share = unexplained / elapsed
    if share < limits.unexplained_share:
        return []
    where = " at the start" if before_gap is None else ""
    return [
        Finding(
            UNEXPLAINED_TIME,
            f"unexplained time: {unexplained:.1f} ms ({share:.0%}) of this {elapsed:.1f} ms "
            f"request is outside any I/O call; the longest stretch {gap / 1e6:.1f} ms{where}",
            () if before_gap is None else (before_gap,),
            unexplained,
            "the I/O is not the problem: profile the code between the calls (pyinstrument, py-spy)",
        )
    ]
