"""Differences between the psycopg versions ferropool supports (>= 3.1)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as e

PSYCOPG_VERSION = tuple(int(p) for p in psycopg.__version__.split(".")[:2])

# psycopg >= 3.3 Connection.close() gives a pooled connection back to its
# pool when the pool has close_returns set; older versions need a subclass.
if PSYCOPG_VERSION >= (3, 3):
    PoolConnection: type[psycopg.Connection[Any]] = psycopg.Connection
    AsyncPoolConnection: type[psycopg.AsyncConnection[Any]] = psycopg.AsyncConnection
else:

    class _PoolConnection(psycopg.Connection[Any]):
        """A connection whose close() returns it to its pool, if it has one."""

        def close(self) -> None:
            pool = getattr(self, "_pool", None)
            if pool is not None:
                pool.putconn(self)
            else:
                super().close()

    class _AsyncPoolConnection(psycopg.AsyncConnection[Any]):
        """An async connection whose close() returns it to its pool."""

        async def close(self) -> None:
            pool = getattr(self, "_pool", None)
            if pool is not None:
                await pool.putconn(self)
            else:
                await super().close()

    PoolConnection = _PoolConnection
    AsyncPoolConnection = _AsyncPoolConnection

ConnectionTimeout: type[e.OperationalError] = getattr(e, "ConnectionTimeout", e.OperationalError)
