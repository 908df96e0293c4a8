"""The seam between the runner and a database driver.

The runner owns every pooling rule (when to lend, wait, validate, roll
back, reset, retire, close); a driver only answers questions about one
connection and carries out single operations on it, like deadpool's
``Manager`` or r2d2's ``ManageConnection``. ferropool has two: psycopg 3
(`psycopg_driver_async`, and its generated sync twin) and any DB-API driver
(``ferropool.adapters.drivers``, sync only).

Status questions are answered from memory, never with a round trip: they
run on the hot path. No method may raise out of ``close`` or ``abort``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from ..sizing import ServerBudget
from .status import Status

C = TypeVar("C")


class AsyncDriver(Protocol[C]):
    """What the runner needs to know about, and do to, a connection."""

    @property
    def marks_connections(self) -> bool:
        """Whether connections carry their lender (psycopg's ``_pool``)."""

    def status(self, conn: C) -> Status:
        """The connection's transaction state, from memory."""

    def socket(self, conn: C) -> int | None:
        """The connection's socket, for the core's hang-up watch."""

    def lend(self, conn: C, owner: object | None) -> None:
        """Mark *conn* as lent by *owner* (None: not lent)."""

    def lender(self, conn: C) -> object | None:
        """The pool that lent *conn*, as marked by `lend`."""

    def set_block(self, conn: C, block: object | None) -> None:
        """Note the `connection()` block that holds *conn* (None: none)."""

    def block_of(self, conn: C) -> object | None:
        """The block `set_block` noted."""

    def describe(self, conn: C) -> str:
        """The connection for a log line: its state, never a password."""

    def sqlstate(self, exc: BaseException) -> str | None:
        """The SQLSTATE of an error raised by this driver, if any."""

    def server_gone(self, conn: C) -> bool:
        """Whether the connection's last error says the server shut down."""

    def is_connect_timeout(self, exc: BaseException) -> bool:
        """Whether *exc* is a connection attempt that ran out of time."""

    def secrets(self) -> list[str]:
        """Passwords a message about connecting could quote."""

    async def connect(self, timeout: float | None) -> C:
        """A new connection, within *timeout* seconds if given."""

    async def ping(self, conn: C) -> None:
        """Raise unless the server answers, within the driver's deadline."""

    async def rollback(self, conn: C) -> None: ...

    async def commit(self, conn: C) -> None: ...

    async def remember_session(self, conn: C) -> None:
        """Note the session state just set up (by ``configure``) so that
        `discard_session` can restore it."""

    async def discard_session(self, conn: C) -> None:
        """Reset the server session to how `remember_session` found it."""

    async def read_budget(self) -> ServerBudget:
        """The server's connection budget, on a one-off connection."""

    async def close(self, conn: C) -> None:
        """Close *conn*; failures are logged, never raised (a cancellation
        still closes the socket, then propagates)."""

    def abort(self, conn: C) -> None:
        """Close *conn* now, without waiting on anything."""
