"""What the sync and async pools share: arguments, the core, settings, stats.

Nothing here does I/O: opening, checking, resetting and closing connections
differ between the sync and the async pool and live in their modules. This
module must never block, await, or put a password in a message.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar, cast

from psycopg import Connection
from psycopg import errors as e
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from . import _config, _core, _fork, pgbouncer, sizing
from ._compat import PSYCOPG_VERSION, ConnectionTimeout
from ._failover import is_failover_error, is_failover_message
from ._secrets import describe, scrub, secrets_of
from .errors import PoolClosed, PoolTimeout

if TYPE_CHECKING:
    from .metrics import Histogram
    from .metrics.advice import Finding

logger = logging.getLogger("ferropool")

IDLE = TransactionStatus.IDLE
INTRANS = TransactionStatus.INTRANS
INERROR = TransactionStatus.INERROR
ACTIVE = TransactionStatus.ACTIVE
UNKNOWN = TransactionStatus.UNKNOWN

# libpq TCP keepalives set on every connection unless the user set any
# keepalives* parameter: a peer that vanished without FIN/RST (network cut,
# crashed host) is found within about a minute instead of hours.
TCP_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

F = TypeVar("F", bound=Callable[..., None])

# Backoff between failed `check` callbacks at checkout (psycopg_pool's
# policy): start at 1 s, double, never past the request's deadline.
CHECK_BACKOFF_START = 1.0

HOOKS = ("on_connect", "on_checkout", "on_checkin", "on_close", "on_error")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def caller_stacklevel() -> int:
    """The warnings stacklevel of the first frame outside this package, so
    a warning points at the user's line whatever the call depth inside."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == _PACKAGE_DIR:
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def null_pool_init(init: F) -> F:
    """A pool's __init__ with min_size defaulting to 0, for its null variant.

    psycopg_pool's null pools take the same parameters as the full ones but
    default min_size to 0; this keeps one signature to maintain per pool
    family while ``inspect.signature`` (and so help() and the docs) shows the
    null pool's own default.
    """
    signature = inspect.signature(init)
    params = [
        p.replace(default=0) if p.name == "min_size" else p for p in signature.parameters.values()
    ]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_size", 0)
        init(self, *args, **kwargs)

    __init__.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return cast(F, __init__)


