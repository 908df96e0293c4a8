"""AsyncConnectionPool: psycopg_pool's asyncio pool on ferropool's Rust core.

A thin shell over a runner (ferropool.runner): the constructor validates
psycopg_pool's parameters (and ferropool's own), and the hot path, a
checkout or a return of a healthy idle connection and the ``connection()``
block around them, runs in Rust, in the native base class
``_core.AsyncLender``: one call into Rust each way, which also sets the
``conn._pool`` marker psycopg expects and reads the transaction status.
Whatever needs more (waiting, checks, hooks, leak tracking, rollback,
reset, closing, close_returns, maintenance, a subclass's own
getconn/putconn) comes back to this class's ``_*_slow`` and ``_*_block``
methods and the runner. The sync ConnectionPool is generated from this module.

A request that has to wait queues in the core and is woken by the handoff
itself, never by polling; cancellation is safe at every await. The pool
serves whichever event loop awaits it: maintenance runs as tasks on a loop
that uses the pool, and moves to the next one when that loop ends.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Generic, cast

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from typing_extensions import Self, TypeVar

from . import _core, pgbouncer, sizing
from .base import PoolBase
from .context_async import enter_block, exit_block
from .runner import checks
from .runner import settings as defaults
from .runner.acompat import amaybe
from .runner.compat import PSYCOPG_VERSION, AsyncPoolConnection
from .runner.psycopg_driver_async import AsyncPsycopgDriver
from .runner.runner_async import AsyncRunner
from .runner.settings import Settings
from .scope_async import AsyncOpenClose

ACT = TypeVar("ACT", bound="AsyncConnection[Any]", default="AsyncConnection[TupleRow]")

# psycopg_pool's default connection class, typed for the generic parameter.
_DEFAULT_CONNECTION_CLASS: Any = AsyncConnection
_IDLE = TransactionStatus.IDLE


class AsyncConnectionPool(PoolBase, AsyncOpenClose, _core.AsyncLender[ACT], Generic[ACT]):
    """A pool of psycopg connections, API-compatible with psycopg_pool's."""

    _runner: AsyncRunner[ACT]
    # psycopg_pool's null pools default min_size to 0 and keep nothing idle.
    _null = False

    def __init__(
        self,
        conninfo: str | Callable[[], str] | Callable[[], Awaitable[str]] = "",
        *,
        connection_class: type[ACT] = _DEFAULT_CONNECTION_CLASS,
        kwargs: dict[str, Any]
        | Callable[[], dict[str, Any]]
        | Callable[[], Awaitable[dict[str, Any]]]
        | None = None,
        min_size: int = defaults.MIN_SIZE,
        max_size: int | None = None,
        open: bool | None = None,
        configure: Callable[[ACT], Awaitable[None]] | None = None,
        check: Callable[[ACT], Awaitable[None]] | None = None,
        reset: Callable[[ACT], Awaitable[None]] | str | None = None,
        name: str | None = None,
        close_returns: bool = False,
        timeout: float = defaults.TIMEOUT,
        max_waiting: int = defaults.MAX_WAITING,
        max_lifetime: float = defaults.MAX_LIFETIME,
        max_idle: float = defaults.MAX_IDLE,
        reconnect_timeout: float = defaults.RECONNECT_TIMEOUT,
        reconnect_failed: Callable[[AsyncConnectionPool[Any]], Any] | None = None,
        num_workers: int = defaults.NUM_WORKERS,
        liveness_bypass: float | None = defaults.LIVENESS_BYPASS,
        keepalive_interval: float | None = defaults.KEEPALIVE_INTERVAL,
        tcp_keepalives: bool = True,
        leak_timeout: float | None = None,
        max_uses: int = defaults.MAX_USES,
        max_connecting: int | None = None,
        expect_primary: bool = False,
        lifo: bool = False,
        on_connect: Callable[[ACT], Any] | None = None,
        on_checkout: Callable[[ACT], Any] | None = None,
        on_checkin: Callable[[ACT], Any] | None = None,
        on_close: Callable[[ACT, str], Any] | None = None,
        on_error: Callable[[BaseException, ACT | None], Any] | None = None,
        server: str = pgbouncer.POSTGRESQL,
        budget_share: float | None = None,
    ) -> None:
        if open is not None:
            checks.flag("open", open)
        settings = Settings.of(locals(), name=defaults.pool_name(name), null=self._null)
        connection_class = checks.connection_class(connection_class)
        # close_returns makes no sense without idle connections: null pools
        # ignore it, as psycopg_pool's do.
        self.close_returns = checks.flag("close_returns", close_returns) and not self._null
        if self.close_returns and PSYCOPG_VERSION < (3, 3):
            if connection_class is not _DEFAULT_CONNECTION_CLASS:
                raise TypeError(
                    "close_returns=True with a custom connection_class requires psycopg >= 3.3"
                )
            connection_class = cast("type[ACT]", AsyncPoolConnection)
        # What the connections point at (PostgreSQL, or PgBouncer in session
        # or transaction mode): see ferropool.pgbouncer.
        server = pgbouncer.server_option(
            server,
            reset=settings.reset,
            configure=settings.configure,
            stacklevel=checks.caller_stacklevel() + 1,
        )
        driver = AsyncPsycopgDriver(
            checks.conninfo(conninfo),
            checks.kwargs(kwargs),
            connection_class,
            server=server,
            tcp_keepalives=checks.flag("tcp_keepalives", tcp_keepalives),
        )
        self._driver = driver
        # max_size as a share of the server's budget, applied at open.
        self.budget_share = sizing.budget_share_option(budget_share, server=server)
        self._attach(
            AsyncRunner(
                settings,
                driver,
                self,
                budget_share=self.budget_share,
                budget_cap=None if max_size is None else settings.max_size,
            )
        )
        # The hot path (in the native base) reads the core and its flags;
        # a subclass's own getconn/putconn are called by connection() blocks.
        cls = type(self)
        self._bind(
            self._runner.core,
            self._runner,
            cls.getconn is not AsyncConnectionPool.getconn
            or cls.putconn is not AsyncConnectionPool.putconn,
        )
        if True:  # ASYNC
            if open:
                self._warn_open_async()
        if open is None:
            open = self._runner.implicit_open = True
            self._runner.update_fast_path()
        if open:
            if True:  # ASYNC
                self._runner.open_soon()
            else:
                self._runner.open()

    if True:  # ASYNC

        def _warn_open_async(self) -> None:
            warnings.warn(
                f"opening the async pool {type(self).__name__} in the constructor"
                " is deprecated and will not be supported anymore in a future"
                " release. Please use `await pool.open()`, or use the pool as context"
                f" manager using: `async with {type(self).__name__}(...) as pool: `...",
                RuntimeWarning,
                stacklevel=checks.caller_stacklevel(),
            )

    # ---- what the connections are -------------------------------------------------

    @property
    def conninfo(self) -> Any:
        return self._driver.conninfo

    @conninfo.setter
    def conninfo(self, value: Any) -> None:
        self._driver.conninfo = checks.conninfo(value)

    @property
    def kwargs(self) -> Any:
        return self._driver.kwargs

    @kwargs.setter
    def kwargs(self, value: Any) -> None:
        self._driver.kwargs = checks.kwargs(value)

    @property
    def connection_class(self) -> type[ACT]:
        return self._driver.connection_class

    @property
    def server(self) -> str:
        return self._driver.server

    @property
    def tcp_keepalives(self) -> bool:
        return self._driver.tcp_keepalives

    # ---- opening and closing -----------------------------------------------------

    async def open(self, wait: bool = False, timeout: float = defaults.OPEN_TIMEOUT) -> None:
        """Open the pool: start the maintenance workers and fill it to min_size.

        With *wait*, wait until min_size connections are ready (see `wait()`).
        Opening an open pool does nothing; a closed pool cannot be reopened
        (PoolClosed).
        """
        checks.flag("wait", wait)
        timeout = checks.seconds("timeout", timeout)
        await self._runner.open()
        if wait:
            await self.wait(timeout=timeout)

    async def wait(self, timeout: float = defaults.OPEN_TIMEOUT) -> None:
        """Wait until min_size connections are ready.

        Close the pool and raise PoolTimeout if not ready within *timeout*
        seconds; the message names the last connection error.
        """
        await self._runner.wait(checks.seconds("timeout", timeout))

    async def close(self, timeout: float = defaults.CLOSE_TIMEOUT) -> None:
        """Close the pool and make it unavailable to new clients.

        Waiting and future requests fail with PoolClosed. Connections in use
        are closed when returned. Waits up to *timeout* seconds for the
        maintenance workers to finish.
        """
        await self._runner.close(checks.seconds("timeout", timeout))

    async def __aenter__(self) -> Self:
        # Opened by the block: no warning for the constructor's open=None.
        self._runner.implicit_open = False
        self._runner.update_fast_path()
        return await super().__aenter__()

    # ---- borrowing ------------------------------------------------------------

    # connection() is the native base's: it returns a block whose entry and
    # exit run in Rust while nothing else is needed, and come back to
    # `_enter_block` / `_exit_block` otherwise.

    if True:  # ASYNC

        async def getconn(self, timeout: float | None = None) -> ACT:
            """Borrow a connection; give it back with `putconn()`.

            Prefer `connection()`. Waits up to *timeout* (or `self.timeout`)
            seconds, raising PoolTimeout.
            """
            conn: ACT = await self._getconn(timeout)
            return conn

        async def putconn(self, conn: ACT) -> None:
            """Give back a connection borrowed with `getconn()`."""
            await self._putconn(conn)

    # The sync pool's getconn() and putconn() are the native base's.

    async def _getconn_slow(self, timeout: float | None) -> ACT:
        """getconn() with a *timeout* to check, or a check, hook, leak
        tracking or implicit open to go through: what the fast path leaves."""
        if timeout is not None:
            timeout = checks.seconds("timeout", timeout)
        runner = self._runner
        conn: ACT | None = runner.core.checkout()
        if conn is None or runner.slow_checkout:
            return await runner.getconn(conn, timeout)
        conn._pool = self  # type: ignore[assignment]
        return conn

    async def _putconn_slow(self, conn: ACT) -> None:
        """The rest of putconn() once *conn* is known to be this pool's and
        unmarked: a transaction to roll back, a reset or hook to run, or the
        close_returns bookkeeping."""
        runner = self._runner
        if self.close_returns:
            self._driver.set_block(conn, None)
        if not runner.fast_checkin or conn.pgconn.transaction_status != _IDLE:
            await runner.putconn(conn)
            return
        try:
            reason = runner.core.checkin(conn)
        except ValueError:
            await runner.checkin(conn)  # lent before a fork, or not ours
            return
        if reason is not None:
            await runner.close_connection(conn, reason)

    async def _enter_block(
        self, block: _core.AsyncBlock[ACT], timeout: float | None, checked: bool, conn: ACT | None
    ) -> ACT:
        """A connection() block's entry off the fast path (see enter_block)."""
        lent: ACT = await enter_block(self, self._runner, block, timeout, checked, conn)
        return lent

    async def _exit_block(
        self, block: _core.AsyncBlock[ACT], conn: ACT, exc: BaseException | None
    ) -> None:
        """A connection() block's exit off the fast path (see exit_block)."""
        await exit_block(self, self._runner, block, conn, exc)

    # ---- maintenance ----------------------------------------------------------

    async def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change the size of the pool during runtime."""
        await self._runner.resize(*checks.sizes(min_size, max_size))

    async def check(self) -> None:
        """Check every idle connection now; replace those that fail."""
        await self._runner.check(self.check_connection)

    async def drain(self) -> None:
        """Replace every connection: idle ones now, lent ones when returned."""
        await self._runner.drain()

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
        callback = self._runner.settings.reconnect_failed
        if callback is not None:
            await amaybe(callback(self))
