"""Metric lines into UDP datagrams: packed up to a safe size, sent without blocking.

>>> pack(["a:1|c", "b:2|c"], max_bytes=1432)
[b'a:1|c\\nb:2|c']
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable

log = logging.getLogger("ioprofiler")

# Fits an Ethernet MTU (1500) less IPv6 (40) and UDP (8) headers, with room for tunnels.
SAFE_PACKET = 1432


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
    """A non-blocking UDP socket to one address; datagrams it cannot send are counted."""

    def __init__(self, host: str, port: int) -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"cannot resolve the StatsD host {host!r}: {exc}") from exc
        family, kind, proto, _, address = infos[0]
        self.address = address
        self._socket = socket.socket(family, kind, proto)
        self._socket.setblocking(False)
        self.sent = 0
        self.dropped = 0

    def send(self, packet: bytes) -> bool:
        """Send one datagram now or drop it (full buffer, no route, refused); never raises."""
        try:
            self._socket.sendto(packet, self.address)
        except OSError:  # BlockingIOError, ConnectionRefusedError, no buffer space
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._socket.close()
