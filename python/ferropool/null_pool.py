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
from ._compat import ConnectionTimeout
from ._maintenance import close_quietly
from .errors import PoolClosed, PoolTimeout
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
            conn = self._connect(timeout=max(deadline - t0, 0.0) or None)
        except ConnectionTimeout as ex:
            self._core.connect_failed_caller(got, self._describe(ex))
            raise PoolTimeout(self._describe(ex)) from None
        except BaseException as ex:
            self._core.connect_failed_caller(got, self._describe(ex))
            raise self._scrubbed(ex) from None
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
        last = ""
        while True:
            try:
                conn = self._connect(timeout=max(deadline - monotonic(), 0.0) or None)
            except Exception as ex:
                last = self._describe(ex)
                left = deadline - monotonic()
                if left <= 0:
                    self.close()
                    raise PoolTimeout(
                        f"pool initialization incomplete after {timeout} sec;"
                        f" last connection error: {last}"
                    ) from None
                sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
            else:
                close_quietly(conn)
                return

    def check(self) -> None:
        """Nothing to check: the pool keeps no connections."""
