"""Per-route, per-target I/O metrics for StatsD (and so Graphite), for every request.

>>> from ioprofiler.export import StatsD
>>> app = IOProfilerMiddleware(app, export=[StatsD("127.0.0.1", 8125)])

Each request adds, with Graphite-style dotted names (``prefix.route.kind.target.metric``)::

    ioprofiler.listing_show.requests:1|c
    ioprofiler.listing_show.request_time:12.842|ms
    ioprofiler.listing_show.io_time:3.104|ms
    ioprofiler.listing_show.db.dbshard01.queries:3|c
    ioprofiler.listing_show.db.dbshard01.io_time:2.512|ms
    ioprofiler.listing_show.cache.memcache_10_0_0_5_11211.calls:2|c
    ioprofiler.listing_show.cache.memcache_10_0_0_5_11211.hits:1|c
    ioprofiler.listing_show.cache.memcache_10_0_0_5_11211.misses:1|c

and, when present, ``errors`` per target and ``pool_waits``, ``pool_wait_time`` and
``connects`` per route. A server is named with its address (``memcache_10_0_0_5_11211``),
however many servers the process has seen, so a series keeps its name. With
``tags="dogstatsd"`` the route and target become tags:
``ioprofiler.db.queries:3|c|#route:listing_show,target:dbshard01``; ``tags=["env:prod"]``
does the same and puts those tags first on every line. ``prefix="shop.{host}"`` puts the
machine's host name in every Graphite name (``shop.web_01.listing_show.requests``).

On the request's thread the exporter only adds the trace up (:class:`RequestTally`) and
appends it to a bounded queue; a background thread names, formats and packs the metrics
into datagrams of at most ``max_packet`` bytes and sends them on a non-blocking UDP
socket. Nothing raises into the application: a full queue or a datagram the socket
would not take is dropped and counted in :attr:`StatsD.dropped`.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import random
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from ioprofiler.export.names import (
    UNKNOWN,
    NameBudget,
    check_prefix,
    check_tags,
    safe_part,
    target_name,
    with_host,
)
from ioprofiler.export.tally import RequestTally
from ioprofiler.export.udp import RESOLVE_EVERY, SAFE_PACKET, UDPSender, pack
from ioprofiler.sinks import FinishedRequest

log = logging.getLogger("ioprofiler")

# What a target's calls are called: statements on a database, calls anywhere else.
CALLS_NAME = {"db": "queries"}

Queued = tuple[Any, float, RequestTally]


class StatsD:
    """Send each request's I/O to a StatsD daemon. Options:

    - ``host``, ``port``: the daemon (UDP); default ``127.0.0.1:8125``. The host name is
      looked up again every ``resolve_every`` seconds (60) and after a failed send, by the
      sender thread.
    - ``prefix``: the first part of every name; default ``ioprofiler``; ``{host}`` in it
      is replaced by this machine's host name (letters, digits and ``_``).
    - ``tags``: None for Graphite dotted names, ``"dogstatsd"`` for DogStatsD tags, or a
      list of constant DogStatsD tags (``["env:prod", "service:shop"]``) sent on every line.
    - ``sample_rate``: the share of requests sent (0 < rate <= 1), marked ``|@rate`` so
      the daemon scales the counts back up.
    - ``max_names``: distinct routes, and distinct targets, before new ones are
      reported as ``other`` (a warning is logged once).
    - ``max_packet``: datagram size; ``flush_interval``: seconds between sends;
      ``max_queue``: requests waiting to be sent before new ones are dropped.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8125,
        prefix: str = "ioprofiler",
        tags: str | Iterable[str] | None = None,
        *,
        sample_rate: float = 1.0,
        max_names: int = 100,
        max_packet: int = SAFE_PACKET,
        flush_interval: float = 0.2,
        max_queue: int = 10_000,
        resolve_every: float = RESOLVE_EVERY,
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"port must be a UDP port number (1-65535), not {port!r}")
        if (
            not isinstance(sample_rate, (int, float))
            or isinstance(sample_rate, bool)
            or not 0 < sample_rate <= 1
        ):
            raise ValueError(f"sample_rate must be a number in (0, 1], not {sample_rate!r}")
        _check_whole("max_names", max_names, 1)
        _check_whole("max_packet", max_packet, 64)
        _check_whole("max_queue", max_queue, 1)
        if not isinstance(flush_interval, (int, float)) or not flush_interval > 0:
            raise ValueError(f"flush_interval must be seconds > 0, not {flush_interval!r}")
        if not isinstance(resolve_every, (int, float)) or not resolve_every >= 0:
            raise ValueError(f"resolve_every must be seconds >= 0, not {resolve_every!r}")
        self.prefix = check_prefix(with_host(prefix))
        self.tags, self.constant_tags = _tag_style(tags)
        self._constant = "".join(f"{tag}," for tag in self.constant_tags)
        self.sample_rate = float(sample_rate)
        self.max_packet = max_packet
        self.flush_interval = float(flush_interval)
        self.max_queue = max_queue
        self.routes = NameBudget("route", max_names)
        self.targets = NameBudget("target", max_names)
        self.dropped = 0
        self._sender = UDPSender(host, port, float(resolve_every))
        self._rate = "" if sample_rate == 1 else f"|@{self.sample_rate:g}"
        self._queue: collections.deque[Queued] = collections.deque()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        _live.add(self)

    def __repr__(self) -> str:
        host, port = self._sender.address[:2]
        return f"<StatsD {host}:{port} prefix={self.prefix!r} tags={self.tags!r}>"

    # -- on the request's thread --------------------------------------------------------

    def handle(self, request: FinishedRequest) -> None:
        """Add up the request's I/O and queue it for the sender thread."""
        if self._closed:
            return
        if self.sample_rate < 1 and random.random() >= self.sample_rate:
            return
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append((request.route, request.duration_ms, RequestTally.of(request.trace)))
        if self._thread is None:
            self._start()

    # -- elsewhere ----------------------------------------------------------------------

    def flush(self) -> None:
        """Send everything queued now (the sender thread does this every flush_interval)."""
        with self._flushing:
            lines: list[str] = []
            queue = self._queue
            while queue:
                route, duration_ms, tally = queue.popleft()
                try:
                    lines += self.lines(route, duration_ms, tally)
                except Exception:
                    log.exception("ioprofiler: could not format a request's metrics")
                    self.dropped += 1
            packets = pack(lines, self.max_packet)
            if packets:
                self._sender.refresh()
            for packet in packets:
                if not self._sender.send(packet):
                    self.dropped += packet.count(b"\n") + 1

    def close(self) -> None:
        """Send what is queued, stop the sender thread, close the socket."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        try:
            self.flush()
        finally:
            self._sender.close()
            _live.discard(self)

    @property
    def sent(self) -> int:
        """Datagrams sent so far."""
        return self._sender.sent

    def lines(self, route: Any, duration_ms: float, tally: RequestTally) -> list[str]:
        """The metric lines for one request (what the sender thread packs)."""
        route_name = UNKNOWN if route is None else self.routes.name(route)
        rate = self._rate
        if self.tags is None:
            base = f"{self.prefix}.{route_name}."
            own = ""
        else:
            base = f"{self.prefix}."
            own = f"#{self._constant}route:{route_name}"
        out = [
            self._line(base, "requests", "1", "c", own, rate),
            self._line(base, "request_time", f"{duration_ms:.3f}", "ms", own, rate),
            self._line(base, "io_time", f"{tally.io_ms:.3f}", "ms", own, rate),
        ]
        if tally.pool_waits:
            out.append(self._line(base, "pool_waits", str(tally.pool_waits), "c", own, rate))
            wait_ms = f"{tally.pool_wait_ns / 1e6:.3f}"
            out.append(self._line(base, "pool_wait_time", wait_ms, "ms", own, rate))
        if tally.connects:
            out.append(self._line(base, "connects", str(tally.connects), "c", own, rate))
        for (kind, raw), counted in tally.targets.items():
            kind_name = safe_part(kind)
            target = self.targets.name(target_name(raw))
            if self.tags is None:
                where, tags = f"{base}{kind_name}.{target}.", ""
            else:
                where, tags = f"{base}{kind_name}.", f"{own},target:{target}"
            if counted.calls:
                calls = CALLS_NAME.get(kind, "calls")
                out.append(self._line(where, calls, str(counted.calls), "c", tags, rate))
            if counted.hits or counted.misses:
                out.append(self._line(where, "hits", str(counted.hits), "c", tags, rate))
                out.append(self._line(where, "misses", str(counted.misses), "c", tags, rate))
            if counted.errors:
                out.append(self._line(where, "errors", str(counted.errors), "c", tags, rate))
            out.append(self._line(where, "io_time", f"{counted.ms:.3f}", "ms", tags, rate))
        return out

    @staticmethod
    def _line(base: str, metric: str, value: str, kind: str, tags: str, rate: str) -> str:
        line = f"{base}{metric}:{value}|{kind}{rate}"
        return f"{line}|{tags}" if tags else line

    def _start(self) -> None:
        with self._flushing:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="ioprofiler-statsd", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            try:
                self.flush()
            except Exception:  # pragma: no cover - flush catches what it expects
                log.exception("ioprofiler: the StatsD sender failed; it keeps going")

    def _after_fork(self) -> None:
        """A forked worker starts its own sender thread on its first request."""
        self._thread = None
        self._flushing = threading.Lock()
        self._queue.clear()


def _tag_style(tags: object) -> tuple[str | None, tuple[str, ...]]:
    """``tags=`` as (style, constant tags): a list of tags means DogStatsD with them."""
    if tags is None or tags == "dogstatsd":
        return tags, ()  # type: ignore[return-value]
    if isinstance(tags, (list, tuple)):
        return "dogstatsd", check_tags(tags)
    raise ValueError(
        "tags must be None (Graphite names), 'dogstatsd', or a list of constant tags "
        f"such as ['env:prod'], not {tags!r}"
    )


def _check_whole(name: str, value: object, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, not {value!r}")


_live: weakref.WeakSet[StatsD] = weakref.WeakSet()


def _flush_all() -> None:
    for exporter in list(_live):
        try:
            exporter.flush()
        except Exception:
            log.exception("ioprofiler: could not flush %r at exit", exporter)


def _forked() -> None:
    for exporter in list(_live):
        exporter._after_fork()


atexit.register(_flush_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
