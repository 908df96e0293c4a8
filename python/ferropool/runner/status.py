"""A connection's state as the pool sees it, the same for every driver.

Drivers answer from what they keep in memory (libpq's transaction status,
a driver's own flag); where a driver cannot tell, the answer is UNKNOWN
and the pool rolls back to be safe.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """What a borrower left a connection in."""

    IDLE = 0  # no transaction open: reusable as it is
    ACTIVE = 1  # a command still running: cannot be reused
    INTRANS = 2  # in a transaction: roll back first
    INERROR = 3  # in a failed transaction: roll back first
    BROKEN = 4  # closed, or its server connection lost: discard
    UNKNOWN = 5  # the driver cannot tell: roll back to be safe

    @property
    def in_transaction(self) -> bool:
        return self in (Status.INTRANS, Status.INERROR)
