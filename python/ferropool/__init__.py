"""ferropool: a PostgreSQL connection pool with a lock-free Rust core.

A drop-in for psycopg_pool: ``from ferropool import ConnectionPool``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import PoolClosed, PoolTimeout, TooManyRequests
from .null_pool import NullConnectionPool
from .null_pool_async import AsyncNullConnectionPool
from .pool import ConnectionPool
from .pool_async import AsyncConnectionPool
from .routing import RoutingPool
from .routing_async import AsyncRoutingPool

try:
    __version__ = version("ferropool")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AsyncConnectionPool",
    "AsyncNullConnectionPool",
    "AsyncRoutingPool",
    "ConnectionPool",
    "NullConnectionPool",
    "PoolClosed",
    "PoolTimeout",
    "RoutingPool",
    "TooManyRequests",
    "__version__",
]
