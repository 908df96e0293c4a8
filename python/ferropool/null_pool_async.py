"""AsyncNullConnectionPool: psycopg_pool's async pool that keeps no idle
connections. The sync NullConnectionPool is generated from it.

Every request gets a new connection, opened by the requesting task when
there is capacity, and it is closed when returned unless a queued request
takes it over; ``max_size`` bounds how many exist at once (0: no bound), so
the pool still throttles a burst. The core does the counting and the FIFO
handoff as for a full pool; `wait()` opens (and closes) one connection on a
worker, as psycopg_pool's does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .pool_async import ACT, AsyncConnectionPool
from .runner.settings import null_pool_init


class AsyncNullConnectionPool(AsyncConnectionPool[ACT]):
    """A pool that opens a connection per request: psycopg_pool's API."""

    _null = True

    if not TYPE_CHECKING:
        # To type checkers the parent's (generic) __init__; at run time the
        # same with min_size defaulting to 0.
        __init__ = null_pool_init(AsyncConnectionPool.__init__)

    async def check(self) -> None:
        """Nothing to check: the pool keeps no connections."""
