"""NullConnectionPool: psycopg_pool's pool that keeps no idle connections.

Every request gets a new connection, opened on the requesting thread, and
it is closed when returned unless a queued request takes it over. max_size
bounds how many exist at once (0: no bound), so the pool still throttles a
burst; the core does the counting and the FIFO handoff as for a full pool.
"""

from __future__ import annotations

from time import monotonic, sleep
from typing import Any

from . import _config, _core
from ._base import null_pool_init
from ._maintenance import close_quietly
from .errors import PoolClosed
from .pool import CT, ConnectionPool


class NullConnectionPool(ConnectionPool[CT]):
    """A pool that opens a connection per request: psycopg_pool's API."""

    _null = True

    __init__ = null_pool_init(ConnectionPool.__init__)

    def _take(self, deadline: float) -> Any:
        got = self._core.wait(deadline - monotonic())
        if not isinstance(got, _core.Ticket):
            return got
        # Spare capacity: this request opens its own connection.
        t0 = monotonic()
        try:
            conn = self._connect(timeout=deadline - t0)
        except BaseException as ex:
            raise self._caller_connect_failed(got, ex) from None
        if not self._core.connected_to_caller(got, conn, monotonic() - t0):
            close_quietly(conn)
            raise PoolClosed(f"the pool {self.name!r} is already closed")
        return conn

    def wait(self, timeout: float = 30.0) -> None:
        """Open (and close) one connection to prove the server is reachable.

        Close the pool and raise PoolTimeout if that fails for *timeout*
        seconds.
        """
        timeout = _config.seconds("timeout", timeout)
        self._check_open_getconn()
        deadline = monotonic() + timeout
        delay = 0.05
        while True:
            try:
                conn = self._connect(timeout=deadline - monotonic())
            except Exception as ex:
                last = self._describe(ex)
                left = deadline - monotonic()
                if left <= 0:
                    self.close()
                    raise self._init_timeout(timeout, last) from None
                sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
            else:
                close_quietly(conn)
                return

    def check(self) -> None:
        """Nothing to check: the pool keeps no connections."""
