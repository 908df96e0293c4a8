"""AsyncConnectionPool: psycopg_pool's asyncio pool on the same Rust core.

Same slots, capacity accounting, lifetimes and FIFO handoff as the sync
pool. A request that has to wait queues in the core with a callback that
completes a future through the loop's thread-safe call: it is woken by the
handoff itself, never by polling. Cancellation is safe at every await: a
request cancelled while queued never takes a connection with it (the core's
handshake gives a connection granted meanwhile back to the pool), and a
connection held by a cancelled task is rolled back and returned.

This module must never block the event loop, open a connection on the
requesting task (maintenance tasks do), or put a password in a message.
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import partial
from time import monotonic
from types import TracebackType
from typing import Any, Generic, cast

from psycopg import AsyncConnection
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
from ._maintenance_async import AsyncWorkers, abandon, close_quietly_async
from ._ping import aping
from .errors import PoolTimeout
from .pool import _socket_of

ACT = TypeVar("ACT", bound="AsyncConnection[Any]", default="AsyncConnection[TupleRow]")

_DEFAULT_CONNECTION_CLASS: Any = AsyncConnection


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    """Called by the core, from any thread, when a wait is resolved."""
    if asyncio._get_running_loop() is loop:
        # On the loop's own thread (a return from another task): no need
        # for the self-pipe round trip of call_soon_threadsafe.
        _resolve(fut)
        return
    with suppress(RuntimeError):  # the loop closed: nobody is waiting
        loop.call_soon_threadsafe(_resolve, fut)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _AsyncPoolConnection(AsyncConnection[Any]):
    """psycopg < 3.3: an async connection whose close() returns it to its pool."""

    async def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            await pool.putconn(self)
        else:
            await super().close()


class AsyncConnectionPool(BasePool, Generic[ACT]):
    """An asyncio pool of psycopg connections, API-compatible with psycopg_pool's."""

    _pool_connection_class = _AsyncPoolConnection
    _default_connection_class = AsyncConnection

    def __init__(
        self,
        conninfo: str | Callable[[], str] | Callable[[], Awaitable[str]] = "",
        *,
        connection_class: type[ACT] = _DEFAULT_CONNECTION_CLASS,
        kwargs: dict[str, Any]
        | Callable[[], dict[str, Any]]
        | Callable[[], Awaitable[dict[str, Any]]]
        | None = None,
        min_size: int = 4,
        max_size: int | None = None,
        open: bool | None = None,
        configure: Callable[[ACT], Awaitable[None]] | None = None,
        check: Callable[[ACT], Awaitable[None]] | None = None,
        reset: Callable[[ACT], Awaitable[None]] | None = None,
        name: str | None = None,
        close_returns: bool = False,
        timeout: float = 30.0,
        max_waiting: int = 0,
        max_lifetime: float = 60 * 60.0,
        max_idle: float = 10 * 60.0,
        reconnect_timeout: float = 5 * 60.0,
        reconnect_failed: Callable[[AsyncConnectionPool[Any]], Any] | None = None,
        num_workers: int = 3,
        liveness_bypass: float | None = 0.5,
        keepalive_interval: float | None = 60.0,
        tcp_keepalives: bool = True,
        leak_timeout: float | None = None,
        max_uses: int = 0,
        max_connecting: int = 3,
        expect_primary: bool = False,
        lifo: bool = False,
        on_connect: Callable[[ACT], None] | None = None,
        on_checkout: Callable[[ACT], None] | None = None,
        on_checkin: Callable[[ACT], None] | None = None,
        on_close: Callable[[ACT, str], None] | None = None,
        on_error: Callable[[BaseException, ACT | None], None] | None = None,
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
        self._workers = AsyncWorkers(self._core, self, self._worker_count)
        self._open_lock: asyncio.Lock | None = None
        self._workers_pending = False
        self._ready_waiters: list[asyncio.Future[None]] = []
        if open:
            self._warn_open_async()
        if open is None:
            open = self._open_implicit = True
            self._update_fast_path()
        if open:
            self._open()

    def _warn_open_async(self) -> None:
        warnings.warn(
            f"opening the async pool {type(self).__name__} in the constructor"
            " is deprecated and will not be supported anymore in a future"
            " release. Please use `await pool.open()`, or use the pool as context"
            f" manager using: `async with {type(self).__name__}(...) as pool: `...",
            RuntimeWarning,
            stacklevel=caller_stacklevel(),
        )

    def _warn_open_implicit(self) -> None:
        self._warn_open_async()

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is None or not core.is_open:
            return
        # No loop to await on here: release the sockets synchronously.
        abandon(core)

    # ---- opening and closing ------------------------------------------

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool: start the maintenance tasks and fill it to min_size.

        With *wait*, wait until min_size connections are ready. Opening an
        open pool does nothing; a closed pool cannot be reopened.
        """
        _config.flag("wait", wait)
        timeout = _config.seconds("timeout", timeout)
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            self._open()
        if self._budget_task is not None:
            await self._budget_task
        if wait:
            await self.wait(timeout=timeout)

    def _open(self) -> None:
        if self._core.is_open:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(f"{type(self).__name__} open with no running loop") from None
        self._core.open()
        if self._budget_pending:
            # budget_share: size the pool before the workers fill it.
            self._budget_task = loop.create_task(self._open_sized(loop))
        else:
            self._workers.start(loop)

    async def _open_sized(self, loop: asyncio.AbstractEventLoop) -> None:
        await sizing.aresolve_share(self)
        if self._core.is_open:
            self._workers.start(loop)

    async def wait(self, timeout: float = 30.0) -> None:
        """Wait until min_size connections are ready.

        Close the pool and raise PoolTimeout if not ready within *timeout*
        seconds; the message names the last connection error.
        """
        timeout = _config.seconds("timeout", timeout)
        self._check_open_getconn()
        logger.info("waiting for pool %r initialization", self.name)
        ready = await self._wait_ready(timeout)
        if not ready:
            last = self._core.last_connect_error
            await self.close()
            raise self._init_timeout(timeout, last)
        logger.info("pool %r is ready to use", self.name)

    async def _wait_ready(self, timeout: float) -> bool:
        """Wait on the loop (no thread) until min_size connections are idle.
        Woken when a connection is added (`_open_connection`) or the pool
        closes; a short re-check covers connections returned by borrowers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._core.available >= self._core.min_size:
                return True
            left = deadline - loop.time()
            if left <= 0 or not self._core.is_open:
                return False
            fut: asyncio.Future[None] = loop.create_future()
            self._ready_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, min(left, 0.1))
            except asyncio.TimeoutError:
                pass
            finally:
                with suppress(ValueError):
                    self._ready_waiters.remove(fut)

    def _notify_ready(self) -> None:
        for fut in self._ready_waiters:
            _resolve(fut)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool and make it unavailable to new clients.

        Waiting and future requests fail with PoolClosed. Connections in use
        are closed when returned. Waits up to *timeout* seconds for the
        maintenance tasks to finish.
        """
        timeout = _config.seconds("timeout", timeout)
        if not self._core.is_open:
            return
        conns = self._core.close()
        self._notify_ready()
        logger.debug("pool %r closed", self.name)
        for conn in conns:
            await self._close(conn, "pool closed")
        await self._workers.join(timeout)

    async def __aenter__(self) -> Self:
        self._open_implicit = False
        self._update_fast_path()
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- borrowing ------------------------------------------------------

    def connection(self, timeout: float | None = None) -> _AsyncConnectionContext[ACT]:
        """Async context manager lending a connection for a block.

        Waits up to *timeout* (or `self.timeout`) seconds, raising
        PoolTimeout. On exit the transaction is committed, or rolled back if
        the block raised (or was cancelled), and the connection goes back to
        the pool.
        """
        return _AsyncConnectionContext(self, timeout)

    async def getconn(self, timeout: float | None = None) -> ACT:
        """Borrow a connection; give it back with `putconn()`."""
        if timeout is not None:
            timeout = _config.seconds("timeout", timeout)
        conn: ACT | None = self._core.checkout()
        if conn is None or self._getconn_needs_slow_path:
            return await self._getconn_slow(conn, timeout)
        conn._pool = self  # type: ignore[assignment]
        return conn

    async def _getconn_slow(self, conn: Any, timeout: float | None) -> ACT:
        if self._open_implicit:
            self._check_open_getconn()
        if timeout is None:
            timeout = self.timeout
        deadline = monotonic() + timeout
        backoff = 0.0
        while True:
            if conn is None:
                try:
                    conn = await self._take(deadline)
                except PoolTimeout:
                    if backoff:
                        raise PoolTimeout(
                            f"couldn't get a connection after {timeout:.2f} sec"
                        ) from None
                    raise
            if self._check is None or await self._passes_check(conn):
                conn._pool = self
                self._track_lease(conn)
                await self._hook("on_checkout", conn)
                return cast("ACT", conn)
            conn = None
            left = deadline - monotonic()
            backoff = backoff * 2 if backoff else CHECK_BACKOFF_START
            if left <= 0:
                raise PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec")
            await asyncio.sleep(min(backoff, left))

    async def _take(self, deadline: float) -> Any:
        """Queue in the core and wait, without blocking the loop, for the
        handoff or the deadline."""
        loop = asyncio.get_running_loop()
        if self._workers_pending:
            self._workers_pending = False
            self._workers.start(loop)
        fut: asyncio.Future[None] = loop.create_future()
        left = max(deadline - monotonic(), 0.0)
        got = self._core.wait_async(left, partial(_wake, loop, fut))
        if not isinstance(got, _core.Waiting):
            return await self._got(got, deadline)
        timer = loop.call_later(left, _resolve, fut)
        try:
            await fut
        except BaseException:
            # Cancelled (wait_for, timeout, task.cancel()): never leave with
            # a connection; one granted meanwhile goes back to the pool.
            conn = got.cancel()
            if conn is not None:
                await self._close(conn, "pool closed")
            raise
        finally:
            timer.cancel()
        return await self._got(got.finish(), deadline)

    async def _got(self, got: Any, deadline: float) -> Any:
        """What the core answered: a connection (or, for null pools, a
        ticket to open one)."""
        return got

    async def _passes_check(self, conn: Any) -> bool:
        try:
            assert self._check is not None
            await self._check(conn)
        except Exception as ex:
            logger.info("connection failed check: %s", ex.__class__.__name__)
            await self._hook("on_error", ex, conn)
            await self._discard(conn, returned=False, exc=ex)
            return False
        except BaseException:
            await self._give_back(conn)
            raise
        return True

    async def _give_back(self, conn: Any) -> None:
        """Return a connection the pool lent itself: kept if idle and
        healthy, else discarded and closed."""
        if conn.pgconn.transaction_status == IDLE:
            reason = self._core.checkin(conn)
            if reason is not None:
                await self._close(conn, reason)
        else:
            await self._discard(conn, returned=False)

    async def putconn(self, conn: ACT) -> None:
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
                await self._refuse_after_fork(conn, ex)
                return
            if reason is not None:
                await self._close(conn, reason)
            return
        await self._putconn_slow(conn)

    async def _refuse_after_fork(self, conn: Any, ex: ValueError) -> None:
        """A connection the core does not know: lent before this process
        was forked (close it: its socket points at /dev/null), or a bug."""
        if not self._forked:
            raise ex
        await close_quietly_async(conn)

    async def _putconn_slow(self, conn: Any) -> None:
        """Return a connection that needs work first: rollback, reset, close."""
        self._untrack_lease(conn)
        await self._hook("on_checkin", conn)
        status = conn.pgconn.transaction_status
        if status in (INTRANS, INERROR):
            logger.warning("rolling back returned connection in pool %r", self.name)
            try:
                await conn.rollback()
            except Exception as ex:
                logger.warning("rollback failed: %s; discarding connection", ex.__class__.__name__)
                await close_quietly_async(conn)
            except BaseException:
                # Cancelled mid-rollback: the connection state is unknown.
                await self._discard(conn, returned=True)
                raise
        elif status == ACTIVE:
            logger.warning("closing connection returned during an operation")
            await close_quietly_async(conn)
        if conn.pgconn.transaction_status == UNKNOWN:
            await self._discard(conn, returned=True)
            return
        if self._reset is not None and not await self._reset_ok(conn):
            await self._discard(conn, returned=True)
            return
        try:
            reason = self._core.checkin(conn)
        except ValueError as ex:
            await self._refuse_after_fork(conn, ex)
            return
        if reason is not None:
            await self._close(conn, reason)

    async def _putconn_failed(self, conn: Any, exc: BaseException) -> None:
        """Return a connection whose block failed because the server went
        away or changed role: retire it and every sibling opened before."""
        if conn._pool is not self:
            self._refuse(conn, conn._pool)
        conn._pool = None
        self._untrack_lease(conn)
        await self._hook("on_checkin", conn)
        await self._hook("on_error", exc, conn)
        await self._discard(conn, returned=False, exc=exc)

    async def _discard(
        self, conn: Any, *, returned: bool, exc: BaseException | None = None
    ) -> None:
        """Take back a broken connection and close it; if it broke because
        the server went away, retire all its siblings too."""
        # Failover first: it recognises the connection (still lent) and does
        # nothing if an earlier failover already retired it.
        siblings = self._failover_conns(conn, exc) if self._is_failover(exc, conn) else []
        try:
            self._core.discard(conn, returned=returned)
        except ValueError as ex2:
            await self._refuse_after_fork(conn, ex2)
            return
        await self._close(conn, "broken")
        for c in siblings:
            await self._close(c, "failover")

    async def _reset_ok(self, conn: Any) -> bool:
        """Run the reset (psycopg_pool's callback, or "discard"); False if
        the connection must be discarded."""
        assert self._reset is not None
        try:
            if self._reset == "discard":
                await self._discard_session(conn)
            else:
                await self._reset(conn)
            self._require_idle(conn, "reset", self._reset)
        except Exception as ex:
            logger.warning("error resetting connection: %s", self._describe(ex))
            await self._hook("on_error", ex, conn)
            return False
        return True

    @staticmethod
    async def _discard_session(conn: Any) -> None:
        """DISCARD ALL, outside a transaction block (see the sync pool)."""
        autocommit = conn.autocommit
        await conn.set_autocommit(True)
        try:
            await conn.execute("DISCARD ALL")
        finally:
            await conn.set_autocommit(autocommit)

    async def _close(self, conn: Any, reason: str) -> None:
        """Close a connection the pool no longer counts."""
        logger.debug("closing %s connection in pool %r", reason, self.name)
        await self._hook("on_close", conn, reason)
        await close_quietly_async(conn)

    async def _hook(self, name: str, *args: Any) -> None:
        """Run a user hook (plain or async); its failure is logged and
        changes nothing."""
        hook = self._hooks[name]
        if hook is None:
            return
        try:
            await _maybe_await(hook(*args))
        except Exception as ex:
            self._hook_error(name, ex)

    # ---- maintenance ----------------------------------------------------

    async def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change the size of the pool during runtime."""
        min_size, max_size = _config.sizes(min_size, max_size)
        for conn in self._core.resize(min_size, max_size):
            await self._close(conn, "resized")
        logger.info("resized %r to min_size=%s max_size=%s", self.name, min_size, max_size)

    async def check(self) -> None:
        """Check every idle connection now; replace those that fail."""
        self._check_open_getconn()
        conns = self._core.take_for_check()
        try:
            while conns:
                conn = conns[-1]
                try:
                    await self.check_connection(conn)
                except Exception as ex:
                    logger.warning("discarding broken connection in pool %r", self.name)
                    conns.pop()
                    await self._hook("on_error", ex, conn)
                    await self._discard(conn, returned=False, exc=ex)
                else:
                    conns.pop()
                    await self._give_back(conn)
        finally:
            for conn in conns:
                await self._give_back(conn)

    async def drain(self) -> None:
        """Replace every connection: idle ones now, lent ones when returned."""
        for conn in self._core.drain():
            await self._close(conn, "drained")

    @staticmethod
    async def check_connection(conn: ACT) -> None:
        """Raise if *conn* doesn't answer an empty query; usable as `check`."""
        if conn.autocommit:
            await conn.execute("")
        else:
            await conn.set_autocommit(True)
            try:
                await conn.execute("")
            finally:
                with suppress(Exception):
                    await conn.set_autocommit(False)

    async def reconnect_failed(self) -> None:
        """Called when connection attempts failed for reconnect_timeout."""
        if self._reconnect_failed is not None:
            await _maybe_await(self._reconnect_failed(self))

    # ---- connecting (maintenance tasks) --------------------------------

    async def _open_connection(self, ticket: _core.Ticket) -> None:
        """Open a connection on *ticket* and hand it to the core."""
        t0 = monotonic()
        try:
            conn = await self._connect()
        except Exception as ex:
            await self._hook("on_error", ex, None)
            if self._connect_failed(ticket, ex):
                try:
                    await self.reconnect_failed()
                except Exception as ex2:
                    logger.warning("reconnect_failed callback failed: %s", self._describe(ex2))
            return
        if not self._core.connected(ticket, conn, monotonic() - t0, _socket_of(conn)):
            await close_quietly_async(conn)
        self._notify_ready()

    async def _validate(self, ticket: _core.Ticket) -> None:
        """Ping a suspect or keepalive-due connection; keep it if it
        answers, replace it if not."""
        conn = self._core.claim_validation(ticket)
        if conn is None:
            return
        try:
            await aping(conn)
        except Exception as ex:
            logger.info("pool %r: connection failed its ping: %s", self.name, self._describe(ex))
            await self._hook("on_error", ex, conn)
            await self._discard(conn, returned=False, exc=ex)
        except BaseException:
            await self._give_back(conn)
            raise
        else:
            await self._give_back(conn)

    async def _on_leak(self, key: int, held: float, first: bool) -> None:
        conn = self._leaked(key, held, first)
        if conn is not None:
            await self._close(conn, "leaked")

    def _restart_after_fork(self, was_open: bool) -> None:
        # No loop runs in the child yet: the maintenance tasks start at the
        # first request that has to wait (made from a running loop).
        self._open_lock = None
        self._workers = AsyncWorkers(self._core, self, self._worker_count)
        if was_open:
            self._workers_pending = True

    async def _connect(self, timeout: float | None = None) -> ACT:
        """A new connection, configured, not yet lent."""
        conninfo, kwargs = await self._resolve_params()
        self._prepare_connect(conninfo, kwargs, timeout)
        conn = cast("ACT", await self.connection_class.connect(conninfo, **kwargs))
        conn._pool = self  # type: ignore[assignment]
        try:
            if self._configure is not None:
                await self._configure(conn)
                self._require_idle(conn, "configure", self._configure)
        except BaseException:
            await close_quietly_async(conn)
            raise
        conn._pool = None
        await self._hook("on_connect", conn)
        return conn

    async def _resolve_params(self) -> tuple[str, dict[str, Any]]:
        """One attempt's conninfo and kwargs (callables called and awaited),
        noted for masking their secrets in messages about the attempt."""
        conninfo = self.conninfo
        if callable(conninfo):
            conninfo = await _maybe_await(conninfo())
        kwargs = self.kwargs
        if callable(kwargs):
            kwargs = await _maybe_await(kwargs())
        return self._resolved(conninfo, kwargs)


class _AsyncConnectionContext(Generic[ACT]):
    """What `pool.connection()` returns: a connection lent for an async block."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: AsyncConnectionPool[ACT], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: ACT | None = None

    async def __aenter__(self) -> ACT:
        self._conn = conn = await self._pool.getconn(self._timeout)
        return conn

    async def __aexit__(
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
                if exc_type is None:
                    await conn.commit()
                else:
                    try:
                        await conn.rollback()
                    except Exception as ex:
                        logger.warning("error ignored in rollback: %s", ex.__class__.__name__)
        finally:
            pool = self._pool
            if exc_val is not None and pool._is_failover(exc_val):
                await pool._putconn_failed(conn, exc_val)
            else:
                await pool.putconn(conn)
