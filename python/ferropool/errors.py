"""The pool's exceptions, with psycopg_pool's names and bases.

Each is a ``psycopg.OperationalError``, so code that caught psycopg_pool's
exceptions, or psycopg's OperationalError, keeps working unchanged.
"""

from __future__ import annotations

from psycopg import errors as e


class PoolClosed(e.OperationalError):
    """Attempt to get a connection from a closed pool (or one not open yet)."""

    __module__ = "ferropool"


class PoolTimeout(e.OperationalError):
    """The pool couldn't provide a connection in acceptable time."""

    __module__ = "ferropool"


class TooManyRequests(e.OperationalError):
    """Too many requests in the queue waiting for a connection from the pool."""

    __module__ = "ferropool"


__all__ = ["PoolClosed", "PoolTimeout", "TooManyRequests"]
