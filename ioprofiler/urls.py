"""URLs as they may be shown and kept: no credentials, no query-string values.

>>> redact_url("https://ann:pw@api.example.com/v1/items?id=7&page=2#top")
'https://api.example.com/v1/items?id=?&page=?'
>>> url_shape("/v1/users/42/orders/9f8e7d6c5b4a?limit=?")
'/v1/users/#/orders/#?limit=?'
"""

from __future__ import annotations

import re

_ID_SEGMENT = re.compile(r"(?<=/)(?:\d+|(?=[0-9a-fA-F-]*\d)[0-9a-fA-F-]{8,})(?=/|$|\?)")


def redact_url(url: str) -> str:
    """``url`` without user:password, fragment and the values of its query string.

    Query names stay (``?id=?&page=?``) so the call can still be recognised; a value with no
    name (``?token``) becomes ``?``.
    """
    if "@" in url:
        scheme, sep, rest = url.partition("://")
        if sep:
            authority, slash, path = rest.partition("/")
            url = f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"
    url = url.partition("#")[0]
    path, sep, query = url.partition("?")
    if not sep:
        return path
    names = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        names.append(f"{name}=?" if equals else "?")
    return f"{path}?{'&'.join(names)}"


def url_shape(url: str) -> str:
    """A redacted URL with the ids in its path folded to ``#``: calls to the same endpoint
    for different records have the same shape."""
    path, sep, query = url.partition("?")
    return _ID_SEGMENT.sub("#", path) + sep + query
