"""How calls name their targets: each integration names its own; the core only shows them.

A database integration passes the shard's name (a ``str``). A client of a network
service asks its :class:`Service` for the server's target, once per call (a dict lookup)::

    MEMCACHE = Service("memcache", address="when_many", batch_read="get_many")
    REDIS = Service("redis", describe=redis_address, batch_read="MGET")   # [redis 10.0.0.5:6379/0]

    event = begin(traces, CACHE, "get", MEMCACHE.target(client.server))

The text is made when a listing is shown, never during the call. A service's name also
names every server of it: ``trace.count(target="memcache")`` counts ``[memcache 10.0.0.5:11211]``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Literal

_services: list[Service] = []
_service_names: set[str] = set()
_batch_reads: dict[str, str] = {}  # service name -> its many-keys-in-one-round-trip read
_lock = threading.Lock()


def format_server(server: object) -> str:
    """``("10.0.0.5", 11211)`` -> ``10.0.0.5:11211``; IPv6 in brackets; a socket path as is."""
    if isinstance(server, tuple) and len(server) == 2:
        host, port = server
        host = str(host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{port}"
    return str(server)


class ServerTarget:
    """One server of a service, as an event's target; ``str()`` is what the listing shows."""

    __slots__ = ("service", "address")

    def __init__(self, service: Service, address: Hashable) -> None:
        self.service = service
        self.address = address

    def __str__(self) -> str:
        return self.service.name_of(self.address)

    def __repr__(self) -> str:
        return f"<ServerTarget {self}>"


class Service:
    """The servers one integration talks to, and how their targets are named.

    ``address``: ``"always"`` shows the server after the name (``redis 10.0.0.5:6379/0``);
    ``"when_many"`` shows it only once the process has talked to more than one server
    of this service (``memcache``, then ``memcache 10.0.0.5:11211``).
    ``describe``: the address as text (default: ``host:port``, or a socket path as is).
    ``batch_read``: the call that reads many keys in one round trip (``get_many``, ``MGET``),
    named where single-key reads of one server could have been one.
    """

    def __init__(
        self,
        name: str,
        address: Literal["always", "when_many"] = "always",
        describe: Callable[[Hashable], str] = format_server,
        batch_read: str | None = None,
    ) -> None:
        if not name or " " in name:
            raise ValueError(f"a service name is one word, not {name!r}")
        if address not in ("always", "when_many"):
            raise ValueError(f"address= takes 'always' or 'when_many', not {address!r}")
        self.name = name
        self.address = address
        self.describe = describe
        # address -> target, the same dict for the service's life: hot paths read it before
        # calling target() (``service.targets.get(a) or service.target(a)``)
        self.targets: dict[Hashable, ServerTarget] = {}
        with _lock:
            _services.append(self)
            _service_names.add(name)
            if batch_read:
                _batch_reads[name] = batch_read

    def target(self, address: Hashable) -> ServerTarget:
        """The target for the server at ``address`` (the same object for the same address)."""
        target = self.targets.get(address)
        if target is None:
            target = self.targets.setdefault(address, ServerTarget(self, address))
        return target

    def name_of(self, address: Hashable) -> str:
        if self.address == "when_many" and len(self.targets) < 2:
            return self.name
        return f"{self.name} {self.describe(address)}"

    def forget(self) -> None:
        self.targets.clear()


def forget_servers() -> None:
    """Forget the servers every service has seen (tests start from a clean slate)."""
    with _lock:
        for service in _services:
            service.forget()


def target_matches(target: str, wanted: str) -> bool:
    """``wanted`` names ``target``: the same name, or the name of a service and ``target``
    one of its servers (``"memcache"`` names ``memcache 10.0.0.5:11211``; ``"dbshard01"``
    does not name ``dbshard01 replica``)."""
    if target == wanted:
        return True
    return wanted in _service_names and target.startswith(wanted + " ")


def service_of(target: str) -> str:
    """The service part of a server's target: ``redis 10.0.0.5:6379/0`` -> ``redis``."""
    return target.split(" ", 1)[0]


def batch_read_of(target: str) -> str:
    """The read that takes many keys in one round trip on ``target``'s service:
    ``memcache 10.0.0.5:11211`` -> ``get_many``; ``a multi-key read`` when not told."""
    return _batch_reads.get(service_of(target), "a multi-key read")
