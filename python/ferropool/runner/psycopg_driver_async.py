"""The psycopg 3 driver: connections opened from a conninfo, read through libpq.

Everything the runner asks about a psycopg connection is answered from
libpq's memory (``pgconn.transaction_status``, ``pgconn.socket``), at no
round trip. Connecting resolves ``conninfo`` and ``kwargs`` (callables
called, and awaited in the async driver) at each attempt, and completes the
connect arguments: a connect_timeout for a bounded attempt, what the
``server=`` option needs (ferropool.pgbouncer) and TCP keepalives unless the
user set any. This module must never put a password in a message: the
secrets of each attempt are remembered for the runner to mask.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from .. import pgbouncer
from ..sizing import CONNECT_TIMEOUT, ServerBudget, aread_budget
from .acompat import amaybe
from .compat import ConnectionTimeout
from .failover import is_failover_message
from .ping_async import aping
from .secrets import secrets_of
from .status import Status

logger = logging.getLogger("ferropool")

C = TypeVar("C", bound="psycopg.AsyncConnection[Any]")

# libpq TCP keepalives set on every connection unless the user set any
# keepalives* parameter: a peer that vanished without FIN/RST (network cut,
# crashed host) is found within about a minute instead of hours.
TCP_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

_STATUS: dict[int, Status] = {
    TransactionStatus.IDLE: Status.IDLE,
    TransactionStatus.ACTIVE: Status.ACTIVE,
    TransactionStatus.INTRANS: Status.INTRANS,
    TransactionStatus.INERROR: Status.INERROR,
    TransactionStatus.UNKNOWN: Status.BROKEN,
}

# Session settings a configure callback changed, re-applied after DISCARD ALL
# (which resets them to the connection's start values).
_SESSION_SETTINGS = "select name, setting from pg_settings where source = 'session'"
_SESSION_ATTR = "_ferropool_session"

# Connect arguments that shape a pool's connections but not a one-off query.
_POOL_ONLY_KWARGS = ("prepare_threshold", "row_factory", "cursor_factory", "context", "autocommit")


def _forget_prepared(conn: Any) -> None:
    """Empty psycopg's cache of prepared statements, which DISCARD ALL is
    about to drop on the server.

    psycopg notices a DISCARD ALL only the first time a connection runs it
    (it inspects the results of queries new to its cache), so from the
    second reset on it would name statements the server no longer has:
    "prepared statement _pg3_0 does not exist". Its cache has no public
    method to clear; should the private one ever go, the connection stops
    preparing statements rather than fail.
    """
    clear = getattr(getattr(conn, "_prepared", None), "clear", None)
    if callable(clear):
        clear()
    else:
        conn.prepare_threshold = None


class AsyncPsycopgDriver(Generic[C]):
    """psycopg 3 connections for the async runner."""

    marks_connections = True

    def __init__(
        self,
        conninfo: Any,
        kwargs: Any,
        connection_class: type[C],
        *,
        server: str,
        tcp_keepalives: bool,
    ) -> None:
        self.conninfo = conninfo
        self.kwargs = kwargs
        self.connection_class = connection_class
        self.server = server
        self.tcp_keepalives = tcp_keepalives
        # Secrets of the last attempt's resolved parameters (callables).
        self._resolved_secrets: list[str] = []

    # ---- answers from memory ------------------------------------------

    @staticmethod
    def status(conn: C) -> Status:
        return _STATUS.get(conn.pgconn.transaction_status, Status.BROKEN)

    @staticmethod
    def socket(conn: C) -> int | None:
        try:
            fd = conn.pgconn.socket
        except Exception:
            return None
        return fd if isinstance(fd, int) and fd >= 0 else None

    @staticmethod
    def lend(conn: C, owner: object | None) -> None:
        # psycopg reads `_pool`: `with conn:` does not close a pooled
        # connection, close_returns gives it back; None (rather than no
        # attribute) also stops its warning about connections left open.
        conn._pool = owner  # type: ignore[assignment]

    @staticmethod
    def lender(conn: C) -> object | None:
        return getattr(conn, "_pool", None)

    @staticmethod
    def set_block(conn: C, block: object | None) -> None:
        """Note which `connection()` block holds *conn* (close_returns pools:
        a close() inside the block gives it back early)."""
        conn._ferropool_block = block  # type: ignore[attr-defined]

    @staticmethod
    def block_of(conn: C) -> object | None:
        return getattr(conn, "_ferropool_block", None)

    @staticmethod
    def describe(conn: C) -> str:
        # psycopg's repr: status, host, port, user, database; no password.
        return repr(conn)

    @staticmethod
    def sqlstate(exc: BaseException) -> str | None:
        sqlstate = getattr(exc, "sqlstate", None)
        return sqlstate if isinstance(sqlstate, str) else None

    @staticmethod
    def server_gone(conn: C) -> bool:
        try:
            message = conn.pgconn.error_message.decode("utf-8", "replace")
        except Exception:
            return False
        return is_failover_message(message)

    @staticmethod
    def is_connect_timeout(exc: BaseException) -> bool:
        return isinstance(exc, ConnectionTimeout)

    def secrets(self) -> list[str]:
        conninfo = self.conninfo if isinstance(self.conninfo, str) else ""
        kwargs = self.kwargs if isinstance(self.kwargs, Mapping) else None
        return secrets_of(conninfo, kwargs) + self._resolved_secrets

    # ---- operations ---------------------------------------------------------

    async def connect(self, timeout: float | None) -> C:
        conninfo, kwargs = await self._resolve()
        if timeout is not None and math.isfinite(timeout):
            # libpq's minimum is 1 s; an attempt with no time left gets it too.
            kwargs["connect_timeout"] = max(round(timeout), 1)
        pgbouncer.connect_kwargs(self.server, kwargs)
        if self.tcp_keepalives:
            self._add_keepalives(conninfo, kwargs)
        conn: C = await self.connection_class.connect(conninfo, **kwargs)
        return conn

    async def _resolve(self) -> tuple[str, dict[str, Any]]:
        """One attempt's conninfo and a copy of its kwargs (callables called),
        their secrets noted for masking messages about the attempt."""
        conninfo = self.conninfo
        if callable(conninfo):
            conninfo = await amaybe(conninfo())
        kwargs = self.kwargs
        if callable(kwargs):
            kwargs = await amaybe(kwargs())
        conninfo = conninfo or ""
        kwargs = dict(kwargs) if kwargs else {}
        if callable(self.conninfo) or callable(self.kwargs):
            self._resolved_secrets = secrets_of(conninfo, kwargs)
        return conninfo, kwargs

    @staticmethod
    def _add_keepalives(conninfo: str, kwargs: dict[str, Any]) -> None:
        try:
            params = conninfo_to_dict(conninfo, **kwargs)
        except Exception:
            return  # libpq will report the bad conninfo itself
        if not any(k.startswith("keepalives") for k in params):
            kwargs.update(TCP_KEEPALIVES)

    async def ping(self, conn: C) -> None:
        await aping(conn)

    async def rollback(self, conn: C) -> None:
        await conn.rollback()

    async def commit(self, conn: C) -> None:
        await conn.commit()

    async def remember_session(self, conn: C) -> None:
        cur = conn.cursor(row_factory=psycopg.rows.tuple_row)
        await cur.execute(_SESSION_SETTINGS, prepare=False)
        rows = await cur.fetchall()
        if not conn.autocommit:
            await conn.rollback()
        setattr(conn, _SESSION_ATTR, rows)

    async def discard_session(self, conn: C) -> None:
        """DISCARD ALL, then the settings `remember_session` found.

        DISCARD ALL drops SET values, temporary tables, prepared statements,
        LISTEN, advisory locks and cached plans. It cannot run in a
        transaction block, hence autocommit for the statement.
        """
        autocommit = conn.autocommit
        await conn.set_autocommit(True)
        try:
            _forget_prepared(conn)
            await conn.execute("DISCARD ALL", prepare=False)
            settings = getattr(conn, _SESSION_ATTR, None)
            if settings:
                await conn.execute(
                    "select " + ", ".join(["set_config(%s, %s, false)"] * len(settings)),
                    [value for pair in settings for value in pair],
                    prepare=False,
                )
        finally:
            await conn.set_autocommit(autocommit)

    async def read_budget(self) -> ServerBudget:
        conninfo, kwargs = await self._resolve()
        for key in _POOL_ONLY_KWARGS:
            kwargs.pop(key, None)
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
        kwargs["autocommit"] = True
        async with await psycopg.AsyncConnection.connect(conninfo, **kwargs) as conn:
            return await aread_budget(conn)

    async def close(self, conn: C) -> None:
        try:
            conn._pool = None
            await conn.close()
        except BaseException as ex:
            logger.warning("error closing connection: %s", ex.__class__.__name__)
            # Closing must finish even if this task is being cancelled.
            self.abort(conn)
            if not isinstance(ex, Exception):
                raise

    @staticmethod
    def abort(conn: C) -> None:
        try:
            conn._pool = None
            conn.pgconn.finish()
        except Exception as ex:
            logger.warning("error closing connection: %s", ex.__class__.__name__)
