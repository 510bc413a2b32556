"""Text the profiler writes into HTTP headers, made safe whatever the application named.

Shard labels, database names from engine URLs and server names reach ``Server-Timing``.
Names go out as HTTP tokens, descriptions as RFC 8941 strings: printable ASCII only, control and
non-ASCII characters written as escapes (``\\r``, ``\\x1b``, ``\\u00e9``), quotes and
backslashes escaped, length bounded. No value can end a header line or start another.

>>> sf_string('shard\\r\\nSet-Cookie: x="1"')
'"shard\\\\r\\\\nSet-Cookie: x=\\\\"1\\\\""'
>>> http_token("db-shard 01")
'db-shard_01'
"""

from __future__ import annotations

import re

from ioprofiler.sql_text import visible

MAX_STRING = 100  # characters of a description's text, before escaping
MAX_TOKEN = 64
_PIECE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[nrt\\])|.", re.S)
_NOT_TCHAR = re.compile(r"[^A-Za-z0-9!#$%&'*+.^_`|~-]")


def sf_string(text: str, limit: int = MAX_STRING) -> str:
    """``text`` as an RFC 8941 sf-string (quotes included), at most ``limit`` characters of
    escaped text, cut with ``...``."""
    text = visible(text).encode("ascii", "backslashreplace").decode("ascii")
    if len(text) > limit:
        kept, size = [], 0
        for piece in _PIECE.findall(text):  # never cut an escape in two
            size += len(piece)
            if size > limit - 3:
                break
            kept.append(piece)
        text = "".join(kept) + "..."
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def http_token(text: str, limit: int = MAX_TOKEN) -> str:
    """``text`` as an HTTP token (a Server-Timing metric name): every character a token may
    not hold becomes ``_``; at most ``limit`` long."""
    return _NOT_TCHAR.sub("_", text)[:limit] or "_"
