"""What ``pool.connection()`` returns: a connection lent for one block.

On exit the block's transaction is committed, or rolled back if the block
raised (or was cancelled), and the connection goes back to its pool;
retired with its siblings if the block failed because the server went away.
The driver says what state the connection is in.

The psycopg pools' blocks are native (``_core.AsyncBlock``, ``_core.Block``
for the sync pool): their entry and exit run in Rust on the fast path and
come here (`enter_block`, `exit_block`) for anything more. The DB-API pool
uses `AsyncConnectionContext` (generated: ConnectionContext): a small class
rather than a generator-based context manager, since a generator costs
about a microsecond per block.

A context object serves one block at a time: entering it again before it
exits (two threads sharing one, or nesting) is refused, since it would
lend one connection to two borrowers.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Generic, TypeVar

from . import _core
from .runner.runner_async import AsyncRunner
from .runner.status import Status

logger = logging.getLogger("ferropool")

C = TypeVar("C")


_IDLE = Status.IDLE
_CLOSED = Status.BROKEN


class AsyncConnectionContext(Generic[C]):
    """A connection lent by *pool* for an ``async with`` block.

    *close_returns*: the pool's connections go back to it on close(), so a
    block may find, at its end, that it no longer holds its connection.
    """

    __slots__ = ("_close_returns", "_conn", "_free", "_pool", "_runner", "_timeout")

    def __init__(
        self,
        pool: Any,
        runner: AsyncRunner[Any],
        timeout: float | None,
        close_returns: bool = False,
    ) -> None:
        self._pool = pool
        self._runner = runner
        self._timeout = timeout
        self._close_returns = close_returns
        self._conn: C | None = None
        # Popped by the block that enters: a list pop is atomic, so two
        # threads entering one context cannot both succeed.
        self._free = [True]

    async def __aenter__(self) -> C:
        try:
            self._free.pop()
        except IndexError:
            raise RuntimeError(
                f"this connection() context of pool {self._runner.name!r} is already in"
                " use: call pool.connection() for each block"
            ) from None
        try:
            conn: C = await self._pool.getconn(self._timeout)
        except BaseException:
            self._free.append(True)
            raise
        self._conn = conn
        if self._close_returns:
            self._runner.driver.set_block(conn, self)
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None
        try:
            if self._close_returns and self._runner.driver.block_of(conn) is not self:
                return  # given back inside the block by close(): maybe lent again
            status = self._runner.driver.status(conn)
            if exc_val is None and (status is _IDLE or status is _CLOSED):
                await self._pool.putconn(conn)  # nothing to commit
            else:
                await end_block(self._pool, self._runner, conn, exc_val)
        finally:
            self._free.append(True)


async def enter_block(
    pool: Any,
    runner: AsyncRunner[Any],
    block: _core.AsyncBlock[Any],
    timeout: float | None,
    checked: bool,
    conn: Any,
) -> Any:
    """Enter a native block (already taken for this entry) off the fast
    path: through `pool.getconn()` (a subclass's own included), or, if the
    fast path already *checked* the core out (getting *conn*, or None: wait),
    through the runner. The block is freed again if this fails."""
    try:
        conn = await (runner.getconn(conn, timeout) if checked else pool.getconn(timeout))
    except BaseException:
        block._release()
        raise
    block._hold(conn)
    if pool.close_returns:
        runner.driver.set_block(conn, block)
    return conn


async def exit_block(
    pool: Any,
    runner: AsyncRunner[Any],
    block: _core.AsyncBlock[Any],
    conn: Any,
    exc: BaseException | None,
) -> None:
    """Exit a native block off the fast path: commit or roll back, then give
    the connection back with `pool.putconn()` (a subclass's own included);
    leave it alone if close() already gave it back (close_returns)."""
    try:
        if pool.close_returns and runner.driver.block_of(conn) is not block:
            return  # given back inside the block by close(): maybe lent again
        status = runner.driver.status(conn)
        if exc is None and (status is _IDLE or status is _CLOSED):
            await pool.putconn(conn)  # nothing to commit
        else:
            await end_block(pool, runner, conn, exc)
    finally:
        block._release()


async def end_block(
    pool: Any, runner: AsyncRunner[Any], conn: Any, exc: BaseException | None
) -> None:
    """End a block on *conn*, lent by *pool*: commit (or roll back after an
    error), then give it back (or retire it with its siblings, if the block
    failed because the server went away)."""
    driver = runner.driver
    ended = False
    try:
        status = driver.status(conn)
        if status.in_transaction or status == Status.UNKNOWN or status == Status.ACTIVE:
            # The `with conn:` rule: commit on success, roll back on error
            # without hiding the error.
            if exc is None:
                await driver.commit(conn)
            else:
                try:
                    await driver.rollback(conn)
                except Exception as ex:
                    logger.warning("error ignored in rollback: %s", ex.__class__.__name__)
                    return
            ended = True
    finally:
        if exc is not None and runner.is_failover(exc):
            driver.lend(conn, None)
            await runner.putconn_failed(conn, exc)
        elif ended and driver.status(conn) == Status.UNKNOWN:
            # The block ended its transaction: a driver that cannot tell
            # need not roll back again.
            driver.lend(conn, None)
            await runner.putconn(conn, rollback_unknown=False)
        else:
            await pool.putconn(conn)
