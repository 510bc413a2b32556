"""Each request's I/O into the OpenTelemetry trace the application already sends.

>>> from ioprofiler.export import OpenTelemetry
>>> app = OpenTelemetryMiddleware(IOProfilerMiddleware(app, export=[OpenTelemetry()]))

Only the OpenTelemetry API is used: unless the application configured an SDK, nothing is
recorded and the cost is the API's no-op. The span annotated is the one that was current
when the request reached ioprofiler's middleware (the server span of OpenTelemetry's WSGI
middleware, or a framework instrumentation's, wrapped around it), and only while it is
still recording.

- By default the request's I/O summary becomes attributes of that span
  (``ioprofiler.db.queries``, ``ioprofiler.db.queries.dbshard01``, cache hits and misses,
  I/O time, likely N+1 count) and, for requests slower than ``slow_ms``, the listing (values
  and cache keys hidden) is added as the span event ``ioprofiler.listing``.
- ``spans=True`` also adds one CLIENT span per I/O call, a child of that span, with the
  call's real start and end times and the stable database semantic conventions
  (``db.system.name``, ``db.namespace`` = the shard, ``db.operation.name``,
  ``db.query.text`` with values as ``?`` unless ``query_values=True``, ``server.address``,
  ``server.port`` (a database's as its connects named it), ``error.type``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from time import perf_counter_ns, time_ns
from typing import Any

from opentelemetry import trace as otel_trace

import ioprofiler
from ioprofiler import compiled, config
from ioprofiler.event import (
    CONNECT,
    CONNECTION_OPS,
    DB,
    POOL_WAIT,
    CacheCall,
    ConnectionOp,
    Event,
    Statement,
)
from ioprofiler.export.names import NameBudget
from ioprofiler.export.tally import RequestTally
from ioprofiler.sinks import FinishedRequest
from ioprofiler.sql_text import render_statement, shape
from ioprofiler.trace import Trace

log = logging.getLogger("ioprofiler")

LISTING_EVENT = "ioprofiler.listing"
MAX_LISTING_CHARS = 32_000
MAX_LISTING_EVENTS = 500
# db.system.name values of the stable conventions, by SQLAlchemy dialect / service name
SYSTEMS = {
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "sqlite": "sqlite",
    "mssql": "microsoft.sql_server",
    "oracle": "oracle.db",
    "memcache": "memcached",
    "redis": "redis",
}


_KIND_KEYS: dict[str, str] = {}  # kind -> "ioprofiler.<kind>.calls"


class OpenTelemetry:
    """Put each request's I/O on its OpenTelemetry server span. Options:

    - ``spans``: also one CLIENT span per I/O call (default False: attributes only).
    - ``slow_ms``: requests at least this slow get the listing as a span event
      (default: the middleware's default ``slow_ms``); ``listing=False`` never adds it.
    - ``query_values``: put bound values in ``db.query.text`` (default False: ``?``).
    - ``max_names``: distinct shards named in attribute keys before ``other``.
    - ``tracer_provider``: default the global one the application configured.
    """

    def __init__(
        self,
        spans: bool = False,
        *,
        slow_ms: float = config.DEFAULT_SLOW_MS,
        listing: bool = True,
        query_values: bool = False,
        max_names: int = 100,
        tracer_provider: otel_trace.TracerProvider | None = None,
    ) -> None:
        if not isinstance(slow_ms, (int, float)) or isinstance(slow_ms, bool) or slow_ms < 0:
            raise ValueError(f"slow_ms must be milliseconds >= 0, not {slow_ms!r}")
        if not isinstance(max_names, int) or isinstance(max_names, bool) or max_names < 1:
            raise ValueError(f"max_names must be a whole number >= 1, not {max_names!r}")
        self.spans = bool(spans)
        self.slow_ms = float(slow_ms)
        self.listing = bool(listing)
        self.query_values = bool(query_values)
        self.targets = NameBudget("shard", max_names)
        self._shard_keys: dict[Any, str] = {}  # attribute key per shard name
        # a shard's server, as its connects named it: (host or socket path, port or None)
        self._db_servers: dict[str, tuple[str, int | None]] = {}
        self.tracer = otel_trace.get_tracer(
            "ioprofiler", ioprofiler.__version__, tracer_provider=tracer_provider
        )

    def __repr__(self) -> str:
        return f"<OpenTelemetry spans={self.spans}>"

    def handle(self, request: FinishedRequest) -> None:
        """Annotate the request's span (and add its I/O spans); nothing without an SDK."""
        if request.context is None:
            return
        span = request.context.run(otel_trace.get_current_span)
        if not span.is_recording():
            return
        trace = request.trace
        span.set_attributes(self.attributes(trace))
        if self.listing and request.duration_ms >= self.slow_ms:
            span.add_event(LISTING_EVENT, {LISTING_EVENT: listing_text(trace)})
        if self.spans:
            self.add_spans(trace, span)

    def close(self) -> None:
        """Nothing to send: the application's SDK exports the spans."""

    # -- attributes ---------------------------------------------------------------------

    def attributes(self, trace: Trace) -> dict[str, Any]:
        """The I/O summary as span attributes, from the request's per-target totals
        (which go on counting past ``max_events``, as StatsD's do):
        ``ioprofiler.io.time_ms`` (every round trip, pool waits excluded),
        ``ioprofiler.db.queries`` and per shard ``ioprofiler.db.queries.<shard>``,
        ``ioprofiler.<kind>.calls`` for other kinds, ``ioprofiler.cache.hits``/``misses``,
        and when non-zero ``ioprofiler.errors``, ``ioprofiler.n_plus_one`` (statements run
        at least ``n_plus_one_count`` times with the same text on one shard, among the kept
        events) and ``ioprofiler.dropped``."""
        counts = IOCounts.of(trace)
        per_shard = counts.per_shard
        out: dict[str, Any] = {
            "ioprofiler.io.time_ms": round(counts.io_ns / 1e6, 3),
            "ioprofiler.db.queries": sum(per_shard.values()),
        }
        shard_keys = self._shard_keys
        for shard, count in per_shard.items():
            key = shard_keys.get(shard) or self._shard_key(shard)
            out[key] = out.get(key, 0) + count  # shards past the budget share "other"
        for kind, count in counts.per_kind.items():
            key = _KIND_KEYS.get(kind)
            if key is None:
                key = f"ioprofiler.{kind}.calls"
                if len(_KIND_KEYS) < 64:
                    _KIND_KEYS[kind] = key
            out[key] = count
        hits, misses = counts.hits, counts.misses
        if hits or misses:
            out["ioprofiler.cache.hits"] = hits
            out["ioprofiler.cache.misses"] = misses
        if counts.errors:
            out["ioprofiler.errors"] = counts.errors
        at_least = config.settings.findings.n_plus_one_count
        repeated = 0
        for count in counts.statements.values():
            if count >= at_least:
                repeated += 1
        if repeated:
            out["ioprofiler.n_plus_one"] = repeated
        if trace._overflow:
            out["ioprofiler.dropped"] = trace.dropped
        return out

    def _shard_key(self, shard: Any) -> str:
        """``ioprofiler.db.queries.<shard>``, named once per shard within the name budget."""
        keys = self._shard_keys
        key = keys.get(shard)
        if key is None:
            key = f"ioprofiler.db.queries.{self.targets.name(str(shard))}"
            if len(keys) < 4 * self.targets.limit:
                keys[shard] = key
        return key

    # -- spans --------------------------------------------------------------------------

    def add_spans(self, trace: Trace, parent: otel_trace.Span) -> None:
        """One CLIENT span per I/O call, child of ``parent``, at the call's real times."""
        context = otel_trace.set_span_in_context(parent)
        to_epoch = perf_counter_to_epoch_ns()
        closed_at = trace.end_ns or perf_counter_ns()
        for event in trace.events:
            if event.op == POOL_WAIT:
                continue
            name, attributes = self.conventions(event)
            span = self.tracer.start_span(
                name,
                context=context,
                kind=otel_trace.SpanKind.CLIENT,
                attributes=attributes,
                start_time=event.start_ns + to_epoch,
            )
            if event.error is not None:
                span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR))
            end = event.end_ns
            if end is None:
                span.set_attribute("ioprofiler.unfinished", True)
                end = closed_at
            span.end(end_time=end + to_epoch)

    def conventions(self, event: Event) -> tuple[str, Mapping[str, Any]]:
        """The span name and attributes of one call, per the database semantic conventions."""
        attributes: dict[str, Any] = {}
        target = event.target
        service = getattr(event._target, "service", None)
        if event.kind == DB:
            system = SYSTEMS.get(event.dialect or "", event.dialect or "other_sql")
            operation = sql_operation(event)
            attributes["db.namespace"] = target
            if event.statement is not None:
                attributes["db.query.text"] = self.query_text(event)
            if event.op == "executemany" and event.rows is not None:
                attributes["db.operation.batch.size"] = event.rows
            name = f"{operation} {target}"
        else:
            service_name = getattr(service, "name", event.kind)
            system = SYSTEMS.get(service_name, service_name)
            operation = event.op.upper() if event.op in CONNECTION_OPS else event.op
            name = operation
            if event.hit is not None:
                attributes["ioprofiler.cache.hit"] = not event.miss_count
                attributes["ioprofiler.cache.hits"] = event.hit_count or 0
                attributes["ioprofiler.cache.misses"] = event.miss_count or 0
            if event.keys:
                attributes["ioprofiler.cache.key_count"] = len(event.keys)
        attributes["db.system.name"] = system
        attributes["db.operation.name"] = operation
        server = server_of(event) if event.kind != DB else self._db_server(event, target)
        if server is not None:
            attributes["server.address"] = server[0]
            if server[1] is not None:
                attributes["server.port"] = server[1]
        if event.error is not None:
            attributes["error.type"] = event.error
        return name, attributes

    def _db_server(self, event: Event, target: str) -> tuple[str, int | None] | None:
        """The shard's server: learnt from its connects (this request's or an earlier one's),
        since statements do not name it."""
        if event.op == CONNECT and event.detail is not None:
            _, host, port, _ = event.detail
            if host and len(self._db_servers) < 4 * self.targets.limit:
                self._db_servers[target] = (str(host), port if isinstance(port, int) else None)
        return self._db_servers.get(target)

    def query_text(self, event: Event) -> str:
        assert event.statement is not None
        if self.query_values:
            return render_statement(
                event.statement, event.params, event.paramstyle, event.rows, False, event.dialect
            )
        return shape(event.statement, event.paramstyle, event.dialect)


