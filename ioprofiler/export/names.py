"""Metric names that are safe to send and few enough to store.

A name part (a route, a target) keeps letters, digits and ``_``; anything else becomes
``_``, so no SQL, key, id or path separator can reach a metric name:

>>> safe_part("/listing/<int:id>")
'listing_int_id'
>>> safe_part("memcache 10.0.0.5:11211")
'memcache_10_0_0_5_11211'

A target is named by itself alone, never by what else the process has seen: a server of a
service always carries its address, where the listing says ``memcache`` until a second
server appears (a series must not be renamed mid-process):

>>> target_name(MEMCACHE.target(("10.0.0.5", 11211)))
'memcache 10.0.0.5:11211'

A :class:`NameBudget` bounds how many distinct parts a field may take; past the bound,
new ones are reported as ``other`` (and a warning is logged once):

>>> routes = NameBudget("route", limit=2)
>>> [routes.name(r) for r in ("home", "cart", "search", "home")]
['home', 'cart', 'other', 'home']
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterable

from ioprofiler.targets import ServerTarget

log = logging.getLogger("ioprofiler")

OTHER = "other"
UNKNOWN = "unknown"
MAX_PART = 64
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_]+")
_PREFIX = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_:./-]{0,199}$")


def safe_part(raw: object) -> str:
    """One dot-free name part: unsafe runs become ``_``, at most 64 characters."""
    text = _UNSAFE_RUN.sub("_", str(raw)).strip("_")[:MAX_PART].rstrip("_")
    return text or UNKNOWN


def target_name(raw: object) -> str:
    """An event's target (``event._target``) as metrics name it: a shard's name, or a
    server's service and address."""
    if isinstance(raw, ServerTarget):
        return f"{raw.service.name} {raw.service.describe(raw.address)}"
    return str(raw)


def with_host(prefix: object) -> object:
    """``shop.{host}`` -> ``shop.web_01_example_com``: this machine's host name as one part."""
    if isinstance(prefix, str) and "{host}" in prefix:
        return prefix.replace("{host}", safe_part(socket.gethostname()))
    return prefix


def check_tags(tags: Iterable[object]) -> tuple[str, ...]:
    """Constant DogStatsD tags such as ``env:prod``, or a clear ValueError."""
    checked = tuple(tags)
    for tag in checked:
        if not isinstance(tag, str) or not _TAG.match(tag):
            raise ValueError(
                "each tag must be a letter then letters, digits and '_:./-' (like "
                f"'env:prod'), at most 200 characters, not {tag!r}"
            )
    return checked


def check_prefix(prefix: object) -> str:
    """A metric prefix such as ``ioprofiler`` or ``shop.web``, or a clear ValueError."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(
            "prefix must be dotted parts of letters, digits and '_' (like 'ioprofiler' or "
            f"'shop.web'), not {prefix!r}"
        )
    return prefix


class NameBudget:
    """Safe names for one field (routes, targets), at most ``limit`` distinct ones."""

    def __init__(self, field: str, limit: int) -> None:
        self.field = field
        self.limit = limit
        self._names: dict[object, str] = {}
        self._distinct: set[str] = set()
        self._warned = False
        self._lock = threading.Lock()

    def name(self, raw: object) -> str:
        """The safe name for ``raw``; ``other`` once ``limit`` distinct names are taken."""
        known = self._names.get(raw)
        if known is not None:
            return known
        with self._lock:
            name = safe_part(raw)
            if name not in self._distinct:
                if len(self._distinct) >= self.limit:
                    name = OTHER
                    self._warn(raw)
                else:
                    self._distinct.add(name)
            if len(self._names) < 4 * self.limit:  # remember raw spellings, boundedly
                self._names[raw] = name
            return name

    def _warn(self, raw: object) -> None:
        if self._warned:
            return
        self._warned = True
        log.warning(
            "ioprofiler: more than %d distinct %s names; %r and later new ones are "
            "reported as %r (raise max_names, or name %ss by template)",
            self.limit,
            self.field,
            safe_part(raw),
            OTHER,
            self.field,
        )
