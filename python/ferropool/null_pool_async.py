"""AsyncNullConnectionPool: psycopg_pool's async pool that keeps no idle
connections.

Each request opens its own connection (on the requesting task) when there
is capacity, and it is closed when returned unless a queued request takes it
over; max_size bounds how many exist at once (0: no bound).
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

from . import _config, _core
from ._base import null_pool_init
from ._maintenance_async import close_quietly_async
from .errors import PoolClosed
from .pool_async import ACT, AsyncConnectionPool


class AsyncNullConnectionPool(AsyncConnectionPool[ACT]):
    """An async pool that opens a connection per request: psycopg_pool's API."""

    _null = True

    __init__ = null_pool_init(AsyncConnectionPool.__init__)

    async def _got(self, got: Any, deadline: float) -> Any:
        if not isinstance(got, _core.Ticket):
            return got
        # Spare capacity: this request opens its own connection.
        t0 = monotonic()
        try:
            conn = await self._connect(timeout=deadline - t0)
        except BaseException as ex:
            raise self._caller_connect_failed(got, ex) from None
        if not self._core.connected_to_caller(got, conn, monotonic() - t0):
            await close_quietly_async(conn)
            raise PoolClosed(f"the pool {self.name!r} is already closed")
        return conn

    async def wait(self, timeout: float = 30.0) -> None:
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
                conn = await self._connect(timeout=deadline - monotonic())
            except Exception as ex:
                last = self._describe(ex)
                left = deadline - monotonic()
                if left <= 0:
                    await self.close()
                    raise self._init_timeout(timeout, last) from None
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
            else:
                await close_quietly_async(conn)
                return

    async def check(self) -> None:
        """Nothing to check: the pool keeps no connections."""
