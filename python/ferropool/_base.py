"""What the sync and async pools share: arguments, the core, settings, stats.

Nothing here does I/O: opening, checking, resetting and closing connections
differ between the sync and the async pool and live in their modules. This
module must never block, await, or put a password in a message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from psycopg import Connection
from psycopg.pq import TransactionStatus

from . import _config, _core
from ._compat import PSYCOPG_VERSION
from ._secrets import scrub, secrets_of
from .errors import PoolClosed

logger = logging.getLogger("ferropool")

IDLE = TransactionStatus.IDLE
INTRANS = TransactionStatus.INTRANS
INERROR = TransactionStatus.INERROR
ACTIVE = TransactionStatus.ACTIVE
UNKNOWN = TransactionStatus.UNKNOWN


class BasePool:
    """Validated settings, the Rust core, and the API without I/O."""

    _num_pool = 0
    _null = False
    # psycopg < 3.3 needs a Connection subclass for close_returns.
    _pool_connection_class: type[Any] | None = None
    _default_connection_class: type[Any] = Connection

    def __init__(
        self,
        conninfo: Any,
        *,
        connection_class: Any,
        kwargs: Any,
        min_size: int,
        max_size: int | None,
        configure: Any,
        check: Any,
        reset: Any,
        name: str | None,
        close_returns: bool,
        timeout: float,
        max_waiting: int,
        max_lifetime: float,
        max_idle: float,
        reconnect_timeout: float,
        reconnect_failed: Any,
        num_workers: int,
    ) -> None:
        self.conninfo = _config.conninfo(conninfo)
        self.kwargs = _config.kwargs(kwargs)
        self.connection_class = _config.connection_class(connection_class)
        min_size = _config.size("min_size", min_size)
        max_size = _config.optional_size("max_size", max_size)
        self._configure = _config.callback("configure", configure)
        self._check = _config.callback("check", check)
        self._reset = _config.callback("reset", reset)
        self._reconnect_failed = _config.callback("reconnect_failed", reconnect_failed)
        name = _config.name(name)
        self.close_returns = _config.flag("close_returns", close_returns)
        self.timeout = _config.seconds("timeout", timeout)
        max_waiting = _config.integer("max_waiting", max_waiting, maximum=_config.MAX_WAITING)
        max_lifetime = _config.seconds("max_lifetime", max_lifetime, positive=True)
        max_idle = _config.seconds("max_idle", max_idle, positive=True)
        reconnect_timeout = _config.seconds("reconnect_timeout", reconnect_timeout)
        self.num_workers = _config.integer(
            "num_workers", num_workers, minimum=1, maximum=_config.MAX_WORKERS
        )

        if self.close_returns and PSYCOPG_VERSION < (3, 3):
            if self.connection_class is not self._default_connection_class:
                raise TypeError(
                    "close_returns=True with a custom connection_class requires psycopg >= 3.3"
                )
            assert self._pool_connection_class is not None
            self.connection_class = self._pool_connection_class

        if not name:
            BasePool._num_pool += 1
            name = f"pool-{BasePool._num_pool}"
        self.name: str = name

        if max_size is None:
            max_size = min_size
        self._core = _core.Core(
            name=name,
            min_size=min_size,
            max_size=max_size,
            max_waiting=max_waiting,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            reconnect_timeout=reconnect_timeout,
            null=self._null,
        )
        self._open_implicit = False
        self._update_fast_path()

    def _update_fast_path(self) -> None:
        # getconn takes its one-call path unless something must run first.
        self._getconn_needs_slow_path = self._check is not None or self._open_implicit

    def __repr__(self) -> str:
        cls = self.__class__
        return f"<{cls.__module__}.{cls.__name__} {self.name!r} at 0x{id(self):x}>"

    # ---- sizes and settings -------------------------------------------

    @property
    def min_size(self) -> int:
        return self._core.min_size

    @property
    def max_size(self) -> int:
        return self._core.max_size

    @property
    def closed(self) -> bool:
        """True if the pool is closed (or not open yet)."""
        return self._core.closed

    @property
    def max_waiting(self) -> int:
        return self._core.max_waiting

    @max_waiting.setter
    def max_waiting(self, value: int) -> None:
        self._core.max_waiting = _config.integer("max_waiting", value, maximum=_config.MAX_WAITING)

    @property
    def max_lifetime(self) -> float:
        return self._core.max_lifetime

    @max_lifetime.setter
    def max_lifetime(self, value: float) -> None:
        self._core.max_lifetime = _config.seconds("max_lifetime", value, positive=True)

    @property
    def max_idle(self) -> float:
        return self._core.max_idle

    @max_idle.setter
    def max_idle(self, value: float) -> None:
        self._core.max_idle = _config.seconds("max_idle", value, positive=True)

    @property
    def reconnect_timeout(self) -> float:
        return self._core.reconnect_timeout

    @reconnect_timeout.setter
    def reconnect_timeout(self, value: float) -> None:
        self._core.reconnect_timeout = _config.seconds("reconnect_timeout", value)

    # ---- state checks ----------------------------------------------------

    def _check_open_getconn(self) -> None:
        if self._core.closed:
            if self._core.opened:
                raise PoolClosed(f"the pool {self.name!r} is already closed")
            raise PoolClosed(f"the pool {self.name!r} is not open yet")
        if self._open_implicit:
            self._open_implicit = False
            self._update_fast_path()
            self._warn_open_implicit()

    def _warn_open_implicit(self) -> None:
        raise NotImplementedError

    def _refuse(self, conn: Any, lender: Any) -> None:
        """Raise for a connection given back to a pool that did not lend it."""
        if lender is None:
            where = "it doesn't come from any pool (or was already returned)"
        else:
            where = f"it comes from pool {getattr(lender, 'name', '?')!r}"
        raise ValueError(f"can't return connection to pool {self.name!r}, {where}")

    @staticmethod
    def _sizes(min_size: int, max_size: int | None) -> tuple[int, int]:
        """resize() arguments, checked, with max_size defaulting to min_size."""
        min_size = _config.size("min_size", min_size)
        max_size = _config.optional_size("max_size", max_size)
        return min_size, min_size if max_size is None else max_size

    # ---- stats -------------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """Current counters and measures, with psycopg_pool's keys."""
        return self._core.stats()

    def pop_stats(self) -> dict[str, int]:
        """Like `get_stats()`, then reset the counters to zero."""
        return self._core.stats(reset=True)

    # ---- messages ----------------------------------------------------------

    def _secrets(self) -> list[str]:
        conninfo = self.conninfo if isinstance(self.conninfo, str) else ""
        kwargs = self.kwargs if isinstance(self.kwargs, Mapping) else None
        return secrets_of(conninfo, kwargs)

    def _describe(self, ex: BaseException) -> str:
        """An exception as a message safe to log and raise."""
        text = str(ex).strip() or ex.__class__.__name__
        return scrub(text, self._secrets())

    def _connect_failed(self, ticket: _core.Ticket, ex: BaseException) -> bool:
        """Report a failed attempt; True if reconnect_failed must be called."""
        message = self._describe(ex)
        logger.warning("error connecting in %r: %s", self.name, message)
        outcome, _ = self._core.connect_failed(ticket, message)
        if outcome != "gave_up":
            return False
        logger.warning(
            "reconnection attempt in pool %r failed after %s sec",
            self.name,
            self.reconnect_timeout,
        )
        return True
