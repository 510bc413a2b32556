"""PostgreSQL's own count of the statements one session ran: its statement log.

PostgreSQL 15 has no exact per-statement counter without ``pg_stat_statements``, which
needs ``shared_preload_libraries`` (a server restart); the ``pg_stat_get_xact_*``
functions count rows and scans, not statements. With ``log_statement = 'all'`` (set per
session by a superuser) the server logs every statement it runs, one ``statement:`` line
per simple query and one ``execute …:`` line per extended-protocol execution, each of
an ``executemany`` pipeline's rows included: an exact count. The test reads the log
through ``pg_read_file`` (the server's own file access), from where it ended before the
workload, keeping only the lines of the measured session's backend process.
"""

from __future__ import annotations

import os
import re
import time

import pytest

URL = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
_LINE = re.compile(r"\[(\d+)\] \S* ?LOG:  (?:statement|execute [^:]*): (.*)")


def admin_or_skip():
    """An autocommit superuser connection to ``test``, or skip (fail under CI's flag)."""
    import psycopg

    try:
        return psycopg.connect(URL, autocommit=True)
    except Exception as exc:
        reason = f"PostgreSQL at 127.0.0.1:5432 (db test, trust) is not answering: {exc}"
        if os.environ.get("IOPROFILER_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (IOPROFILER_REQUIRE_POSTGRES=1 makes this a failure)")
        pytest.skip(reason)


class StatementLog:
    """The statements one backend ran, read from the server's log."""

    def __init__(self, admin) -> None:
        self.admin = admin
        self.path = self._find_path()

    def _find_path(self) -> str:
        current = self.admin.execute("SELECT pg_current_logfile()").fetchone()[0]
        if current:
            return current
        major = self.admin.info.server_version // 10000
        path = f"/var/log/postgresql/postgresql-{major}-main.log"  # Debian, no log collector
        try:
            self.admin.execute("SELECT size FROM pg_stat_file(%s)", (path,)).fetchone()
        except Exception as exc:
            pytest.skip(f"the server's statement log is not readable here ({path}): {exc}")
        return path

    def end(self) -> int:
        return self.admin.execute("SELECT size FROM pg_stat_file(%s)", (self.path,)).fetchone()[0]

    def statements(self, pid: int, since: int, expected: int | None = None) -> list[str]:
        """The statements backend ``pid`` ran, logged after offset ``since``. Waits a little
        for ``expected`` of them: another process writes the log."""
        for _ in range(50):
            length = self.end() - since
            text = self.admin.execute(
                "SELECT pg_read_file(%s, %s, %s)", (self.path, since, length)
            ).fetchone()[0]
            found = [
                " ".join(m.group(2).split()) for m in _LINE.finditer(text) if int(m.group(1)) == pid
            ]
            if expected is None or len(found) >= expected:
                return found
            time.sleep(0.05)
        return found


def log_all(connection) -> None:
    """Log every statement this session runs (sent before the measured workload)."""
    connection.execute("SET log_statement = 'all'")
    if not connection.autocommit:
        connection.commit()
