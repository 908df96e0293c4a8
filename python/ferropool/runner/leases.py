"""Leak tracking: who took each lent connection, for leak_timeout reports.

Only pools with ``leak_timeout`` set keep leases (the stack of each
checkout costs microseconds). Nothing here does I/O or touches the core:
the runner asks, and reclaims what this module says was lost.
"""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass
from time import monotonic
from typing import Any

logger = logging.getLogger("ferropool")

# References to a lost connection: the core's slot, the lease, the caller's
# variable, and getrefcount's argument. Nothing else means its borrower is gone.
_LOST_REFS = 4


@dataclass
class Lease:
    """A lent connection and where it was taken."""

    conn: Any
    stack: list[str]
    since: float
    reported: bool = False


class Leases:
    """The leases of one pool, by connection id."""

    def __init__(self, pool: str, leak_timeout: float) -> None:
        self._pool = pool
        self._leak_timeout = leak_timeout
        self._by_id: dict[int, Lease] = {}

    def track(self, conn: Any) -> None:
        """Record who takes *conn*: the stack outside ferropool's frames."""
        frame = sys._getframe(1)
        while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
            "ferropool."
        ):
            frame = frame.f_back
        self._by_id[id(conn)] = Lease(conn, traceback.format_stack(frame, limit=12), monotonic())

    def untrack(self, conn: Any) -> None:
        self._by_id.pop(id(conn), None)

    def overdue(self, key: int, held: float, first: bool) -> Any:
        """A lease outlived leak_timeout: report it (the first time) with the
        stack of the code that took it. Returns the connection if its borrower
        lost it without returning it, for the caller to reclaim."""
        lease = self._by_id.get(key)
        if lease is None:
            return None
        if first and not lease.reported:
            lease.reported = True
            logger.warning(
                "pool %r: connection held for %.1f s (leak_timeout %s s), taken at:\n%s",
                self._pool,
                held,
                self._leak_timeout,
                "".join(lease.stack),
            )
        conn = lease.conn
        if sys.getrefcount(conn) > _LOST_REFS:
            return None
        logger.warning(
            "pool %r: a connection was garbage-collected without being returned; reclaimed",
            self._pool,
        )
        del self._by_id[key]
        return conn

    def forget_all(self) -> dict[int, Lease]:
        """Drop every lease (in a fork child); returns them to keep alive."""
        leases, self._by_id = self._by_id, {}
        return leases
