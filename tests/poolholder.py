"""Another thread holds a pool's only connection, so that a checkout has to wait."""

from __future__ import annotations

import threading
import time
from time import perf_counter_ns

HOLD_S = 0.3


class PoolHolder:
    """Holds ``engine``'s only connection from :meth:`go` for ``seconds``, then returns it.

    >>> with PoolHolder(engine) as holder:
    ...     holder.go()
    ...     engine.connect()            # waits about 0.3 s
    >>> holder.assert_waited_for(wait_event)
    """

    def __init__(self, engine, seconds: float = HOLD_S) -> None:
        self.engine = engine
        self.seconds = seconds
        self.go_ns = self.released_ns = 0
        self._held = threading.Event()
        self._go = threading.Event()
        self._thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            self._held.set()
            self._go.wait(10)
            time.sleep(self.seconds)
            self.released_ns = perf_counter_ns()

    def __enter__(self) -> PoolHolder:
        self._thread.start()
        assert self._held.wait(10), "the holder never got the connection"
        return self

    def go(self) -> None:
        """Start the hold's clock; call it just before the checkout that should wait."""
        self.go_ns = perf_counter_ns()
        self._go.set()

    def __exit__(self, *exc_info: object) -> None:
        self._go.set()
        self._thread.join(10)

    def assert_waited_for(self, wait) -> None:
        """``wait`` (a POOL WAIT event) lasted until the holder gave the connection back:
        ``seconds`` or more, less the moment between :meth:`go` and the checkout's start."""
        assert wait.end_ns >= self.released_ns >= self.go_ns + self.seconds * 1e9
        assert wait.duration_ms >= self.seconds * 1000 - (wait.start_ns - self.go_ns) / 1e6
