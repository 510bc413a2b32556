"""What a cache call did, in the listing's words: ``Cache HIT 2/3, keys: a, b, c (missed: c)``."""

from __future__ import annotations

from typing import Any

from ioprofiler.sql_text import visible

MAX_KEYS_SHOWN = 20
_READS = {
    "get": "",
    "get_many": "",
    "gets": "GETS ",
    "gets_many": "GETS ",
    "mget": "",
    "hget": "HGET ",
    "hmget": "HMGET ",
    "exists": "EXISTS ",
}
_BATCHES = {"pipeline": "PIPELINE", "transaction": "MULTI/EXEC"}
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
    """A key as the application wrote it; bytes decoded, control characters escaped.
    A (hash, field) pair reads ``hash field``."""
    if isinstance(key, tuple):
        return " ".join(key_text(part) for part in key)
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
        if event.hit is None:  # still running, or failed
            text = f"Cache {prefix.strip() or 'GET'}"
        elif not op.endswith("_many") and len(keys) == 1:
            text = f"Cache {prefix}{'HIT' if event.hit else 'MISS'}"
        else:
            hits = event.hit_count
            outcome = "HIT" if hits else "MISS"
            text = f"Cache {prefix}{outcome} {hits}/{len(keys)}"
    elif op in _BATCHES:
        return _batch(_BATCHES[op], event.params or ())
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


def _batch(verb: str, commands: tuple[tuple[str, tuple[Any, ...]], ...]) -> str:
    """``PIPELINE 3 commands: GET a, SET b, HGET c f``: each command with its keys."""
    shown = []
    for name, keys in commands[:MAX_KEYS_SHOWN]:
        shown.append(f"{visible(name)} {keys_text(keys)}" if keys else visible(name))
    if len(commands) > MAX_KEYS_SHOWN:
        shown.append(f"… (+{len(commands) - MAX_KEYS_SHOWN} more)")
    count = len(commands)
    return f"{verb} {count} command{'' if count == 1 else 's'}: {', '.join(shown)}"
