"""Metric lines into UDP datagrams: packed up to a safe size, sent without blocking.

>>> pack(["a:1|c", "b:2|c"], max_bytes=1432)
[b'a:1|c\\nb:2|c']
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable

log = logging.getLogger("ioprofiler")

# Fits an Ethernet MTU (1500) less IPv6 (40) and UDP (8) headers, with room for tunnels.
SAFE_PACKET = 1432
RESOLVE_EVERY = 60.0  # seconds between lookups of the daemon's host name


def pack(lines: Iterable[str], max_bytes: int = SAFE_PACKET) -> list[bytes]:
    """Newline-joined datagrams of whole lines, each at most ``max_bytes`` long.
    A single line longer than that is dropped (a metric is never cut in two)."""
    packets: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode("ascii", "replace")
        if len(data) > max_bytes:
            log.debug("ioprofiler: a metric line of %d bytes was dropped", len(data))
            continue
        added = len(data) + (1 if current else 0)
        if size + added > max_bytes:
            packets.append(b"\n".join(current))
            current, size = [], 0
            added = len(data)
        current.append(data)
        size += added
    if current:
        packets.append(b"\n".join(current))
    return packets


class UDPSender:
    """A non-blocking UDP socket to one host; datagrams it cannot send are counted.

    The host's address is looked up when the sender is made (a name that does not resolve
    is a ValueError then), and again by :meth:`refresh` every ``resolve_every`` seconds and
    after a send fails for any reason but a full buffer, so a daemon that moves (a new
    container, a DNS change) is found again. A lookup that fails keeps the last address.
    """

    def __init__(self, host: str, port: int, resolve_every: float = RESOLVE_EVERY) -> None:
        self.host = host
        self.port = port
        self.resolve_every = resolve_every
        self._socket: socket.socket | None = None
        self._use(self._look_up())
        self.sent = 0
        self.dropped = 0

    def _look_up(self) -> tuple:
        try:
            return socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"cannot resolve the StatsD host {self.host!r}: {exc}") from exc

    def _use(self, info: tuple) -> None:
        family, kind, proto, _, address = info
        if self._socket is None or self._socket.family != family:
            new = socket.socket(family, kind, proto)
            new.setblocking(False)
            if self._socket is not None:
                self._socket.close()
            self._socket = new
        self.address = address
        self._looked_up_at = time.monotonic()
        self._stale = False

    def refresh(self) -> None:
        """Look the host up again if it is due; call it where sending happens, never on
        a request's thread (a lookup may wait on DNS)."""
        if not self._stale and time.monotonic() - self._looked_up_at < self.resolve_every:
            return
        try:
            info = self._look_up()
        except ValueError as exc:
            log.debug("ioprofiler: %s; sending to %s still", exc, self.address)
            self._looked_up_at, self._stale = time.monotonic(), False
            return
        self._use(info)

    def send(self, packet: bytes) -> bool:
        """Send one datagram now or drop it (full buffer, no route, refused); never raises."""
        assert self._socket is not None
        try:
            self._socket.sendto(packet, self.address)
        except BlockingIOError:  # the buffer is full: the address is not to blame
            self.dropped += 1
            return False
        except OSError:  # refused, no route, a bad address: look the host up again
            self.dropped += 1
            self._stale = True
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
