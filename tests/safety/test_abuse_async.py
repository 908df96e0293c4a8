"""Whatever a borrower, a callback or a signal does, no connection is lost.

A block interrupted inside a callback the pool runs (Ctrl-C or SystemExit in
the sync pool, a cancelled task in the async one), a context object entered
twice, a connection closed (and so returned) inside its block, a
reconnect_failed callback that exits: after each, every connection is
still counted, idle or lent, and the pool serves requests. Written once for
both pools: the sync tests are generated.
"""

# async_to_sync: source

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest

from ferropool import AsyncConnectionPool
from tests.fixtures.acompat import asleep
from tests.fixtures.helpers_async import DEADLINE, available

if True:  # ASYNC
    import asyncio

    pytestmark = pytest.mark.anyio

    async def stuck(*args: Any) -> None:
        """A callback that never finishes: the request is cancelled in it."""
        await asleep(DEADLINE)

    async def interrupted(request: Callable[[], Any]) -> None:
        """Run *request*, cancelled (by a timeout) inside the callback."""
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(request(), 0.05)

else:

    def stuck(*args: Any) -> None:
        """A callback interrupted by Ctrl-C."""
        raise KeyboardInterrupt

    def interrupted(request: Callable[[], Any]) -> None:
        with pytest.raises(KeyboardInterrupt):
            request()


@pytest.mark.parametrize("callback", ["reset", "on_checkin", "on_checkout", "check"])
async def test_an_interrupted_callback_loses_no_connection(dsn: str, callback: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=2, **{callback: stuck}) as pool:
        await pool.wait(timeout=DEADLINE)

        async def borrow() -> None:
            async with pool.connection(timeout=DEADLINE) as conn:
                await conn.execute("select 1")

        for _ in range(10):
            await interrupted(borrow)
        # Each connection is back, or discarded and replaced: none is lost.
        await available(pool, 2)
        assert pool.get_stats()["pool_size"] == 2


async def test_a_connection_context_entered_twice_is_refused(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=2) as pool:
        await pool.wait(timeout=DEADLINE)
        block = pool.connection(timeout=DEADLINE)
        async with block as conn:
            with pytest.raises(RuntimeError, match="already in use"):
                async with block:
                    pass
            await conn.execute("select 1")
        # The refused entry took nothing; the block gave its connection back.
        assert pool.get_stats()["pool_available"] == 2
        async with block as conn:  # reusable once it exited
            await conn.execute("select 1")
        assert pool.get_stats()["pool_available"] == 2


async def test_closing_a_connection_inside_its_block_with_close_returns(dsn: str) -> None:
    """close() returns it; the block's exit must not return it a second time,
    now that someone else may hold it."""
    async with AsyncConnectionPool(dsn, min_size=1, close_returns=True) as pool:
        async with pool.connection(timeout=DEADLINE) as conn:
            await conn.close()  # back to the pool
            other = await pool.getconn(timeout=DEADLINE)
            assert other is conn
        # `other` still holds it: nothing idle, and still usable by its holder.
        assert pool.get_stats()["pool_available"] == 0
        await other.execute("select 1")
        await pool.putconn(other)
        assert pool.get_stats()["pool_available"] == 1


async def test_workers_survive_a_reconnect_failed_that_exits(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """psycopg_pool's docs suggest sys.exit() in reconnect_failed: the pool's
    workers must outlive it, log it, and keep trying."""
    caplog.set_level(logging.WARNING, logger="ferropool")
    calls = []
    state = {"reachable": False}

    def conninfo() -> str:
        return dsn if state["reachable"] else "host=127.0.0.1 port=1 connect_timeout=1"

    def exit_(pool: Any) -> None:
        calls.append(pool)
        sys.exit(1)

    async with AsyncConnectionPool(
        conninfo, min_size=1, num_workers=1, reconnect_timeout=0.1, reconnect_failed=exit_
    ) as pool:
        for _ in range(int(DEADLINE / 0.01)):
            if len(calls) >= 3:
                break
            await asleep(0.01)
        assert len(calls) >= 3, "one worker lived through the first exit, and more"
        assert any("SystemExit" in r.getMessage() for r in caplog.records)
        state["reachable"] = True
        await pool.wait(timeout=DEADLINE)
        assert pool.get_stats()["pool_available"] == 1
