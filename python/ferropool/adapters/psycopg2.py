"""Drop-ins for psycopg2's pools on ferropool's core.

Change the import and keep the code::

    # from psycopg2.pool import ThreadedConnectionPool
    from ferropool.adapters.psycopg2 import ThreadedConnectionPool

    pool = ThreadedConnectionPool(2, 10, "dbname=app")
    conn = pool.getconn()
    ...
    pool.putconn(conn)
    pool.closeall()

psycopg2's semantics are kept: ``(minconn, maxconn, *args, **kwargs)``
with args and kwargs passed to ``psycopg2.connect``, minconn connections
opened in the constructor (its error raised there), ``getconn(key=None)``
raising ``psycopg2.pool.PoolError`` at once when all maxconn connections
are lent, keyed connections, ``putconn(conn, key=None, close=False)``
rolling back an open transaction and discarding a lost connection,
``closeall()`` closing even the connections in use, the ``closed``,
``minconn`` and ``maxconn`` attributes.

What ferropool adds: one lock-free call into the core per getconn and
putconn (psycopg2's pools take a lock and scan lists), a connection
dead on the server (terminated backend, restarted server) replaced before
it is lent, idle connections pinged, replaced after ``pool_max_lifetime``,
fork safety, ``get_stats()``. Pool options are keywords prefixed with
``pool_`` so that they can never collide with ``psycopg2.connect``'s:

- ``pool_timeout`` (0): seconds getconn waits, in arrival order, for a
  connection when all maxconn are lent; 0 raises PoolError at once.
- ``pool_connect_timeout`` (30): seconds getconn waits for a connection
  being opened for it while the pool is below maxconn (psycopg2 connects
  on the calling thread; here a worker does).
- ``pool_name``, ``pool_max_lifetime`` (3600), ``pool_max_idle`` (600),
  ``pool_check`` (a callable run on each connection before it is lent),
  ``pool_num_workers`` (2).

Differences: connections above minconn are closed after ``pool_max_idle``
seconds idle rather than at once; SimpleConnectionPool is thread-safe
too (it is the same class).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import psycopg2
from psycopg2.extensions import TRANSACTION_STATUS_IDLE as _IDLE
from psycopg2.extensions import connection as Psycopg2Connection
from psycopg2.pool import PoolError

from ..base import PoolBase
from ..errors import PoolClosed, PoolTimeout, TooManyRequests
from ..runner import checks, fork
from ..runner import settings as defaults
from ..runner.runner import Runner
from ..runner.secrets import secrets_of
from ..runner.settings import Settings
from .drivers import PSYCOPG2, DbapiDriver

__all__ = ["AbstractConnectionPool", "PoolError", "SimpleConnectionPool", "ThreadedConnectionPool"]


class AbstractConnectionPool(PoolBase):
    """psycopg2's keyed pool API on ferropool's runner."""

    _runner: Runner[Psycopg2Connection]

    def __init__(
        self,
        minconn: int,
        maxconn: int,
        *args: Any,
        pool_timeout: float = 0.0,
        pool_connect_timeout: float = 30.0,
        pool_name: str | None = None,
        pool_max_lifetime: float = 60 * 60.0,
        pool_max_idle: float = 10 * 60.0,
        pool_check: Callable[[Psycopg2Connection], object] | None = None,
        pool_num_workers: int = 2,
        **kwargs: Any,
    ) -> None:
        self.minconn = int(minconn)
        self.maxconn = int(maxconn)
        if self.maxconn < self.minconn:
            raise ValueError(
                f"maxconn must be at least minconn, got minconn={minconn} maxconn={maxconn}"
            )
        self._args = args
        self._kwargs = kwargs
        dsn = args[0] if args and isinstance(args[0], str) else kwargs.get("dsn") or ""
        settings = Settings.build(
            name=defaults.pool_name(pool_name, "psycopg2"),
            min_size=self.minconn,
            max_size=self.maxconn,
            timeout=pool_timeout,
            max_lifetime=pool_max_lifetime,
            max_idle=pool_max_idle,
            num_workers=pool_num_workers,
            check=pool_check,
        )
        self._connect_timeout = checks.seconds("pool_connect_timeout", pool_connect_timeout)
        # Keyed leases, as psycopg2 keeps them: key -> connection, and
        # id(connection) -> key. Unkeyed requests get a fresh key.
        self._used: dict[Any, Psycopg2Connection] = {}
        self._rused: dict[int, Any] = {}
        self._keys = itertools.count(1)
        self._keys_lock = threading.Lock()
        self._closed = False
        driver = DbapiDriver(
            self._connect_psycopg2,
            PSYCOPG2,
            secrets_of(dsn if isinstance(dsn, str) else "", kwargs),
        )
        self._attach(Runner(settings, driver, self))
        fork.register(self)
        # psycopg2's pools connect minconn connections in their constructor
        # and raise the driver's error there.
        self._runner.open_filled()

    def _connect_psycopg2(self) -> Psycopg2Connection:
        conn: Psycopg2Connection = psycopg2.connect(*self._args, **self._kwargs)
        return conn

    @property
    def closed(self) -> bool:
        """True after closeall() (psycopg2's attribute)."""
        return self._closed

    def getconn(self, key: Any = None, timeout: float | None = None) -> Psycopg2Connection:
        """Get a free connection and assign it to *key* if not None.

        The same key returns the same connection until it is put back.
        Raises PoolError at once if all maxconn connections are lent
        (or after *timeout* seconds, default pool_timeout).
        """
        if self._closed:
            raise PoolError("connection pool is closed")
        if key is not None:
            conn = self._used.get(key)
            if conn is not None:
                return conn
        runner = self._runner
        conn = runner.core.checkout()
        if conn is None or runner.slow_checkout:
            conn = self._getconn_slow(conn, timeout)
        if key is None:
            key = next(self._keys)
        else:
            with self._keys_lock:
                other = self._used.get(key)
                if other is not None:
                    # Another thread took a connection for the same key
                    # meanwhile: the key shares that one, as in psycopg2.
                    self._runner.putconn(conn)
                    return other
                self._used[key] = conn
                self._rused[id(conn)] = key
                return conn
        self._used[key] = conn
        self._rused[id(conn)] = key
        return conn

    def _getconn_slow(self, conn: Any, timeout: float | None) -> Psycopg2Connection:
        wait = self.timeout if timeout is None else float(timeout)
        exhausted = len(self._used) >= self.maxconn
        if conn is None and not exhausted:
            # Below maxconn: psycopg2 would connect here; wait for the
            # connection the core asked a worker to open for us.
            wait = max(wait, self._connect_timeout)
        elif conn is None and wait <= 0:
            raise PoolError("connection pool exhausted")
        try:
            return self._runner.getconn(conn, wait)
        except PoolClosed:
            raise PoolError("connection pool is closed") from None
        except (PoolTimeout, TooManyRequests) as ex:
            last = self._runner.last_connect_error
            if last and not exhausted:
                raise psycopg2.OperationalError(last) from None
            raise PoolError(f"connection pool exhausted: {ex}") from None

    def putconn(
        self, conn: Psycopg2Connection | None = None, key: Any = None, close: bool = False
    ) -> None:
        """Put away a connection: rolled back if in a transaction, closed if
        lost or if *close*. PoolError if it was not lent by this pool."""
        if self._closed:
            raise PoolError("connection pool is closed")
        if key is None:
            key = self._rused.get(id(conn))
            if key is None:
                raise PoolError("trying to put unkeyed connection")
        if conn is None:
            conn = self._used.get(key)
            if conn is None:
                raise PoolError("trying to put unkeyed connection")
        # Forget the lease before the core can lend the connection again
        # (its id would then be another lease's). Single dict operations
        # need no lock: only keyed getconn's look-then-assign does.
        self._used.pop(key, None)
        self._rused.pop(id(conn), None)
        runner = self._runner
        if close:
            runner.discard(conn)
        elif runner.fast_checkin and not conn.closed and conn.get_transaction_status() == _IDLE:
            # The common case, in one call into the core.
            runner.checkin(conn)
        else:
            runner.putconn(conn)

    def closeall(self) -> None:
        """Close all connections, even those in use (psycopg2's semantics:
        code still using one will fail)."""
        if self._closed:
            raise PoolError("connection pool is closed")
        self._closed = True
        in_use = list(self._used.values())
        self._runner.close(defaults.CLOSE_TIMEOUT)
        for conn in in_use:
            self._runner.driver.close(conn)

    def after_fork_in_child(self, devnull: int) -> None:
        """In a child process: the keys name the parent's connections."""
        self._used = {}
        self._rused = {}
        self._keys_lock = threading.Lock()


class SimpleConnectionPool(AbstractConnectionPool):
    """psycopg2's SimpleConnectionPool; thread-safe here as well."""


class ThreadedConnectionPool(AbstractConnectionPool):
    """psycopg2's ThreadedConnectionPool, on ferropool's lock-free core."""