def _load_tally() -> Any:
    """``ioprofiler._tally`` told the event classes, or None: :meth:`IOCounts._count_kept`."""
    module = compiled.load("_tally")
    if module is not None:
        module.describe(Event, Statement, ConnectionOp, CacheCall, CONNECTION_OPS, POOL_WAIT, DB)
    return module


_tally = _load_tally()


class IOCounts:
    """What the span's attributes say, added up in one pass over the kept events, plus the
    calls past ``max_events`` (counted per target by the trace, see :class:`RequestTally`).
    ``statements`` counts (shard, text) among the kept events only."""

    __slots__ = ("per_shard", "per_kind", "statements", "io_ns", "errors", "hits", "misses")

    def __init__(self) -> None:
        self.per_shard: dict[Any, int] = {}
        self.per_kind: dict[str, int] = {}
        self.statements: dict[tuple[Any, str | None], int] = {}
        self.io_ns = self.errors = self.hits = self.misses = 0

    @classmethod
    def of(cls, trace: Trace) -> IOCounts:
        counts = cls()
        if _tally is not None:
            try:
                totals = _tally.count_io(trace._events, counts.per_kind, counts.statements)
            except Exception:  # an event it cannot read by its slots: the reference reads it
                counts = cls()
                totals = counts._count_kept(trace._events)
        else:
            totals = counts._count_kept(trace._events)
        counts.io_ns, counts.errors, counts.hits, counts.misses = totals
        per_shard = counts.per_shard  # in the order the shards were first seen
        for (shard, _), count in counts.statements.items():
            per_shard[shard] = per_shard.get(shard, 0) + count
        if trace._overflow:
            counts._add_past_bound(trace)
        return counts

    def _count_kept(self, events: list[Event]) -> tuple[int, int, int, int]:
        """The pass over the kept events: fills ``per_kind`` and ``statements``, returns
        (io_ns, errors, hits, misses). The reference of ``ioprofiler._tally.count_io``."""
        per_kind, statements = self.per_kind, self.statements
        io_ns = errors = hits = misses = 0
        # locals: this loop is the exporter's cost (about 30 events a request); each
        # attribute is read once, and statements are counted once, per (shard, text): the
        # shards' counts are added up from those after the loop
        connection_ops, db, pool_wait, cache_call = CONNECTION_OPS, DB, POOL_WAIT, CacheCall
        for event in events:
            op = event.op
            if op in connection_ops:
                if op == pool_wait:
                    continue
            else:
                kind = event.kind
                if kind == db:
                    key = (event._target, event.statement)
                    statements[key] = statements.get(key, 0) + 1
                else:
                    per_kind[kind] = per_kind.get(kind, 0) + 1
                    if event.hit is not None:
                        if type(event) is cache_call and event.counts is None:
                            # hit_count and miss_count, as those properties read them
                            missed = event.missed_keys
                            missing = len(missed) if missed else 0
                            misses += missing
                            hits += len(event.keys) - missing
                        else:
                            misses += event.miss_count or 0
                            hits += event.hit_count or 0
            end = event.end_ns
            if end is not None:
                io_ns += end - event.start_ns
            if event.error is not None:
                errors += 1
        return io_ns, errors, hits, misses

    def _add_past_bound(self, trace: Trace) -> None:
        past = RequestTally.past_bound(trace)
        self.io_ns += past.io_ns
        for (kind, raw), target in past.targets.items():
            self.hits += target.hits
            self.misses += target.misses
            self.errors += target.errors
            if target.calls and kind == DB:
                self.per_shard[raw] = self.per_shard.get(raw, 0) + target.calls
            elif target.calls:
                self.per_kind[kind] = self.per_kind.get(kind, 0) + target.calls


