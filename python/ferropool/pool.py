# Generated from pool_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""ConnectionPool: psycopg_pool's asyncio pool on ferropool's Rust core.

A thin shell over a runner (ferropool.runner): the constructor validates
psycopg_pool's parameters (and ferropool's own), and the hot path, a
checkout or a return of a healthy idle connection and the ``connection()``
block around them, runs in Rust, in the native base class
``_core.Lender``: one call into Rust each way, which also sets the
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

from collections.abc import Callable
from contextlib import suppress
from typing import Any, Generic, cast

from psycopg import Connection
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from typing_extensions import Self, TypeVar

from . import _core, pgbouncer, sizing
from .base import PoolBase
from .context import enter_block, exit_block
from .runner import checks
from .runner import settings as defaults
from .runner.acompat import maybe
from .runner.compat import PSYCOPG_VERSION, PoolConnection
from .runner.psycopg_driver import PsycopgDriver
from .runner.runner import Runner
from .runner.settings import Settings
from .scope import OpenClose

CT = TypeVar("CT", bound="Connection[Any]", default="Connection[TupleRow]")

# psycopg_pool's default connection class, typed for the generic parameter.
_DEFAULT_CONNECTION_CLASS: Any = Connection
_IDLE = TransactionStatus.IDLE


class ConnectionPool(PoolBase, OpenClose, _core.Lender[CT], Generic[CT]):
    """A pool of psycopg connections, API-compatible with psycopg_pool's."""

    _runner: Runner[CT]
    # psycopg_pool's null pools default min_size to 0 and keep nothing idle.
    _null = False

    def __init__(
        self,
        conninfo: str | Callable[[], str] | Callable[[], str] = "",
        *,
        connection_class: type[CT] = _DEFAULT_CONNECTION_CLASS,
        kwargs: dict[str, Any]
        | Callable[[], dict[str, Any]]
        | Callable[[], dict[str, Any]]
        | None = None,
        min_size: int = defaults.MIN_SIZE,
        max_size: int | None = None,
        open: bool | None = None,
        configure: Callable[[CT], None] | None = None,
        check: Callable[[CT], None] | None = None,
        reset: Callable[[CT], None] | str | None = None,
        name: str | None = None,
        close_returns: bool = False,
        timeout: float = defaults.TIMEOUT,
        max_waiting: int = defaults.MAX_WAITING,
        max_lifetime: float = defaults.MAX_LIFETIME,
        max_idle: float = defaults.MAX_IDLE,
        reconnect_timeout: float = defaults.RECONNECT_TIMEOUT,
        reconnect_failed: Callable[[ConnectionPool[Any]], Any] | None = None,
        num_workers: int = defaults.NUM_WORKERS,
        liveness_bypass: float | None = defaults.LIVENESS_BYPASS,
        keepalive_interval: float | None = defaults.KEEPALIVE_INTERVAL,
        tcp_keepalives: bool = True,
        leak_timeout: float | None = None,
        max_uses: int = defaults.MAX_USES,
        max_connecting: int | None = None,
        expect_primary: bool = False,
        lifo: bool = False,
        on_connect: Callable[[CT], Any] | None = None,
        on_checkout: Callable[[CT], Any] | None = None,
        on_checkin: Callable[[CT], Any] | None = None,
        on_close: Callable[[CT, str], Any] | None = None,
        on_error: Callable[[BaseException, CT | None], Any] | None = None,
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
            connection_class = cast("type[CT]", PoolConnection)
        # What the connections point at (PostgreSQL, or PgBouncer in session
        # or transaction mode): see ferropool.pgbouncer.
        server = pgbouncer.server_option(
            server,
            reset=settings.reset,
            configure=settings.configure,
            stacklevel=checks.caller_stacklevel() + 1,
        )
        driver = PsycopgDriver(
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
            Runner(
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
            cls.getconn is not ConnectionPool.getconn or cls.putconn is not ConnectionPool.putconn,
        )
        if open is None:
            open = self._runner.implicit_open = True
            self._runner.update_fast_path()
        if open:
            self._runner.open()

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
    def connection_class(self) -> type[CT]:
        return self._driver.connection_class

    @property
    def server(self) -> str:
        return self._driver.server

    @property
    def tcp_keepalives(self) -> bool:
        return self._driver.tcp_keepalives

    # ---- opening and closing -----------------------------------------------------

    def open(self, wait: bool = False, timeout: float = defaults.OPEN_TIMEOUT) -> None:
        """Open the pool: start the maintenance workers and fill it to min_size.

        With *wait*, wait until min_size connections are ready (see `wait()`).
        Opening an open pool does nothing; a closed pool cannot be reopened
        (PoolClosed).
        """
        checks.flag("wait", wait)
        timeout = checks.seconds("timeout", timeout)
        self._runner.open()
        if wait:
            self.wait(timeout=timeout)

    def wait(self, timeout: float = defaults.OPEN_TIMEOUT) -> None:
        """Wait until min_size connections are ready.

        Close the pool and raise PoolTimeout if not ready within *timeout*
        seconds; the message names the last connection error.
        """
        self._runner.wait(checks.seconds("timeout", timeout))

    def close(self, timeout: float = defaults.CLOSE_TIMEOUT) -> None:
        """Close the pool and make it unavailable to new clients.

        Waiting and future requests fail with PoolClosed. Connections in use
        are closed when returned. Waits up to *timeout* seconds for the
        maintenance workers to finish.
        """
        self._runner.close(checks.seconds("timeout", timeout))

    def __enter__(self) -> Self:
        # Opened by the block: no warning for the constructor's open=None.
        self._runner.implicit_open = False
        self._runner.update_fast_path()
        return super().__enter__()

    # ---- borrowing ------------------------------------------------------------

    # connection() is the native base's: it returns a block whose entry and
    # exit run in Rust while nothing else is needed, and come back to
    # `_enter_block` / `_exit_block` otherwise.

    # The sync pool's getconn() and putconn() are the native base's.

    def _getconn_slow(self, timeout: float | None) -> CT:
        """getconn() with a *timeout* to check, or a check, hook, leak
        tracking or implicit open to go through: what the fast path leaves."""
        if timeout is not None:
            timeout = checks.seconds("timeout", timeout)
        runner = self._runner
        conn: CT | None = runner.core.checkout()
        if conn is None or runner.slow_checkout:
            return runner.getconn(conn, timeout)
        conn._pool = self  # type: ignore[assignment]
        return conn

    def _putconn_slow(self, conn: CT) -> None:
        """The rest of putconn() once *conn* is known to be this pool's and
        unmarked: a transaction to roll back, a reset or hook to run, or the
        close_returns bookkeeping."""
        runner = self._runner
        if self.close_returns:
            self._driver.set_block(conn, None)
        if not runner.fast_checkin or conn.pgconn.transaction_status != _IDLE:
            runner.putconn(conn)
            return
        try:
            reason = runner.core.checkin(conn)
        except ValueError:
            runner.checkin(conn)  # lent before a fork, or not ours
            return
        if reason is not None:
            runner.close_connection(conn, reason)

    def _enter_block(
        self, block: _core.Block[CT], timeout: float | None, checked: bool, conn: CT | None
    ) -> CT:
        """A connection() block's entry off the fast path (see enter_block)."""
        lent: CT = enter_block(self, self._runner, block, timeout, checked, conn)
        return lent

    def _exit_block(self, block: _core.Block[CT], conn: CT, exc: BaseException | None) -> None:
        """A connection() block's exit off the fast path (see exit_block)."""
        exit_block(self, self._runner, block, conn, exc)

    # ---- maintenance ----------------------------------------------------------

    def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change the size of the pool during runtime."""
        self._runner.resize(*checks.sizes(min_size, max_size))

    def check(self) -> None:
        """Check every idle connection now; replace those that fail."""
        self._runner.check(self.check_connection)

    def drain(self) -> None:
        """Replace every connection: idle ones now, lent ones when returned."""
        self._runner.drain()

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
        callback = self._runner.settings.reconnect_failed
        if callback is not None:
            maybe(callback(self))
