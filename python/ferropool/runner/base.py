"""What the async runner and its generated sync twin share: no I/O.

The runner's state (the core, the settings, the driver, leases, the owner
pool) and every decision that needs no waiting: whether an error means the
server went away, what to raise or log about a failed connect, how to apply
a budget share, how to start over after fork. This module must never
block, await, call a user callback, or put a password in a message.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Generic, TypeVar

from psycopg import errors as e

from .. import _core, sizing
from ..errors import PoolClosed, PoolTimeout
from . import fork
from .failover import is_failover_sqlstate
from .failures import FailureLog, is_permanent
from .leases import Leases
from .secrets import describe, scrub
from .settings import Settings
from .status import Status

logger = logging.getLogger("ferropool")

C = TypeVar("C")

# Backoff between failed `check` callbacks at checkout (psycopg_pool's
# policy): start at 1 s, double, never past the request's deadline.
CHECK_BACKOFF_START = 1.0


class RunnerBase(Generic[C]):
    """One pool's core, settings and driver, and the decisions without I/O."""

    def __init__(
        self,
        settings: Settings,
        driver: Any,
        owner: object,
        *,
        budget_share: float | None = None,
        budget_cap: int | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        # Settable on the pool (pool.timeout = ...), as in psycopg_pool.
        self.timeout = settings.timeout
        self.driver = driver
        # The pool object users hold: lent connections are marked with it and
        # reconnect_failed gets it. Weak, so a pool dropped without close()
        # is still collected (and its runner with it).
        self._owner = weakref.ref(owner)
        self.core = _core.Core(**settings.core_args())
        self.leases = (
            Leases(settings.name, settings.leak_timeout)
            if settings.leak_timeout is not None
            else None
        )
        # budget_share: max_size as a share of the server's budget, resolved
        # at open (see ferropool.sizing); a max_size given too caps it.
        self.budget_share = budget_share
        self.budget_cap = budget_cap
        # Set in a forked child: connections lent before the fork may still
        # come back; they are closed (their sockets point at /dev/null).
        self.forked = False
        # psycopg_pool's open=None: opened in the constructor, with a warning
        # at first use.
        self.implicit_open = False
        self.failures = FailureLog(settings.name)
        # The class and masked message of the last failed connect attempt.
        self._failure: tuple[type[BaseException], str] | None = None
        self.slow_checkout = self.fast_checkin = False
        self.update_fast_path()
        self.new_workers()
        fork.register(self)

    def new_workers(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @property
    def owner(self) -> Any:
        return self._owner()

    def update_fast_path(self) -> None:
        """Decide which checkouts and returns need the slow path: one with a
        check, a hook, leak tracking or a reset to run first."""
        s = self.settings
        self.slow_checkout = (
            s.check is not None
            or self.implicit_open
            or s.hooks.on_checkout is not None
            or self.leases is not None
        )
        self.fast_checkin = s.reset is None and s.hooks.on_checkin is None and self.leases is None
        # The pools' hot path (in Rust) reads these from the core.
        self.core.set_fast_path(self.slow_checkout, not self.fast_checkin)

    # ---- state ----------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.core.is_open

    @property
    def last_connect_error(self) -> str | None:
        """The last connection error since the last success (masked)."""
        return self.core.last_connect_error

    def timed_out(self, timeout: float) -> str:
        """PoolTimeout's message for a request that waited *timeout* seconds."""
        message = f"couldn't get a connection after {timeout:.2f} sec"
        error = self.last_connect_error
        return message if error is None else f"{message}; last connection error: {error}"

    def connect_failure(self) -> BaseException | None:
        """The driver's error of the last failed connection attempt, as a new
        exception of the same class (message masked), while connecting
        fails; None once an attempt succeeded since."""
        if self._failure is None or self.core.last_connect_error is None:
            return None
        kind, message = self._failure
        try:
            return kind(message)
        except Exception:
            return RuntimeError(message)

    @property
    def idle(self) -> int:
        """Idle connections, ready to lend."""
        return self.core.available

    def require_open(self) -> None:
        """Raise PoolClosed unless the pool serves requests; warn once for a
        pool opened implicitly by its constructor."""
        if not self.core.is_open:
            if self.core.was_opened:
                raise PoolClosed(f"the pool {self.name!r} is already closed")
            raise PoolClosed(f"the pool {self.name!r} is not open yet")
        if self.implicit_open:
            self.implicit_open = False
            self.update_fast_path()
            self.warn_implicit_open()

    def warn_implicit_open(self) -> None:
        raise NotImplementedError

    def pause(self) -> None:
        """Hold back new checkouts until resume()."""
        if self.settings.null:
            raise NotImplementedError("null pools keep no connections to pause")
        self.require_open()
        self.core.pause()
        logger.info("pool %r paused", self.name)

    def resume(self) -> None:
        self.core.resume()
        logger.info("pool %r resumed", self.name)

    def refuse(self, conn: Any) -> None:
        """Raise for a connection given back to a pool that did not lend it."""
        lender = self.driver.lender(conn)
        if lender is None:
            where = "it doesn't come from any pool (or was already returned)"
        else:
            where = f"it comes from pool {getattr(lender, 'name', '?')!r}"
        raise ValueError(f"can't return connection to pool {self.name!r}, {where}")

    def status(self, conn: Any) -> Status:
        return self.driver.status(conn)  # type: ignore[no-any-return]

    def require_idle(self, conn: Any, what: str, fn: Any) -> None:
        """Refuse a connection that the *what* callback *fn* (configure or
        reset) left inside a transaction."""
        status = self.driver.status(conn)
        if status not in (Status.IDLE, Status.UNKNOWN):
            raise e.ProgrammingError(
                f"connection left in status {status.name} by {what} function {fn}: discarded"
            )

    # ---- failover -------------------------------------------------------------

    def is_failover(self, exc: BaseException | None, conn: Any = None) -> bool:
        """Whether *exc* (or, with no SQLSTATE, *conn*'s last error) says the
        server went away or changed role."""
        sqlstate = self.driver.sqlstate(exc) if exc is not None else None
        if is_failover_sqlstate(sqlstate, expect_primary=self.settings.expect_primary):
            return True
        return sqlstate is None and conn is not None and self.driver.server_gone(conn)

    def failover_conns(self, conn: Any, exc: BaseException | None) -> list[Any]:
        """Retire every connection opened before *conn* failed with *exc*;
        the idle ones are returned for the caller to close."""
        conns = self.core.failover_from(conn)
        if conns is None:
            return []
        logger.warning(
            "pool %r: the server went away or changed role (%s); retiring"
            " every connection opened before now",
            self.name,
            self.describe(exc) if exc is not None else "connection lost",
        )
        return conns

    # ---- messages ---------------------------------------------------------------

    def describe(self, ex: BaseException) -> str:
        """An exception as a message safe to log and raise."""
        return describe(ex, self.driver.secrets())

    def describe_conn(self, conn: Any) -> str:
        """A connection as a log line can show it."""
        return scrub(self.driver.describe(conn), self.driver.secrets())

    def scrubbed(self, ex: BaseException) -> BaseException:
        """*ex*, or a copy of the same type without the secrets libpq may
        quote back from a malformed conninfo."""
        text = str(ex)
        clean = scrub(text, self.driver.secrets())
        if clean == text or not isinstance(ex, Exception):
            return ex
        try:
            return type(ex)(clean)
        except Exception:
            return RuntimeError(clean)

    def init_timeout(self, timeout: float) -> PoolTimeout:
        """wait()'s error, naming the last connection error if any."""
        message = f"pool initialization incomplete after {timeout} sec"
        last = self.core.last_connect_error
        if last:
            message += f"; last connection error: {last}"
        return PoolTimeout(message)

    def connect_failed(self, ticket: _core.Ticket, ex: BaseException) -> bool:
        """Report a failed attempt; True if reconnect_failed must be called."""
        message = self.describe(ex)
        self._failure = (type(ex), message)
        self.failures.failed(message)
        # psycopg refuses a malformed conninfo or an unknown option with
        # ProgrammingError before it reaches a server.
        permanent = is_permanent(
            self.driver.sqlstate(ex),
            client_side=isinstance(ex, e.ProgrammingError),
            message=message,
        )
        outcome = self.core.connect_failed(ticket, message, permanent)
        if outcome != _core.ConnectOutcome.GAVE_UP:
            return False
        logger.warning(
            "reconnection attempt in pool %r failed after %s sec",
            self.name,
            self.core.reconnect_timeout,
        )
        return True

    def caller_connect_failed(self, ticket: _core.Ticket, ex: BaseException) -> BaseException:
        """A request's own connect attempt (null pools) failed: give its
        capacity back and return what to raise (PoolTimeout for a timeout),
        holding no reference to *ex* (its text may hold a secret)."""
        message = self.describe(ex)
        self.core.connect_failed_caller(ticket, message)
        if self.driver.is_connect_timeout(ex):
            return PoolTimeout(message)
        error = self.scrubbed(ex)
        if error is ex:
            return ex
        return error

    # ---- budget_share ---------------------------------------------------------

    def apply_budget(self, budget: sizing.ServerBudget | None, error: str | None) -> None:
        """Resize the (not yet filled) pool to its share of *budget*; a max_size
        given too caps it. Without a budget the constructor's size stays."""
        share = self.budget_share
        assert share is not None
        self.budget_share = None
        cap = self.core.max_size
        if budget is None:
            logger.warning(
                "pool %r: budget_share=%s: couldn't read the server's budget (%s);"
                " keeping max_size=%s",
                self.name,
                share,
                error,
                cap if cap or not self.settings.null else "unbounded",
            )
            return
        size = sizing.share_size(budget, share)
        if self.budget_cap is not None:
            size = min(size, self.budget_cap)
        min_size = min(self.core.min_size, size)
        self.resize_core(min_size, size)
        logger.info(
            "pool %r: budget_share=%s of %s usable connections: max_size=%s",
            self.name,
            share,
            budget.usable,
            size,
        )

    def resize_core(self, min_size: int, max_size: int) -> list[Any]:
        """Resize the core; returns the idle connections to close."""
        return self.core.resize(min_size, max_size)

    # ---- fork ---------------------------------------------------------------------

    def after_fork_in_child(self, devnull: int) -> None:
        """In a child process: forget the parent's connections, start over."""
        was_open = self.core.is_open
        fork.neutralise(self.core.restart_after_fork(), devnull)
        if self.leases is not None:
            fork.keep_forever(self.leases.forget_all())
        self.forked = True
        self.restart_after_fork(was_open)

    def restart_after_fork(self, was_open: bool) -> None:
        raise NotImplementedError
