"""The Rust core lending DB-API connections of any driver.

What `ferropool.adapters.dbapi.Pool`, the psycopg2 drop-ins and the
SQLAlchemy pool share: the core, its worker threads (ferropool's own, from
``_maintenance``), connecting, checking in (roll back, reset, or discard),
pinging, closing, fork safety, stats. A subclass only shapes the API.

The core decides (lend this connection, open one on this ticket, close
that one); this module does the driver work outside any lock. It must
never hand a connection that is in a transaction, broken or running a
command back to the core as idle, never let a worker die on an exception,
and never put a password in a message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from time import monotonic
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from .. import _config, _core, _fork
from .._maintenance import Workers
from .._secrets import describe
from ..errors import PoolClosed, PoolTimeout
from ._drivers import Driver, Status, detect, resolve

if TYPE_CHECKING:
    from ..pool import ConnectionPool

logger = logging.getLogger("ferropool")

C = TypeVar("C")

_IDLE = Status.IDLE


class CorePool(Generic[C]):
    """A pool of connections opened by ``connect()``, on the Rust core."""

    _num_pool = 0
    # Names of unnamed pools: f"{_name_prefix}-{n}".
    _name_prefix = "dbapi"

    def __init__(
        self,
        connect: Callable[[], C],
        *,
        min_size: int,
        max_size: int | None,
        timeout: float,
        name: str | None,
        driver: str | Driver | None,
        configure: Callable[[C], object] | None,
        check: Callable[[C], object] | None,
        reset: Callable[[C], object] | None,
        rollback_on_return: bool,
        max_waiting: int,
        max_lifetime: float,
        max_idle: float,
        reconnect_timeout: float,
        reconnect_failed: Callable[[Any], object] | None,
        num_workers: int,
        liveness_bypass: float | None,
        keepalive_interval: float | None,
        max_uses: int,
        on_close: Callable[[C, str], object] | None,
        secrets: Iterable[str] = (),
    ) -> None:
        if not callable(connect):
            raise TypeError(f"connect must be callable, got {type(connect).__name__}")
        self._connect_fn = connect
        min_size, max_size = _config.sizes(min_size, max_size)
        self.timeout = _config.seconds("timeout", timeout)
        self._driver = resolve(driver)
        self._configure = _config.callback("configure", configure)
        self._check = _config.callback("check", check)
        self._reset = _config.callback("reset", reset)
        self.rollback_on_return = _config.flag("rollback_on_return", rollback_on_return)
        self._reconnect_failed = _config.callback("reconnect_failed", reconnect_failed)
        self.num_workers = _config.integer(
            "num_workers", num_workers, minimum=1, maximum=_config.MAX_WORKERS
        )
        self._on_close = _config.callback("on_close", on_close)
        self._secrets = [s for s in secrets if s]
        name = _config.name(name)
        if not name:
            CorePool._num_pool += 1
            name = f"{self._name_prefix}-{CorePool._num_pool}"
        self.name: str = name
        self._core = _core.Core(
            name=name,
            min_size=min_size,
            max_size=max_size,
            max_waiting=_config.integer("max_waiting", max_waiting, maximum=_config.MAX_WAITING),
            max_lifetime=_config.seconds("max_lifetime", max_lifetime, positive=True),
            max_idle=_config.seconds("max_idle", max_idle, positive=True),
            reconnect_timeout=_config.seconds("reconnect_timeout", reconnect_timeout),
            null=False,
            max_uses=_config.integer("max_uses", max_uses),
            # Grow for a burst of waiters on every worker at once.
            max_connecting=self.num_workers,
            lifo=False,
            lifetime_jitter=_config.LIFETIME_JITTER,
            liveness_bypass=_config.optional_seconds("liveness_bypass", liveness_bypass),
            keepalive_interval=_config.optional_positive_seconds(
                "keepalive_interval", keepalive_interval
            ),
            leak_timeout=None,
        )
        self._lock = threading.Lock()
        self._workers = self._new_workers()
        # Set in a forked child: connections lent before the fork may come back.
        self._forked = False
        _fork.register(self)

    def _new_workers(self) -> Workers:
        # Workers is typed for ConnectionPool but needs only the methods
        # below (_open_connection, _validate, _close, _on_leak) and `name`.
        return Workers(self._core, cast("ConnectionPool[Any]", self), self.num_workers)

    def __repr__(self) -> str:
        cls = self.__class__
        return f"<{cls.__module__}.{cls.__name__} {self.name!r} at 0x{id(self):x}>"

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is None or not core.is_open:
            return
        for conn in core.close():
            self._close_quietly(conn)

    # ---- sizes and state ---------------------------------------------------

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
    def driver(self) -> Driver | None:
        """The driver profile in use (None until the first connection)."""
        return self._driver

    def get_stats(self) -> dict[str, int]:
        """Counters and measures, with psycopg_pool's keys."""
        return self._core.stats()

    def pop_stats(self) -> dict[str, int]:
        """Like `get_stats()`, then reset the counters to zero."""
        return self._core.stats(reset=True)

    # ---- opening and closing -----------------------------------------------

    def _open(self, *, fill: bool = False) -> None:
        """Open the core and start the workers. With *fill*, open min_size
        connections on this thread first and raise the driver's error if
        one fails (psycopg2's pools connect in their constructor)."""
        with self._lock:
            if self._core.is_open:
                return
            self._core.open()
            if fill:
                try:
                    self._fill()
                except BaseException:
                    for conn in self._core.close():
                        self._close(conn, "pool closed")
                    raise
            self._workers.start()

    def _fill(self) -> None:
        """Carry out the core's first actions (opening min_size connections)
        on the calling thread, before any worker runs."""
        while self._core.available < self._core.min_size:
            action = self._core.next_action(0.0)
            if action is None:
                return
            kind, ticket = action.kind, action.ticket
            if kind == _core.ActionKind.CREATE and ticket is not None:
                t0 = monotonic()
                try:
                    new = self._connect()
                except Exception as ex:
                    self._core.connect_failed(ticket, self._describe(ex))
                    raise
                self._report_connected(ticket, new, monotonic() - t0)
            elif kind == _core.ActionKind.CLOSE:
                self._close(cast("C", action.conn), str(action.reason))
            elif kind == _core.ActionKind.VALIDATE and ticket is not None:
                self._validate(ticket)

    def _wait_ready(self, timeout: float) -> None:
        """Wait until min_size connections are ready; close the pool and
        raise PoolTimeout (naming the last connection error) if not."""
        timeout = _config.seconds("timeout", timeout)
        if not self._core.is_open:
            raise PoolClosed(f"the pool {self.name!r} is not open")
        if not self._core.wait_ready(timeout):
            last = self._core.last_connect_error
            self._shutdown(5.0)
            msg = f"pool {self.name!r} initialization incomplete after {timeout} sec"
            if last:
                msg += f"; last connection error: {last}"
            raise PoolTimeout(msg)

    def _shutdown(self, timeout: float) -> None:
        """Close the core: close the idle connections (lent ones are closed
        when returned) and wait up to *timeout* seconds for the workers."""
        with self._lock:
            if not self._core.is_open:
                return
            conns = self._core.close()
        for conn in conns:
            self._close(conn, "pool closed")
        self._workers.join(timeout)

    # ---- borrowing -----------------------------------------------------------

    def _getconn(self, timeout: float | None) -> C:
        """A connection from the core: idle at once, or after a FIFO wait of
        up to *timeout* (or self.timeout) seconds; checked if `check` is set."""
        conn: C | None = self._core.checkout()
        if conn is not None and self._check is None:
            return conn
        timeout = self.timeout if timeout is None else _config.seconds("timeout", timeout)
        deadline = monotonic() + timeout
        while True:
            if conn is None:
                conn = cast("C", self._core.wait(deadline - monotonic()))
            if self._check is None or self._passes_check(conn):
                return conn
            conn = None

    def _passes_check(self, conn: C) -> bool:
        try:
            assert self._check is not None
            self._check(conn)
        except Exception as ex:
            logger.info("pool %r: connection failed check: %s", self.name, self._describe(ex))
            self._discard(conn, returned=False)
            return False
        except BaseException:
            self._checkin(conn)
            raise
        return True

    def _putconn(self, conn: C, *, rollback: bool | None = None) -> None:
        """Give *conn* back: rolled back if in a transaction (or if the driver
        cannot tell and *rollback*, default rollback_on_return, is true), the
        reset run, then kept or closed as the core says; discarded if broken,
        busy, or still not idle after all that."""
        driver = self._driver_of(conn)
        status = driver.status(conn)
        if status == _IDLE and self._reset is None:
            self._checkin(conn)
            return
        if rollback is None:
            rollback = self.rollback_on_return
        if status == Status.INTRANS or (status == Status.UNKNOWN and rollback):
            try:
                driver.rollback(conn)
            except Exception as ex:
                logger.warning(
                    "pool %r: rollback on return failed, discarding the connection: %s",
                    self.name,
                    self._describe(ex),
                )
                self._discard(conn, returned=True)
                return
            status = driver.status(conn)
        if status in (Status.BROKEN, Status.ACTIVE, Status.INTRANS):
            self._discard(conn, returned=True)
            return
        if self._reset is not None:
            try:
                self._reset(conn)
            except Exception as ex:
                logger.warning(
                    "pool %r: reset failed, discarding the connection: %s",
                    self.name,
                    self._describe(ex),
                )
                self._discard(conn, returned=True)
                return
            if driver.status(conn) not in (Status.IDLE, Status.UNKNOWN):
                logger.warning(
                    "pool %r: reset %r left the connection in a transaction; discarded",
                    self.name,
                    self._reset,
                )
                self._discard(conn, returned=True)
                return
        self._checkin(conn)

    def _checkin(self, conn: C) -> None:
        try:
            reason = self._core.checkin(conn)
        except ValueError:
            if not self._forked_conn(conn):
                raise
            return
        if reason is not None:
            self._close(conn, reason)

    def _discard(self, conn: C, *, returned: bool) -> None:
        """Take back a connection that must not be reused, and close it.
        *returned*: its borrower gave it back bad (returns_bad) rather than
        the pool found it broken (connections_lost)."""
        try:
            self._core.discard(conn, returned=returned)
        except ValueError:
            if not self._forked_conn(conn):
                raise
            return
        self._close(conn, "broken")

    def _forked_conn(self, conn: C) -> bool:
        """A connection lent before this process forked: close it quietly
        (the child's socket points at /dev/null). False if it is not one."""
        if not self._forked:
            return False
        self._close_quietly(conn)
        return True

    # ---- the workers' side ---------------------------------------------------

    def _connect(self) -> C:
        """A new connection, configured, not yet counted by the core."""
        conn = self._connect_fn()
        if self._driver is None:
            self._driver = detect(conn)
        if self._configure is not None:
            try:
                self._configure(conn)
                status = self._driver.status(conn)
                if status not in (Status.IDLE, Status.UNKNOWN):
                    raise RuntimeError(
                        f"configure {self._configure!r} left the connection in status"
                        f" {status.name}: it must commit or roll back"
                    )
            except BaseException:
                self._close_quietly(conn)
                raise
        return conn

    def _report_connected(self, ticket: _core.Ticket, conn: C, took: float) -> None:
        fd = self._driver_of(conn).socket(conn)
        if not self._core.connected(ticket, conn, took, fd):
            self._close_quietly(conn)

    def _open_connection(self, ticket: _core.Ticket) -> None:
        """Worker: open a connection on *ticket* and hand it to the core."""
        t0 = monotonic()
        try:
            conn = self._connect()
        except Exception as ex:
            message = self._describe(ex)
            logger.warning("error connecting in %r: %s", self.name, message)
            outcome = self._core.connect_failed(ticket, message)
            if outcome == _core.ConnectOutcome.GAVE_UP and self._reconnect_failed is not None:
                try:
                    self._reconnect_failed(self)
                except Exception as ex2:
                    logger.warning("reconnect_failed callback failed: %s", self._describe(ex2))
            return
        self._report_connected(ticket, conn, monotonic() - t0)

    def _validate(self, ticket: _core.Ticket) -> None:
        """Worker: ping a connection whose socket looked suspect or that is
        due for a keepalive; keep it if it answers, replace it if not."""
        conn = self._core.claim_validation(ticket)
        if conn is None:
            return
        try:
            self._driver_of(conn).ping(conn)
        except Exception as ex:
            logger.info("pool %r: connection failed its ping: %s", self.name, self._describe(ex))
            self._discard(conn, returned=False)
            return
        except BaseException:
            self._checkin(conn)
            raise
        if self._driver_of(conn).status(conn) not in (Status.IDLE, Status.UNKNOWN):
            self._discard(conn, returned=False)
        else:
            self._checkin(conn)

    def _on_leak(self, key: int, held: float, first: bool) -> None:
        # Leak tracking is not enabled on these pools (no leak_timeout).
        return

    def _close(self, conn: C, reason: str) -> None:
        """Close a connection the core no longer counts."""
        logger.debug("closing %s connection in pool %r", reason, self.name)
        if self._on_close is not None:
            try:
                self._on_close(conn, reason)
            except Exception as ex:
                logger.warning("pool %r: on_close hook failed: %s", self.name, self._describe(ex))
        self._close_quietly(conn)

    @staticmethod
    def _close_quietly(conn: Any) -> None:
        try:
            conn.close()
        except Exception as ex:
            logger.debug("error closing connection: %s", ex.__class__.__name__)

    def _driver_of(self, conn: C) -> Driver:
        driver = self._driver
        if driver is None:
            driver = self._driver = detect(conn)
        return driver

    # ---- maintenance -----------------------------------------------------------

    def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change the pool's sizes at runtime."""
        for conn in self._core.resize(*_config.sizes(min_size, max_size)):
            self._close(conn, "resized")

    def drain(self) -> None:
        """Replace every connection: idle ones now, lent ones when returned."""
        for conn in self._core.drain():
            self._close(conn, "drained")

    def check(self) -> None:
        """Ping every idle connection now; replace those that fail."""
        conns = self._core.take_for_check()
        try:
            while conns:
                conn = conns.pop()
                try:
                    self._driver_of(conn).ping(conn)
                except Exception as ex:
                    logger.warning(
                        "pool %r: discarding broken connection: %s", self.name, self._describe(ex)
                    )
                    self._discard(conn, returned=False)
                else:
                    self._checkin(conn)
        finally:
            for conn in conns:
                self._checkin(conn)

    # ---- fork safety -----------------------------------------------------------

    def _after_fork_in_child(self, devnull: int) -> None:
        """In a child process: forget the parent's connections, start over."""
        _fork.neutralise(self._core.restart_after_fork(), devnull)
        self._forked = True
        self._lock = threading.Lock()
        self._workers = self._new_workers()
        self._forget_leases()
        if self._core.is_open:
            self._workers.start()

    def _forget_leases(self) -> None:
        """Subclasses drop their bookkeeping of lent connections here."""

    # ---- messages --------------------------------------------------------------

    def _describe(self, ex: BaseException) -> str:
        return describe(ex, self._secrets)