def perf_counter_to_epoch_ns() -> int:
    """What to add to a ``perf_counter_ns()`` reading to get nanoseconds since the epoch:
    both clocks read back to back, the wall clock between two readings of the other."""
    before = perf_counter_ns()
    wall = time_ns()
    after = perf_counter_ns()
    return wall - (before + after) // 2


def sql_operation(event: Event) -> str:
    """``SELECT``, ``INSERT``…; ``BATCH INSERT`` for executemany; ``COMMIT`` for the
    round trips that are not statements."""
    if event.op in CONNECTION_OPS or not event.statement:
        return event.op.upper()
    words = event.statement.split(None, 1)
    verb = words[0].upper() if words else "UNKNOWN"
    return f"BATCH {verb}" if event.op == "executemany" else verb


def server_of(event: Event) -> tuple[str, int] | None:
    """A cache server's host and port, when its address is ``(host, port)``."""
    address = event.server
    if isinstance(address, tuple) and len(address) == 2 and isinstance(address[1], int):
        return str(address[0]), address[1]
    return None


def listing_text(trace: Trace) -> str:
    """The listing with bound values and cache keys hidden, cut to a bounded size."""
    from ioprofiler.render.json import event_dict

    events = trace.events
    lines = [
        event_dict(trace, event, index, redact=True, keys=False)["line"]
        for index, event in enumerate(events[:MAX_LISTING_EVENTS])
    ]
    if len(events) > MAX_LISTING_EVENTS:
        lines.append(f"… {len(events) - MAX_LISTING_EVENTS} more calls")
    text = "\n".join(lines)
    if len(text) > MAX_LISTING_CHARS:
        text = text[:MAX_LISTING_CHARS] + "\n…"
    return text
