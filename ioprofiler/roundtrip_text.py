"""What a connection op did, in the listing's words.

>>> describe_op("pool_wait", ("QueuePool", 5, 15, 10, 10, 30.0))
'POOL WAIT (QueuePool: 5 of 5 in use, overflow 10/10, timeout 30 s)'
>>> describe_op("connect", ("root", "10.0.0.5", 3306, "dbshard01"))
'CONNECT root@10.0.0.5:3306/dbshard01'
>>> describe_op("rollback", True)
'ROLLBACK (connection returned to the pool)'
>>> describe_op("ping", None)
'PING (pool pre-ping)'
>>> describe_op("reset", "UNWATCH")
'UNWATCH (pipeline reset)'
"""

from __future__ import annotations

from typing import Any

from ioprofiler.sql_text import visible

_WORDS = {
    "begin": "BEGIN",
    "commit": "COMMIT",
    "rollback": "ROLLBACK",
    "begin_twophase": "BEGIN TWO-PHASE",
    "prepare_twophase": "PREPARE TWO-PHASE",
    "commit_twophase": "COMMIT TWO-PHASE",
    "rollback_twophase": "ROLLBACK TWO-PHASE",
    "recover_twophase": "RECOVER TWO-PHASE",
    "ping": "PING (pool pre-ping)",
}


def describe_op(op: str, detail: Any) -> str:
    """The text after the duration for a connect, a pool wait or a transaction end."""
    if op == "connect":
        address = connect_text(detail)
        return f"CONNECT {address}" if address else "CONNECT"
    if op == "pool_wait":
        return f"POOL WAIT ({pool_text(detail)})" if detail else "POOL WAIT"
    if op == "reset":  # redis-py's pipeline reset: the command it sent
        return f"{detail or 'RESET'} (pipeline reset)"
    text = _WORDS.get(op, op.upper())
    if detail is True:
        text += " (connection returned to the pool)"
    return text


def connect_text(detail: Any) -> str:
    """``user@host:port/database``, the parts known; a SQLite file as its path."""
    if not detail:
        return ""
    user, host, port, database = detail
    text = ""
    if host:
        host = str(host)
        if ":" in host and not host.startswith(("[", "/")):
            host = f"[{host}]"
        text = host if port is None else f"{host}:{port}"
        if user:
            text = f"{user}@{text}"
    elif user:
        text = f"{user}@"
    if database:
        text = f"{text}/{database}" if text else str(database)
    return visible(text)


def pool_text(detail: Any) -> str:
    """``QueuePool: 5 of 5 in use, overflow 10/10, timeout 30 s``."""
    kind, size, checked_out, overflow, max_overflow, timeout = detail
    in_pool = min(checked_out, size)
    return (
        f"{kind}: {in_pool} of {size} in use, overflow {overflow}/{max_overflow}, "
        f"timeout {timeout:g} s"
    )


# Summaries list connection ops in this order (the usual answer first), in these words.
_NOUNS = {
    "pool_wait": ("pool wait", "pool waits"),
    "connect": ("connect", "connects"),
    "begin": ("begin", "begins"),
    "commit": ("commit", "commits"),
    "rollback": ("rollback", "rollbacks"),
    "begin_twophase": ("two-phase begin", "two-phase begins"),
    "prepare_twophase": ("two-phase prepare", "two-phase prepares"),
    "commit_twophase": ("two-phase commit", "two-phase commits"),
    "rollback_twophase": ("two-phase rollback", "two-phase rollbacks"),
    "recover_twophase": ("two-phase recover", "two-phase recovers"),
    "setup": ("connection set-up", "connection set-ups"),
    "ping": ("ping", "pings"),
    "reset": ("reset", "resets"),
}


def op_count(op: str, count: int) -> str:
    """``1 pool wait``, ``3 commits``."""
    one, many = _NOUNS.get(op, (op, op + "s"))
    return f"{count} {one if count == 1 else many}"


def ordered_ops(ops: dict[str, Any]) -> list[tuple[str, Any]]:
    """``ops`` (op -> totals) in the order summaries list them."""
    order = list(_NOUNS)
    return sorted(ops.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99)


def detail_fields(op: str, detail: Any) -> dict[str, Any] | None:
    """An op's raw facts as named fields (the JSON schema's ``detail``); None for others."""
    if not detail:
        return None
    if op == "connect":
        user, host, port, database = detail
        return {"user": user, "host": host, "port": port, "database": database}
    if op == "pool_wait":
        pool, size, checked_out, overflow, max_overflow, timeout = detail
        return {
            "pool": pool,
            "size": size,
            "checked_out": checked_out,
            "overflow": overflow,
            "max_overflow": max_overflow,
            "timeout_s": timeout,
        }
    if detail is True:
        return {"returned_to_pool": True}
    return None


def ops_fields(ops: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"pool_wait": {"count": 1, "ms": 300.1, "errors": 0}, …}``, in summary order."""
    return {
        op: {"count": t.count, "ms": round(t.ms, 6), "errors": t.errors}
        for op, t in ordered_ops(ops)
    }