@dataclass
class Lease:
    """A lent connection tracked for leak detection (leak_timeout set)."""

    conn: Any
    stack: list[str]
    since: float
    reported: bool = False


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
        liveness_bypass: float | None,
        keepalive_interval: float | None,
        tcp_keepalives: bool,
        leak_timeout: float | None,
        max_uses: int,
        max_connecting: int,
        expect_primary: bool,
        lifo: bool,
        on_connect: Any,
        on_checkout: Any,
        on_checkin: Any,
        on_close: Any,
        on_error: Any,
        server: str = pgbouncer.POSTGRESQL,
        budget_share: float | None = None,
    ) -> None:
        self.conninfo = _config.conninfo(conninfo)
        self.kwargs = _config.kwargs(kwargs)
        self.connection_class = _config.connection_class(connection_class)
        min_size = _config.size("min_size", min_size)
        max_size = _config.optional_size("max_size", max_size)
        self._configure = _config.callback("configure", configure)
        self._check = _config.callback("check", check)
        self._reset = _config.reset(reset)
        self._reconnect_failed = _config.callback("reconnect_failed", reconnect_failed)
        name = _config.name(name)
        # close_returns makes no sense without idle connections: null pools
        # ignore it, as psycopg_pool's do.
        self.close_returns = _config.flag("close_returns", close_returns) and not self._null
        self.timeout = _config.seconds("timeout", timeout)
        max_waiting = _config.integer("max_waiting", max_waiting, maximum=_config.MAX_WAITING)
        max_lifetime = _config.seconds("max_lifetime", max_lifetime, positive=True)
        max_idle = _config.seconds("max_idle", max_idle, positive=True)
        reconnect_timeout = _config.seconds("reconnect_timeout", reconnect_timeout)
        self.num_workers = _config.integer(
            "num_workers", num_workers, minimum=1, maximum=_config.MAX_WORKERS
        )
        liveness_bypass = _config.optional_seconds("liveness_bypass", liveness_bypass)
        keepalive_interval = _config.optional_positive_seconds(
            "keepalive_interval", keepalive_interval
        )
        self.tcp_keepalives = _config.flag("tcp_keepalives", tcp_keepalives)
        leak_timeout = _config.optional_positive_seconds("leak_timeout", leak_timeout)
        max_uses = _config.integer("max_uses", max_uses)
        max_connecting = _config.integer(
            "max_connecting", max_connecting, minimum=1, maximum=_config.MAX_WORKERS
        )
        self.expect_primary = _config.flag("expect_primary", expect_primary)
        lifo = _config.flag("lifo", lifo)
        # What the connections point at (PostgreSQL, or PgBouncer in session
        # or transaction mode): see ferropool.pgbouncer.
        self.server = pgbouncer.server_option(
            server, reset=self._reset, configure=self._configure, stacklevel=caller_stacklevel() + 1
        )
        # max_size as a share of the server's budget, resolved at open: see
        # ferropool.sizing. A max_size given too caps it.
        self.budget_share = sizing.budget_share_option(budget_share, server=self.server)
        self._budget_pending = self.budget_share is not None
        self._budget_cap = max_size
        self._budget_task: Any = None
        self._hooks: dict[str, Any] = {
            hook: _config.callback(hook, fn)
            for hook, fn in zip(
                HOOKS, (on_connect, on_checkout, on_checkin, on_close, on_error), strict=True
            )
        }

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
            max_uses=max_uses,
            max_connecting=max_connecting,
            lifo=lifo,
            lifetime_jitter=_config.LIFETIME_JITTER,
            liveness_bypass=liveness_bypass,
            keepalive_interval=keepalive_interval,
            leak_timeout=leak_timeout,
        )
        self.max_connecting = max_connecting
        # Leak tracking: the stack of each lease, by connection id.
        self._leases: dict[int, Lease] | None = {} if leak_timeout is not None else None
        # Set in a forked child: connections lent before the fork may still
        # be returned; they are closed (their sockets point at /dev/null).
        self._forked = False
        self._resolved_secrets: list[str] = []
        self._open_implicit = False
        self._update_fast_path()
        _fork.register(self)

    def _update_fast_path(self) -> None:
        # getconn and putconn take their one-call paths unless something
        # must run first (a check, a hook, leak tracking, a reset).
        self._getconn_needs_slow_path = (
            self._check is not None
            or self._open_implicit
            or self._hooks["on_checkout"] is not None
            or self._leases is not None
        )
        self._putconn_fast = (
            self._reset is None and self._hooks["on_checkin"] is None and self._leases is None
        )

    def __repr__(self) -> str:
        cls = self.__class__
        return f"<{cls.__module__}.{cls.__name__} {self.name!r} at 0x{id(self):x}>"

    # ---- sizes and settings -------------------------------------------

    @property
    def _worker_count(self) -> int:
        """Maintenance workers to run. A null pool needs none: its core has
        no min_size to fill, no idle connection to sweep, check or close."""
        return 0 if self._null else max(self.num_workers, self.max_connecting)

    @property
    def min_size(self) -> int:
        return self._core.min_size

    @property
    def max_size(self) -> int:
        return self._core.max_size

    @property
    def closed(self) -> bool:
        """True if the pool is closed (or not open yet)."""
        return not self._core.is_open

    @property
    def lifo(self) -> bool:
        """True: the connection returned last is lent first; False (the
        default): use is spread over the idle connections."""
        return self._core.lifo

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

    @property
    def max_uses(self) -> int:
        return self._core.max_uses

    @max_uses.setter
    def max_uses(self, value: int) -> None:
        self._core.max_uses = _config.integer("max_uses", value)

    @property
    def liveness_bypass(self) -> float | None:
        return self._core.liveness_bypass

    @liveness_bypass.setter
    def liveness_bypass(self, value: float | None) -> None:
        self._core.liveness_bypass = _config.optional_seconds("liveness_bypass", value)

    @property
    def keepalive_interval(self) -> float | None:
        return self._core.keepalive_interval

    @keepalive_interval.setter
    def keepalive_interval(self, value: float | None) -> None:
        self._core.keepalive_interval = _config.optional_positive_seconds(
            "keepalive_interval", value
        )

    @property
    def leak_timeout(self) -> float | None:
        return self._core.leak_timeout

    @property
    def paused(self) -> bool:
        """True between pause() and resume()."""
        return self._core.paused

    def pause(self) -> None:
        """Hold back new checkouts: they wait (up to their timeout) until
        resume(). Connections already lent are unaffected."""
        if self._null:
            raise NotImplementedError("null pools keep no connections to pause")
        self._check_open_getconn()
        self._core.pause()
        logger.info("pool %r paused", self.name)

    def resume(self) -> None:
        """Serve the requests held back by pause(), oldest first."""
        self._core.resume()
        logger.info("pool %r resumed", self.name)

    # ---- state checks ----------------------------------------------------

    def _check_open_getconn(self) -> None:
        if not self._core.is_open:
            if self._core.was_opened:
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

    # ---- stats -------------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """Current counters and measures, with psycopg_pool's keys."""
        return self._core.stats()

    def pop_stats(self) -> dict[str, int]:
        """Like `get_stats()`, then reset the counters to zero."""
        return self._core.stats(reset=True)

    # ---- safety: failover, leaks, fork, hooks ------------------------------

    def _is_failover(self, exc: BaseException | None, conn: Any = None) -> bool:
        if is_failover_error(exc, expect_primary=self.expect_primary):
            return True
        if getattr(exc, "sqlstate", None) is None and conn is not None:
            try:
                message = conn.pgconn.error_message.decode("utf-8", "replace")
            except Exception:
                return False
            return is_failover_message(message)
        return False

    def _failover_conns(self, conn: Any, exc: BaseException | None) -> list[Any]:
        """Retire every connection opened before *conn* failed with *exc*;
        the idle ones are returned for the caller to close."""
        conns = self._core.failover_from(conn)
        if conns is None:
            return []
        logger.warning(
            "pool %r: the server went away or changed role (%s); retiring"
            " every connection opened before now",
            self.name,
            self._describe(exc) if exc is not None else "connection lost",
        )
        return conns

    def _track_lease(self, conn: Any) -> None:
        """Record who took *conn*, for leak reports (leak_timeout set)."""
        if self._leases is not None:
            stack = traceback.format_stack(sys._getframe(2), limit=12)
            self._leases[id(conn)] = Lease(conn, stack, monotonic())

    def _untrack_lease(self, conn: Any) -> None:
        if self._leases is not None:
            self._leases.pop(id(conn), None)

    def _leaked(self, key: int, held: float, first: bool) -> Any:
        """A lease outlived leak_timeout: report it (the first time) with
        the stack of the code that took it. Returns the connection if its
        borrower lost it (no reference left but the pool's): the caller
        reclaims it."""
        lease = self._leases.get(key) if self._leases is not None else None
        if lease is None:
            return None
        conn = lease.conn
        if first and not lease.reported:
            lease.reported = True
            logger.warning(
                "pool %r: connection held for %.1f s (leak_timeout %s s), taken at:\n%s",
                self.name,
                held,
                self.leak_timeout,
                "".join(lease.stack),
            )
        # References: the core's slot, the lease, `conn` here, and
        # getrefcount's argument. Nothing else means the borrower is gone.
        if sys.getrefcount(conn) <= 4:
            logger.warning(
                "pool %r: a connection was garbage-collected without being returned; reclaimed",
                self.name,
            )
            assert self._leases is not None
            self._leases.pop(key, None)
            self._core.reclaim(conn)
            return conn
        return None

    def _after_fork_in_child(self, devnull: int) -> None:
        """In a child process: forget the parent's connections, start over."""
        _fork.neutralise(self._core.restart_after_fork(), devnull)
        was_open = self._core.is_open
        if self._leases is not None:
            _fork.keep_forever(self._leases)
            self._leases = {}
        self._forked = True
        self._restart_after_fork(was_open)

    def _restart_after_fork(self, was_open: bool) -> None:
        raise NotImplementedError

    def _hook_error(self, hook: str, ex: BaseException) -> None:
        logger.warning("pool %r: %s hook failed: %s", self.name, hook, self._describe(ex))

    def _resolved(self, conninfo: str | None, kwargs: Any) -> tuple[str, dict[str, Any]]:
        """An attempt's conninfo and a copy of its kwargs, their secrets
        noted so messages about the attempt can mask them."""
        conninfo = conninfo or ""
        kwargs = dict(kwargs) if kwargs else {}
        self._remember_secrets(conninfo, kwargs)
        return conninfo, kwargs

    def _prepare_connect(
        self, conninfo: str, kwargs: dict[str, Any], timeout: float | None
    ) -> None:
        """Complete one connect attempt's resolved *kwargs*.

        Adds connect_timeout for an attempt bounded by *timeout* seconds (at
        least libpq's 1 s, even with no time left), what the `server` option
        needs, and libpq TCP keepalives unless the user set any.
        """
        if timeout is not None:
            kwargs["connect_timeout"] = max(round(timeout), 1)
        pgbouncer.connect_kwargs(self.server, kwargs)
        if not self.tcp_keepalives:
            return
        try:
            params = conninfo_to_dict(conninfo, **kwargs)
        except Exception:
            return  # libpq will report the bad conninfo itself
        if not any(k.startswith("keepalives") for k in params):
            kwargs.update(TCP_KEEPALIVES)

    # ---- messages ----------------------------------------------------------

    def _secrets(self) -> list[str]:
        conninfo = self.conninfo if isinstance(self.conninfo, str) else ""
        kwargs = self.kwargs if isinstance(self.kwargs, Mapping) else None
        # Callable conninfo/kwargs: the values of the last attempt too.
        return secrets_of(conninfo, kwargs) + self._resolved_secrets

    def _remember_secrets(self, conninfo: str, kwargs: Mapping[str, Any]) -> None:
        """Note the secrets of a connect attempt's resolved parameters."""
        if callable(self.conninfo) or callable(self.kwargs):
            self._resolved_secrets = secrets_of(conninfo, kwargs)

    def _scrubbed(self, ex: BaseException) -> BaseException:
        """*ex*, or a copy of the same type without the secrets libpq may
        quote back from a malformed conninfo."""
        text = str(ex)
        clean = scrub(text, self._secrets())
        if clean == text or not isinstance(ex, Exception):
            return ex
        try:
            return type(ex)(clean)
        except Exception:
            return RuntimeError(clean)

    def _describe(self, ex: BaseException) -> str:
        """An exception as a message safe to log and raise."""
        return describe(ex, self._secrets())

    def _caller_connect_failed(self, ticket: _core.Ticket, ex: BaseException) -> BaseException:
        """A request's own connect attempt (null pools) failed: give its
        capacity back and return what to raise, PoolTimeout for a timeout."""
        message = self._describe(ex)
        self._core.connect_failed_caller(ticket, message)
        if isinstance(ex, ConnectionTimeout):
            return PoolTimeout(message)
        return self._scrubbed(ex)

    @staticmethod
    def _init_timeout(timeout: float, last: str | None) -> PoolTimeout:
        """wait()'s error, naming the last connection error if any."""
        message = f"pool initialization incomplete after {timeout} sec"
        if last:
            message += f"; last connection error: {last}"
        return PoolTimeout(message)

    @staticmethod
    def _require_idle(conn: Any, what: str, fn: Any) -> None:
        """Refuse a connection that the *what* callback *fn* (configure or
        reset) left inside a transaction."""
        status = conn.pgconn.transaction_status
        if status != IDLE:
            raise e.ProgrammingError(
                f"connection left in status {TransactionStatus(status).name}"
                f" by {what} function {fn}: discarded"
            )

    def _connect_failed(self, ticket: _core.Ticket, ex: BaseException) -> bool:
        """Report a failed attempt; True if reconnect_failed must be called."""
        message = self._describe(ex)
        logger.warning("error connecting in %r: %s", self.name, message)
        if self._core.connect_failed(ticket, message) != _core.ConnectOutcome.GAVE_UP:
            return False
        logger.warning(
            "reconnection attempt in pool %r failed after %s sec",
            self.name,
            self.reconnect_timeout,
        )
        return True

    # ---- metrics (ferropool.metrics) ---------------------------------------

    def get_histograms(self, reset: bool = False) -> dict[str, Histogram]:
        """Histograms of ``wait_time`` (queued requests only), ``usage_time``
        and ``connect_time``, in seconds, as kept by the core since the pool
        was created (or last reset, with *reset*): see ferropool.metrics."""
        from .metrics import histograms

        return histograms(self, reset)

    def advice(self) -> list[Finding]:
        """Whether the pool looks too small, too large or leaking, from its
        figures since the previous calls (or a watcher's samples): see
        ferropool.metrics.advice. Each call takes a sample."""
        from .metrics.advice import advise

        return advise(self)
