"""What a cache call did, in the listing's words: ``Cache HIT 2/3, keys: a, b, c (missed: c)``."""

from __future__ import annotations

from typing import Any

from ioprofiler.render.sql import visible

MAX_KEYS_SHOWN = 20
_READS = {"get": "", "get_many": "", "gets": "GETS ", "gets_many": "GETS "}
_VERBS = {
    "set": "SET",
    "set_many": "SET",
    "add": "ADD",
    "replace": "REPLACE",
    "append": "APPEND",
    "prepend": "PREPEND",
    "cas": "CAS",
    "delete": "DELETE",
    "delete_many": "DELETE",
    "incr": "INCR",
    "decr": "DECR",
    "touch": "TOUCH",
    "stats": "STATS",
    "cache_memlimit": "CACHE_MEMLIMIT",
    "version": "VERSION",
    "raw_command": "RAW",
    "flush_all": "FLUSH_ALL",
    "quit": "QUIT",
    "shutdown": "SHUTDOWN",
}


def key_text(key: Any) -> str:
    """A key as the application wrote it; bytes decoded, control characters escaped."""
    if isinstance(key, (bytes, bytearray)):
        key = bytes(key).decode("utf-8", "backslashreplace")
    return visible(str(key))


def keys_text(keys: tuple[Any, ...]) -> str:
    shown = ", ".join(key_text(k) for k in keys[:MAX_KEYS_SHOWN])
    if len(keys) > MAX_KEYS_SHOWN:
        shown += f", … (+{len(keys) - MAX_KEYS_SHOWN} more)"
    return shown


def describe(event: Any) -> str:
    """``Cache HIT, keys: k`` for a cache event (without the error suffix)."""
    op = event.op
    keys = event.keys
    if op in _READS:
        prefix = _READS[op]
        if event.hit is None:  # still running
            text = f"Cache {prefix}GET"
        elif op in ("get", "gets"):
            text = f"Cache {prefix}{'HIT' if event.hit else 'MISS'}"
        else:
            hits = event.hit_count
            outcome = "HIT" if hits else "MISS"
            text = f"Cache {prefix}{outcome} {hits}/{len(keys)}"
    else:
        text = f"Cache {_VERBS.get(op, op.upper())}"
    if event.note:
        text += f" ({event.note})"
    if op == "raw_command" and keys:
        return f"{text}, command: {key_text(keys[0])}"
    if keys:
        text += f", keys: {keys_text(keys)}"
        if event.missed_keys and len(keys) > 1:
            text += f" (missed: {keys_text(event.missed_keys)})"
    return text
