"""ConnectionPool: psycopg_pool's synchronous pool on ferropool's Rust core.

The hot path, ``getconn`` and ``putconn`` of a healthy idle connection, is
one call into the core each way plus the ``conn._pool`` marker psycopg
expects; everything else (waiting, checks, rollback, reset, closing) lives
in slow-path methods. This module must never open a connection on the
requesting thread (the workers do), hold a lock while running user code,
log at INFO on the hot path, or put a password in a message.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from contextlib import suppress
from time import monotonic, sleep
from types import TracebackType
from typing import Any, Generic, cast

from psycopg import Connection
from psycopg.rows import TupleRow
from typing_extensions import Self, TypeVar

from . import _config, _core, sizing
from ._base import (
    ACTIVE,
    CHECK_BACKOFF_START,
    IDLE,
    INERROR,
    INTRANS,
    UNKNOWN,
    BasePool,
    caller_stacklevel,
    logger,
)
from ._compat import PoolConnection
from ._maintenance import Workers, abandon, close_quietly
from ._ping import ping
from .errors import PoolTimeout

CT = TypeVar("CT", bound="Connection[Any]", default="Connection[TupleRow]")

# psycopg_pool's default connection class, typed for the generic parameter.
_DEFAULT_CONNECTION_CLASS: Any = Connection


class ConnectionPool(BasePool, Generic[CT]):
    """A pool of psycopg connections, API-compatible with psycopg_pool's."""

    _pool_connection_class = PoolConnection

    def __init__(
        self,
        conninfo: str | Callable[[], str] = "",
        *,
        connection_class: type[CT] = _DEFAULT_CONNECTION_CLASS,
        kwargs: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
        min_size: int = 4,
        max_size: int | None = None,
        open: bool | None = None,
        configure: Callable[[CT], None] | None = None,
        check: Callable[[CT], None] | None = None,
        reset: Callable[[CT], None] | None = None,
        name: str | None = None,
        close_returns: bool = False,
        timeout: float = 30.0,
        max_waiting: int = 0,
        max_lifetime: float = 60 * 60.0,
        max_idle: float = 10 * 60.0,
        reconnect_timeout: float = 5 * 60.0,
        reconnect_failed: Callable[[ConnectionPool[Any]], None] | None = None,
        num_workers: int = 3,
        liveness_bypass: float | None = 0.5,
        keepalive_interval: float | None = 60.0,
        tcp_keepalives: bool = True,
        leak_timeout: float | None = None,
        max_uses: int = 0,
        max_connecting: int = 3,
        expect_primary: bool = False,
        lifo: bool = False,
        on_connect: Callable[[CT], None] | None = None,
        on_checkout: Callable[[CT], None] | None = None,
        on_checkin: Callable[[CT], None] | None = None,
        on_close: Callable[[CT, str], None] | None = None,
        on_error: Callable[[BaseException, CT | None], None] | None = None,
        server: str = "postgresql",
        budget_share: float | None = None,
    ) -> None:
        if open is not None:
            _config.flag("open", open)
        super().__init__(
            conninfo,
            connection_class=connection_class,
            kwargs=kwargs,
            min_size=min_size,
            max_size=max_size,
            configure=configure,
            check=check,
            reset=reset,
            name=name,
            close_returns=close_returns,
            timeout=timeout,
            max_waiting=max_waiting,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            reconnect_timeout=reconnect_timeout,
            reconnect_failed=reconnect_failed,
            num_workers=num_workers,
            liveness_bypass=liveness_bypass,
            keepalive_interval=keepalive_interval,
            tcp_keepalives=tcp_keepalives,
            leak_timeout=leak_timeout,
            max_uses=max_uses,
            max_connecting=max_connecting,
            expect_primary=expect_primary,
            lifo=lifo,
            on_connect=on_connect,
            on_checkout=on_checkout,
            on_checkin=on_checkin,
            on_close=on_close,
            on_error=on_error,
            server=server,
            budget_share=budget_share,
        )
        self._workers = Workers(self._core, self, self._worker_count)
        self._open_lock = threading.Lock()
        if open is None:
            open = self._open_implicit = True
            self._update_fast_path()
        if open:
            self._open()

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is None or not core.is_open:
            return
        abandon(core)

    def _warn_open_implicit(self) -> None:
        warnings.warn(
            f"the default for the {type(self).__name__} 'open' parameter will"
            " become 'False' in a future release. Please use open={True|False}"
            " explicitly, or use the pool as context manager using:"
            f" `with {type(self).__name__}(...) as pool: ...`",
            DeprecationWarning,
            stacklevel=caller_stacklevel(),
        )

    # ---- opening and closing ------------------------------------------

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool: start the workers and fill it to min_size.

        With *wait*, block until min_size connections are ready (see
        `wait()`). Opening an open pool does nothing; a closed pool cannot be
        reopened (PoolClosed).
        """
        _config.flag("wait", wait)
        timeout = _config.seconds("timeout", timeout)
        with self._open_lock:
            self._open()
        if wait:
            self.wait(timeout=timeout)

    def _open(self) -> None:
        if self._core.is_open:
            return
        sizing.resolve_share(self)
        self._core.open()
        self._workers.start()

    def wait(self, timeout: float = 30.0) -> None:
        """Wait until min_size connections are ready.

        Close the pool and raise PoolTimeout if not ready within *timeout*
        seconds; the message names the last connection error.
        """
        timeout = _config.seconds("timeout", timeout)
        self._check_open_getconn()
        logger.info("waiting for pool %r initialization", self.name)
        if not self._core.wait_ready(timeout):
            last = self._core.last_connect_error
            self.close()
            raise self._init_timeout(timeout, last)
        logger.info("pool %r is ready to use", self.name)

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool and make it unavailable to new clients.

        Waiting and future requests fail with PoolClosed. Connections in use
        are closed when returned. Waits up to *timeout* seconds for the
        workers to finish.
        """
        timeout = _config.seconds("timeout", timeout)
        with self._open_lock:
            if not self._core.is_open:
                return
            conns = self._core.close()
        logger.debug("pool %r closed", self.name)
        for conn in conns:
            self._close(conn, "pool closed")
        self._workers.join(timeout)

    def __enter__(self) -> Self:
        self._open_implicit = False
        self._update_fast_path()
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- borrowing ------------------------------------------------------

    def connection(self, timeout: float | None = None) -> _ConnectionContext[CT]:
        """Context manager lending a connection for the duration of a block.

        Waits up to *timeout* (or `self.timeout`) seconds, raising
        PoolTimeout. On exit the transaction is committed, or rolled back if
        the block raised, and the connection goes back to the pool (replaced
        if it is broken).
        """
        return _ConnectionContext(self, timeout)

    def getconn(self, timeout: float | None = None) -> CT:
        """Borrow a connection; give it back with `putconn()`.

        Prefer `connection()`. Waits up to *timeout* (or `self.timeout`)
        seconds, raising PoolTimeout.
        """
        if timeout is not None:
            timeout = _config.seconds("timeout", timeout)
        conn: CT | None = self._core.checkout()
        if conn is None or self._getconn_needs_slow_path:
            return self._getconn_slow(conn, timeout)
        conn._pool = self  # type: ignore[assignment]
        return conn

    def _getconn_slow(self, conn: Any, timeout: float | None) -> CT:
        if self._open_implicit:
            self._check_open_getconn()
        if timeout is None:
            timeout = self.timeout
        deadline = monotonic() + timeout
        backoff = 0.0
        while True:
            if conn is None:
                try:
                    conn = self._take(deadline)
                except PoolTimeout:
                    if backoff:
                        raise PoolTimeout(
                            f"couldn't get a connection after {timeout:.2f} sec"
                        ) from None
                    raise
            if self._check is None or self._passes_check(conn):
                conn._pool = self
                self._track_lease(conn)
                self._hook("on_checkout", conn)
                return cast("CT", conn)
            conn = None
            # A failing check usually means the server is in trouble: pace
            # the retries rather than spin through the pool.
            left = deadline - monotonic()
            backoff = backoff * 2 if backoff else CHECK_BACKOFF_START
            if left <= 0:
                raise PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec")
            sleep(min(backoff, left))

    def _take(self, deadline: float) -> Any:
        """Wait for a connection in the core's FIFO queue."""
        return self._core.wait(deadline - monotonic())

    def _passes_check(self, conn: Any) -> bool:
        try:
            assert self._check is not None
            self._check(conn)
        except Exception as ex:
            logger.info("connection failed check: %s", ex.__class__.__name__)
            self._hook("on_error", ex, conn)
            self._discard(conn, returned=False, exc=ex)
            return False
        except BaseException:
            # Cancelled or interrupted: don't lose the connection.
            self._give_back(conn)
            raise
        return True

    def _give_back(self, conn: Any) -> None:
        """Return a connection the pool lent itself (check, interrupted
        checkout): kept if healthy and idle, else discarded and closed."""
        if conn.pgconn.transaction_status == IDLE:
            reason = self._core.checkin(conn)
            if reason is not None:
                self._close(conn, reason)
        else:
            self._discard(conn, returned=False)

    def putconn(self, conn: CT) -> None:
        """Give back a connection borrowed with `getconn()`."""
        try:
            lender = conn._pool
        except AttributeError:
            lender = None
        if lender is not self:  # type: ignore[comparison-overlap]
            self._refuse(conn, lender)
        conn._pool = None
        if conn.pgconn.transaction_status == IDLE and self._putconn_fast:
            try:
                reason = self._core.checkin(conn)
            except ValueError as ex:
                self._refuse_after_fork(conn, ex)
                return
            if reason is not None:
                self._close(conn, reason)
            return
        self._putconn_slow(conn)

    def _refuse_after_fork(self, conn: Any, ex: ValueError) -> None:
        """A connection the core does not know: lent before this process
        was forked (close it: its socket points at /dev/null), or a bug."""
        if not self._forked:
            raise ex
        close_quietly(conn)

    def _putconn_slow(self, conn: Any) -> None:
        """Return a connection that needs work first: rollback, reset, close."""
        self._untrack_lease(conn)
        self._hook("on_checkin", conn)
        status = conn.pgconn.transaction_status
        if status in (INTRANS, INERROR):
            logger.warning("rolling back returned connection in pool %r", self.name)
            try:
                conn.rollback()
            except Exception as ex:
                logger.warning("rollback failed: %s; discarding connection", ex.__class__.__name__)
                conn.close()
        elif status == ACTIVE:
            # Returned in the middle of an operation: it cannot be reused.
            logger.warning("closing connection returned during an operation")
            conn.close()
        if conn.pgconn.transaction_status == UNKNOWN:
            self._discard(conn, returned=True)
            return
        if self._reset is not None and not self._reset_ok(conn):
            self._discard(conn, returned=True)
            return
        try:
            reason = self._core.checkin(conn)
        except ValueError as ex:
            self._refuse_after_fork(conn, ex)
            return
        if reason is not None:
            self._close(conn, reason)

    def _putconn_failed(self, conn: Any, exc: BaseException) -> None:
        """Return a connection whose block failed because the server went
        away or changed role: retire it and every sibling opened before."""
        if conn._pool is not self:
            self._refuse(conn, conn._pool)
        conn._pool = None
        self._untrack_lease(conn)
        self._hook("on_checkin", conn)
        self._hook("on_error", exc, conn)
        self._discard(conn, returned=False, exc=exc)

    def _discard(self, conn: Any, *, returned: bool, exc: BaseException | None = None) -> None:
        """Take back a broken connection and close it; if it broke because
        the server went away, retire all its siblings too."""
        # Failover first: it recognises the connection (still lent) and does
        # nothing if an earlier failover already retired it.
        siblings = self._failover_conns(conn, exc) if self._is_failover(exc, conn) else []
        try:
            self._core.discard(conn, returned=returned)
        except ValueError as ex2:
            self._refuse_after_fork(conn, ex2)
            return
        self._close(conn, "broken")
        for c in siblings:
            self._close(c, "failover")

    def _reset_ok(self, conn: Any) -> bool:
        """Run the reset (psycopg_pool's callback, or "discard"); False if
        the connection must be discarded."""
        assert self._reset is not None
        try:
            if self._reset == "discard":
                self._discard_session(conn)
            else:
                self._reset(conn)
            self._require_idle(conn, "reset", self._reset)
        except Exception as ex:
            logger.warning("error resetting connection: %s", self._describe(ex))
            self._hook("on_error", ex, conn)
            return False
        return True

    @staticmethod
    def _discard_session(conn: Any) -> None:
        """DISCARD ALL: SET values, temporary tables, prepared statements,
        LISTEN, advisory locks and cached plans all go. It cannot run in a
        transaction block, hence autocommit for the statement."""
        autocommit = conn.autocommit
        conn.autocommit = True
        try:
            conn.execute("DISCARD ALL")
        finally:
            conn.autocommit = autocommit

    def _close(self, conn: Any, reason: str) -> None:
        """Close a connection the pool no longer counts."""
        logger.debug("closing %s connection in pool %r", reason, self.name)
        self._hook("on_close", conn, reason)
        close_quietly(conn)

    def _hook(self, name: str, *args: Any) -> None:
        """Run a user hook; its failure is logged and changes nothing."""
        hook = self._hooks[name]
        if hook is None:
            return
        try:
            hook(*args)
        except Exception as ex:
            self._hook_error(name, ex)

    # ---- maintenance ----------------------------------------------------

    def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change the size of the pool during runtime."""
        min_size, max_size = _config.sizes(min_size, max_size)
        for conn in self._core.resize(min_size, max_size):
            self._close(conn, "resized")
        logger.info("resized %r to min_size=%s max_size=%s", self.name, min_size, max_size)

    def check(self) -> None:
        """Check every idle connection now; replace those that fail."""
        self._check_open_getconn()
        conns = self._core.take_for_check()
        try:
            while conns:
                conn = conns[-1]
                try:
                    self.check_connection(conn)
                except Exception as ex:
                    logger.warning("discarding broken connection in pool %r", self.name)
                    conns.pop()
                    self._hook("on_error", ex, conn)
                    self._discard(conn, returned=False, exc=ex)
                else:
                    conns.pop()
                    self._give_back(conn)
        finally:
            # Interrupted (KeyboardInterrupt, ...): every connection taken
            # for the check goes back, none is lost.
            for conn in conns:
                self._give_back(conn)

    def drain(self) -> None:
        """Replace every connection: idle ones now, lent ones when returned."""
        for conn in self._core.drain():
            self._close(conn, "drained")

    @staticmethod
    def check_connection(conn: CT) -> None:
        """Raise if *conn* doesn't answer an empty query; usable as `check`."""
        if conn.autocommit:
            conn.execute("")
        else:
            conn.autocommit = True
            try:
                conn.execute("")
            finally:
                with suppress(Exception):
                    conn.autocommit = False

    def reconnect_failed(self) -> None:
        """Called when connection attempts failed for reconnect_timeout."""
        if self._reconnect_failed is not None:
            self._reconnect_failed(self)

    # ---- connecting (worker threads) ------------------------------------

    def _open_connection(self, ticket: _core.Ticket) -> None:
        """Open a connection on *ticket* and hand it to the core."""
        t0 = monotonic()
        try:
            conn = self._connect()
        except Exception as ex:
            self._hook("on_error", ex, None)
            if self._connect_failed(ticket, ex):
                try:
                    self.reconnect_failed()
                except Exception as ex2:
                    logger.warning("reconnect_failed callback failed: %s", self._describe(ex2))
            return
        if not self._core.connected(ticket, conn, monotonic() - t0, _socket_of(conn)):
            close_quietly(conn)

    def _validate(self, ticket: _core.Ticket) -> None:
        """Ping a connection whose socket looked suspect, or that is due for
        a keepalive ping; keep it if it answers, replace it if not."""
        conn = self._core.claim_validation(ticket)
        if conn is None:
            return
        try:
            ping(conn)
        except Exception as ex:
            logger.info("pool %r: connection failed its ping: %s", self.name, self._describe(ex))
            self._hook("on_error", ex, conn)
            self._discard(conn, returned=False, exc=ex)
        except BaseException:
            self._give_back(conn)
            raise
        else:
            self._give_back(conn)

    def _on_leak(self, key: int, held: float, first: bool) -> None:
        conn = self._leaked(key, held, first)
        if conn is not None:
            self._close(conn, "leaked")

    def _restart_after_fork(self, was_open: bool) -> None:
        # Threads and locks do not survive fork(): new ones, on the new core.
        self._open_lock = threading.Lock()
        self._workers = Workers(self._core, self, self._worker_count)
        if was_open:
            self._workers.start()

    def _connect(self, timeout: float | None = None) -> CT:
        """A new connection, configured, not yet lent."""
        conninfo, kwargs = self._resolve_params()
        self._prepare_connect(conninfo, kwargs, timeout)
        conn = cast("CT", self.connection_class.connect(conninfo, **kwargs))
        # Marked as pooled while configure runs, so `with conn:` inside it
        # does not close the connection.
        conn._pool = self  # type: ignore[assignment]
        try:
            if self._configure is not None:
                self._configure(conn)
                self._require_idle(conn, "configure", self._configure)
        except BaseException:
            close_quietly(conn)
            raise
        # Present but None: psycopg then knows the connection is pooled and
        # does not warn about it being open at exit.
        conn._pool = None
        self._hook("on_connect", conn)
        return conn

    def _resolve_params(self) -> tuple[str, dict[str, Any]]:
        """One attempt's conninfo and kwargs (callables called), noted for
        masking their secrets in messages about the attempt."""
        conninfo = self.conninfo() if callable(self.conninfo) else self.conninfo
        kwargs = self.kwargs() if callable(self.kwargs) else self.kwargs
        return self._resolved(conninfo, kwargs)


def _socket_of(conn: Any) -> int | None:
    """The connection's socket, for the core's liveness polls."""
    try:
        fd = conn.pgconn.socket
    except Exception:
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class _ConnectionContext(Generic[CT]):
    """What `pool.connection()` returns: a connection lent for a block.

    A small class rather than a generator-based context manager: it is on
    the hot path, and a generator costs about a microsecond per block.
    """

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: ConnectionPool[CT], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: CT | None = None

    def __enter__(self) -> CT:
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
        try:
            status = conn.pgconn.transaction_status
            if status != IDLE and status != UNKNOWN:
                # The `with conn:` semantics: commit on success, roll back on
                # error without hiding the error.
                if exc_type is None:
                    conn.commit()
                else:
                    try:
                        conn.rollback()
                    except Exception as ex:
                        logger.warning("error ignored in rollback: %s", ex.__class__.__name__)
        finally:
            pool = self._pool
            if exc_val is not None and pool._is_failover(exc_val):
                pool._putconn_failed(conn, exc_val)
            else:
                pool.putconn(conn)
