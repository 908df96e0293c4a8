"""A ferropool for any DB-API 2 driver: ``Pool(connect=...)``.

``connect`` is any callable returning a DB-API connection (psycopg2,
pg8000, PyMySQL, sqlite3, ...); the Rust core lends and counts the
connections, ferropool's worker threads open, ping and close them. The
API follows ferropool's ConnectionPool (psycopg_pool's): ``connection()``,
``getconn()``/``putconn()``, ``open()``/``wait()``/``close()``,
``get_stats()``.

What differs between drivers is how the pool learns whether a returned
connection is in a transaction (see ``_drivers``): where the driver keeps
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
from types import TracebackType
from typing import Any, Generic

from typing_extensions import Self

from .. import _config
from ._drivers import Driver, Status, detect
from ._pool import C, CorePool, logger

__all__ = ["Pool", "ping"]


def ping(conn: Any) -> None:
    """Raise if *conn* does not answer a ping; usable as ``check=``.

    PyMySQL: ``conn.ping(reconnect=False)``; psycopg: an empty query with a
    deadline; others: ``SELECT 1``, rolled back if it opened a transaction.
    """
    detect(conn).ping(conn)


class Pool(CorePool[C]):
    """A pool of connections opened by ``connect()``, on ferropool's core.

    ``min_size`` connections are kept open (opened in the background when
    the pool opens); up to ``max_size`` exist at once. A request finding no
    idle connection waits, in arrival order, up to ``timeout`` seconds
    (ferropool.PoolTimeout). A returned connection is rolled back if it is
    in a transaction, then ``reset`` runs; a broken one is replaced.
    """

    def __init__(
        self,
        connect: Callable[[], C],
        *,
        min_size: int = 4,
        max_size: int | None = None,
        timeout: float = 30.0,
        open: bool = True,
        name: str | None = None,
        driver: str | Driver | None = None,
        configure: Callable[[C], object] | None = None,
        check: Callable[[C], object] | None = None,
        reset: Callable[[C], object] | None = None,
        rollback_on_return: bool = True,
        max_waiting: int = 0,
        max_lifetime: float = 60 * 60.0,
        max_idle: float = 10 * 60.0,
        reconnect_timeout: float = 5 * 60.0,
        reconnect_failed: Callable[[Pool[C]], object] | None = None,
        num_workers: int = 3,
        liveness_bypass: float | None = 0.5,
        keepalive_interval: float | None = 60.0,
        max_uses: int = 0,
        on_close: Callable[[C, str], object] | None = None,
    ) -> None:
        _config.flag("open", open)
        super().__init__(
            connect,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            name=name,
            driver=driver,
            configure=configure,
            check=check,
            reset=reset,
            rollback_on_return=rollback_on_return,
            max_waiting=max_waiting,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            reconnect_timeout=reconnect_timeout,
            reconnect_failed=reconnect_failed,
            num_workers=num_workers,
            liveness_bypass=liveness_bypass,
            keepalive_interval=keepalive_interval,
            max_uses=max_uses,
            on_close=on_close,
        )
        if open:
            self._open()

    # ---- opening and closing -------------------------------------------------

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool: start the workers, which fill it to min_size.

        With *wait*, block until min_size connections are ready. Opening an
        open pool does nothing; a closed pool cannot be reopened.
        """
        _config.flag("wait", wait)
        timeout = _config.seconds("timeout", timeout)
        self._open()
        if wait:
            self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> None:
        """Wait until min_size connections are ready; close the pool and
        raise PoolTimeout (naming the last connection error) if not."""
        self._wait_ready(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool: idle connections now, lent ones when returned.
        Waits up to *timeout* seconds for the workers to stop."""
        self._shutdown(_config.seconds("timeout", timeout))

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- borrowing -------------------------------------------------------------

    def connection(self, timeout: float | None = None) -> _Lease[C]:
        """Lend a connection for a ``with`` block.

        On a normal exit the transaction is committed, on an exception it is
        rolled back (the exception propagates); then the connection goes
        back to the pool. Waits up to *timeout* (or ``self.timeout``)
        seconds for a connection (PoolTimeout).
        """
        return _Lease(self, timeout)

    def getconn(self, timeout: float | None = None) -> C:
        """Borrow a connection; give it back with `putconn()`."""
        return self._getconn(timeout)

    def putconn(self, conn: C, close: bool = False) -> None:
        """Give back a connection borrowed with `getconn()`.

        It is rolled back if in a transaction (or, where the driver cannot
        tell, always, unless rollback_on_return=False). With *close*, or if
        it is broken, it is closed and replaced instead (returns_bad).
        ValueError if this pool did not lend it.
        """
        if close:
            self._discard(conn, returned=True)
        else:
            self._putconn(conn)


class _Lease(Generic[C]):
    """What `Pool.connection()` returns: a connection lent for a block."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: Pool[C], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: C | None = None

    def __enter__(self) -> C:
        self._conn = conn = self._pool.getconn(self._timeout)
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        assert conn is not None
        self._conn = None
        pool = self._pool
        driver = pool._driver_of(conn)
        status = driver.status(conn)
        if status not in (Status.INTRANS, Status.UNKNOWN):
            pool._putconn(conn)
            return
        # The transaction ends here, so the return need not roll back
        # again (a round trip saved on drivers that cannot tell).
        ended = False
        try:
            if exc_type is None:
                conn.commit()  # type: ignore[attr-defined]
            else:
                try:
                    driver.rollback(conn)
                except Exception as ex:
                    logger.warning("error ignored in rollback: %s", ex.__class__.__name__)
                    return
            ended = True
        finally:
            if ended:
                pool._putconn(conn, rollback=False)
            else:
                pool._putconn(conn)
