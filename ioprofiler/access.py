"""Who may see traces. A rule is a callable that takes the request and says yes or no.

>>> IOProfilerMiddleware(app)                                   # loopback clients only
>>> IOProfilerMiddleware(app, allow=access.networks("10.0.0.0/8", "fd00::/8"))
>>> IOProfilerMiddleware(app, allow=access.any_of(access.loopback(), access.token(secret)))

The client's address is the socket peer (``REMOTE_ADDR``). ``X-Forwarded-For`` is
believed only through the proxies the deployment names in ``trusted_proxies``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request

log = logging.getLogger("ioprofiler")

Rule = Callable[[Request], bool]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TOKEN_HEADER = "X-IOProfiler-Token"
TOKEN_COOKIE = "ioprofiler_token"


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.0/8"``, ``"::1"``, … as networks; a clear error for anything else."""
    if isinstance(cidrs, str):
        cidrs = [cidrs]
    parsed = []
    for cidr in cidrs:
        try:
            parsed.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"not an IP network: {cidr!r} (write it like '10.0.0.0/8' or '2001:db8::/32')"
            ) from None
    return tuple(parsed)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [::1]:8080
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 10.0.0.1:8080
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def client_address(
    environ: dict[str, Any], trusted_proxies: tuple[Network, ...] = ()
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's IP address, or None when it cannot be known.

    Without ``trusted_proxies`` it is the socket peer, unless the request names another
    client (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``): then a proxy that nobody
    said to trust passed it on, perhaps one on this very machine, and the peer's address
    says nothing of the client. Through trusted proxies it is the rightmost
    ``X-Forwarded-For`` hop that is not itself a trusted proxy.
    """
    address = _address(environ.get("REMOTE_ADDR"))
    if address is None:
        return None
    if not trusted_proxies:
        return None if any(environ.get(h) for h in _PROXY_HEADERS) else address
    hops = [h for h in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    while address is not None and any(address in net for net in trusted_proxies):
        if not hops:
            return None  # only proxies: the client is not named
        address = _address(hops.pop())
    return address


def why_refused(environ: dict[str, Any], trusted_proxies: tuple[Network, ...], rule: Rule) -> str:
    """Why ``rule`` refused this request, in words for a debug log."""
    peer = environ.get("REMOTE_ADDR")
    if _address(peer) is None:
        if not peer:
            return "the server gave no client address (REMOTE_ADDR is not set)"
        return f"REMOTE_ADDR {peer!r} is not an IP address"
    if not trusted_proxies:
        proxied = [h[5:].replace("_", "-").title() for h in _PROXY_HEADERS if environ.get(h)]
        if proxied:
            return (
                f"it came through a proxy ({', '.join(proxied)}) and trusted_proxies "
                "is empty, so the client is unknown"
            )
    address = client_address(environ, trusted_proxies)
    if address is None:
        return "it came through trusted proxies only: X-Forwarded-For names no other client"
    return f"client {address} is not allowed by {rule!r}"


class _Rule:
    """A named rule, so that settings print readably (``networks('10.0.0.0/8')``)."""

    def __init__(self, description: str, check: Callable[[Request], bool]) -> None:
        self.description = description
        self._check = check

    def __call__(self, request: Request) -> bool:
        return bool(self._check(request))

    def __repr__(self) -> str:
        return self.description


def _trusted(request: Request) -> tuple[Network, ...]:
    return request.environ.get("ioprofiler.trusted_proxies", ())


def networks(*cidrs: str) -> Rule:
    """Clients whose address lies in one of these networks."""
    parsed = parse_networks(cidrs)
    if not parsed:
        raise ValueError("networks() needs at least one network, like '10.0.0.0/8'")

    def check(request: Request) -> bool:
        address = client_address(request.environ, _trusted(request))
        return address is not None and any(address in net for net in parsed)

    return _Rule(f"networks({', '.join(repr(str(n)) for n in parsed)})", check)


def loopback() -> Rule:
    """Clients on this machine (127.0.0.0/8 and ::1). The default."""
    return _Rule("loopback()", networks("127.0.0.0/8", "::1/128"))


def token(secret: str, header: str = TOKEN_HEADER, cookie: str = TOKEN_COOKIE) -> Rule:
    """Clients that send ``secret`` in the header ``X-IOProfiler-Token`` or the cookie
    ``ioprofiler_token``; compared in constant time."""
    if not isinstance(secret, str) or len(secret) < 16:
        raise ValueError("token() needs a secret string of at least 16 characters")
    expected = secret.encode()

    def check(request: Request) -> bool:
        for sent in (request.headers.get(header), request.cookies.get(cookie)):
            if sent is not None and hmac.compare_digest(sent.encode(), expected):
                return True
        return False

    return _Rule(f"token(header={header!r}, cookie={cookie!r})", check)


def any_of(*rules: Rule) -> Rule:
    """Allowed when any of the rules allows."""
    if not rules or not all(callable(rule) for rule in rules):
        raise TypeError("any_of() takes one or more rules, like any_of(loopback(), token(s))")
    return _Rule(
        f"any_of({', '.join(map(repr, rules))})", lambda request: any(r(request) for r in rules)
    )


def everyone() -> Rule:
    """Every client. Logs a warning: anyone can then read your SQL and cache keys."""
    log.warning(
        "ioprofiler: every client may see traces (allow=everyone()); "
        "do not use this on a server the public can reach"
    )
    return _Rule("everyone()", lambda request: True)
