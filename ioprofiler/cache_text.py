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
# Ops of a batch of commands: its keys are every command's, written or read.
BATCH_OPS = frozenset(_BATCHES)
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
            text = f"Cache {prefix}{_outcome(event)}"
    elif op in _BATCHES:
        text = _batch(_BATCHES[op], event.params or ())
        if event.hit is not None:
            text += f"; reads {_outcome(event)}{_missed(event)}"
        return text
    else:
        text = f"Cache {_VERBS.get(op, op.upper())}"
    if event.note:
        text += f" ({event.note})"
    if op == "raw_command" and keys:
        return f"{text}, command: {key_text(keys[0])}"
    if keys:
        text += f", keys: {keys_text(keys)}"
        if len(keys) > 1:
            text += _missed(event)
    return text


def _outcome(event: Any) -> str:
    """``HIT 2/3``: keys found out of keys looked up."""
    hits = event.hit_count or 0
    return f"{'HIT' if hits else 'MISS'} {hits}/{hits + (event.miss_count or 0)}"


def _missed(event: Any) -> str:
    """`` (missed: c)``; misses the reply counted without naming them are counted instead
    (`` (missed: c and 1 unnamed)``: a multi-key EXISTS tells how many keys exist, not which)."""
    named = event.missed_keys or ()
    unnamed = (event.miss_count or 0) - len(named)
    if unnamed > 0:
        count = f"{unnamed} unnamed"
        return f" (missed: {keys_text(named)} and {count})" if named else f" (missed: {count})"
    return f" (missed: {keys_text(named)})" if named else ""


def _batch(verb: str, commands: tuple[tuple[str, tuple[Any, ...]], ...]) -> str:
    """``PIPELINE 3 commands: GET a, SET b, HGET c f``: each command with its keys."""
    shown = []
    for name, keys in commands[:MAX_KEYS_SHOWN]:
        shown.append(f"{visible(name)} {keys_text(keys)}" if keys else visible(name))
    if len(commands) > MAX_KEYS_SHOWN:
        shown.append(f"… (+{len(commands) - MAX_KEYS_SHOWN} more)")
    count = len(commands)
    return f"{verb} {count} command{'' if count == 1 else 's'}: {', '.join(shown)}"
