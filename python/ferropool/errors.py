"""The pool's exceptions, with psycopg_pool's names and bases.

Each is a ``psycopg.OperationalError``, so code that caught psycopg's
OperationalError keeps working unchanged. When psycopg_pool is installed,
each is also a subclass of psycopg_pool's exception of the same name, so
code written for psycopg_pool (``except psycopg_pool.PoolTimeout``, as
Django's own pool tests do) catches ferropool's errors too. ``except``
matches on the class hierarchy, which is fixed when a class is defined: hence
psycopg_pool is imported here, once, if it can be (a few milliseconds).
Without it, nothing changes. This module must never require psycopg_pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg import errors as e

__all__ = ["PoolClosed", "PoolTimeout", "TooManyRequests"]


def _psycopg_pool_base(name: str) -> type[e.OperationalError]:
    """psycopg_pool's exception *name* if psycopg_pool imports and has it,
    else psycopg's OperationalError."""
    try:
        import psycopg_pool
    except Exception:  # not installed, blocked, or broken: none of ours to fix
        return e.OperationalError
    base = getattr(psycopg_pool, name, None)
    if isinstance(base, type) and issubclass(base, e.OperationalError):
        return base
    return e.OperationalError


if TYPE_CHECKING:
    _PoolClosedBase = e.OperationalError
    _PoolTimeoutBase = e.OperationalError
    _TooManyRequestsBase = e.OperationalError
else:
    _PoolClosedBase = _psycopg_pool_base("PoolClosed")
    _PoolTimeoutBase = _psycopg_pool_base("PoolTimeout")
    _TooManyRequestsBase = _psycopg_pool_base("TooManyRequests")


class PoolClosed(_PoolClosedBase):
    """Attempt to get a connection from a closed pool (or one not open yet)."""

    __module__ = "ferropool"


class PoolTimeout(_PoolTimeoutBase):
    """The pool couldn't provide a connection in acceptable time."""

    __module__ = "ferropool"


class TooManyRequests(_TooManyRequestsBase):
    """Too many requests in the queue waiting for a connection from the pool."""

    __module__ = "ferropool"
