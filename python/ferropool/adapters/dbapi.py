"""A ferropool for any DB-API 2 driver: ``Pool(connect=...)``.

``connect`` is any callable returning a DB-API connection (psycopg2,
pg8000, PyMySQL, sqlite3, ...). The pool is the same runner as
ConnectionPool's (ferropool.runner) over a DB-API driver, so it has every
safety feature ConnectionPool has: liveness checks at checkout, keepalive
pings, failover drain, leak reports, pause, lifetimes, fork safety, stats.
The API follows ConnectionPool (psycopg_pool's): ``connection()``,
``getconn()``/``putconn()``, ``open()``/``wait()``/``close()``,
``resize()``, ``check()``, ``drain()``, ``get_stats()``.

What differs between drivers is how the pool learns whether a returned
connection is in a transaction (see ``drivers``): where the driver keeps
that state in memory (psycopg2, psycopg, pg8000, sqlite3) an idle
connection goes back at no cost; where it does not (PyMySQL, unknown
drivers) every return rolls back, one round trip, unless
``rollback_on_return=False`` says the application never leaves a
transaction open (autocommit everywhere).

Connections are opened on worker threads and used on the borrowers':
drivers that bind a connection to its thread must be told not to
(``sqlite3.connect(..., check_same_thread=False)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..base import PoolBase
from ..context import ConnectionContext
from ..runner import checks
from ..runner import settings as defaults
from ..runner.runner import Runner
from ..runner.settings import Settings
from ..runner.status import Status
from ..scope import OpenClose
from .drivers import DbapiDriver, Profile, detect, resolve

__all__ = ["Pool", "ping"]

C = TypeVar("C")


def ping(conn: Any) -> None:
    """Raise if *conn* does not answer a ping; usable as ``check=``.

    PyMySQL: ``conn.ping(reconnect=False)``; psycopg: an empty query with a
    deadline; others: ``SELECT 1``, rolled back if it opened a transaction.
    """
    detect(conn).ping(conn)


class Pool(PoolBase, OpenClose, Generic[C]):
    """A pool of connections opened by ``connect()``, on ferropool's core.

    ``min_size`` connections are kept open (opened in the background when
    the pool opens); up to ``max_size`` exist at once. A request finding no
    idle connection waits, in arrival order, up to ``timeout`` seconds
    (ferropool.PoolTimeout). A returned connection is rolled back if it is
    in a transaction, then ``reset`` runs; a broken one is replaced.
    """

    _runner: Runner[C]
    # Names of unnamed pools: f"{_name_prefix}-{n}".
    _name_prefix = "dbapi"

    def __init__(
        self,
        connect: Callable[[], C],
        *,
        min_size: int = defaults.MIN_SIZE,
        max_size: int | None = None,
        timeout: float = defaults.TIMEOUT,
        open: bool = True,
        name: str | None = None,
        driver: str | Profile | None = None,
        configure: Callable[[C], object] | None = None,
        check: Callable[[C], object] | None = None,
        reset: Callable[[C], object] | None = None,
        rollback_on_return: bool = True,
        max_waiting: int = defaults.MAX_WAITING,
        max_lifetime: float = defaults.MAX_LIFETIME,
        max_idle: float = defaults.MAX_IDLE,
        reconnect_timeout: float = defaults.RECONNECT_TIMEOUT,
        reconnect_failed: Callable[[Pool[C]], object] | None = None,
        num_workers: int = defaults.NUM_WORKERS,
        liveness_bypass: float | None = defaults.LIVENESS_BYPASS,
        keepalive_interval: float | None = defaults.KEEPALIVE_INTERVAL,
        leak_timeout: float | None = None,
        max_uses: int = defaults.MAX_USES,
        max_connecting: int | None = None,
        expect_primary: bool = False,
        lifo: bool = False,
        on_connect: Callable[[C], object] | None = None,
        on_checkout: Callable[[C], object] | None = None,
        on_checkin: Callable[[C], object] | None = None,
        on_close: Callable[[C, str], object] | None = None,
        on_error: Callable[[BaseException, C | None], object] | None = None,
        secrets: list[str] | None = None,
    ) -> None:
        """*secrets*: passwords that messages about connecting must never
        show (the pool cannot see inside ``connect``)."""
        checks.flag("open", open)
        settings = Settings.of(
            locals(),
            name=defaults.pool_name(name, self._name_prefix),
            # A callback only: "discard" (DISCARD ALL) is PostgreSQL's.
            reset=checks.callback("reset", reset),
        )
        self.rollback_on_return = checks.flag("rollback_on_return", rollback_on_return)
        self._driver: DbapiDriver[C] = DbapiDriver(connect, resolve(driver), secrets or [])
        self._attach(Runner(settings, self._driver, self))
        if open:
            self._runner.open()

    @property
    def driver(self) -> Profile | None:
        """The driver profile in use (None until the first connection)."""
        return self._driver.profile

    # ---- opening and closing ----------------------------------------------------

    def open(self, wait: bool = False, timeout: float = defaults.OPEN_TIMEOUT) -> None:
        """Open the pool: start the workers, which fill it to min_size.

        With *wait*, block until min_size connections are ready. Opening an
        open pool does nothing; a closed pool cannot be reopened.
        """
        checks.flag("wait", wait)
        timeout = checks.seconds("timeout", timeout)
        self._runner.open()
        if wait:
            self.wait(timeout)

    def wait(self, timeout: float = defaults.OPEN_TIMEOUT) -> None:
        """Wait until min_size connections are ready; close the pool and
        raise PoolTimeout (naming the last connection error) if not."""
        self._runner.wait(checks.seconds("timeout", timeout))

    def close(self, timeout: float = defaults.CLOSE_TIMEOUT) -> None:
        """Close the pool: idle connections now, lent ones when returned.
        Waits up to *timeout* seconds for the workers to stop."""
        self._runner.close(checks.seconds("timeout", timeout))

    # ---- borrowing -----------------------------------------------------------------

    def connection(self, timeout: float | None = None) -> ConnectionContext[C]:
        """Lend a connection for a ``with`` block.

        On a normal exit the transaction is committed, on an exception it is
        rolled back (the exception propagates); then the connection goes
        back to the pool. Waits up to *timeout* (or ``self.timeout``)
        seconds for a connection (PoolTimeout).
        """
        return ConnectionContext(self, self._runner, timeout)

    def getconn(self, timeout: float | None = None) -> C:
        """Borrow a connection; give it back with `putconn()`."""
        if timeout is not None:
            timeout = checks.seconds("timeout", timeout)
        runner = self._runner
        conn: C | None = runner.core.checkout()
        if conn is None or runner.slow_checkout:
            return runner.getconn(conn, timeout)
        return conn

    def putconn(self, conn: C, close: bool = False) -> None:
        """Give back a connection borrowed with `getconn()`.

        It is rolled back if in a transaction (or, where the driver cannot
        tell, always, unless rollback_on_return=False). With *close*, or if
        it is broken, it is closed and replaced instead (returns_bad).
        ValueError if this pool did not lend it.
        """
        runner = self._runner
        if close:
            runner.discard(conn)
        elif runner.fast_checkin and self._driver.status(conn) == Status.IDLE:
            runner.checkin(conn)
        else:
            runner.putconn(conn, rollback_unknown=self.rollback_on_return)

    # ---- maintenance -------------------------------------------------------------

    def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change the pool's sizes at runtime."""
        self._runner.resize(*checks.sizes(min_size, max_size))

    def check(self) -> None:
        """Ping every idle connection now; replace those that fail."""
        self._runner.check(self._driver.ping)

    def drain(self) -> None:
        """Replace every connection: idle ones now, lent ones when returned."""
        self._runner.drain()

    def reconnect_failed(self) -> None:
        """Called when connection attempts failed for reconnect_timeout."""
        callback = self._runner.settings.reconnect_failed
        if callback is not None:
            callback(self)
