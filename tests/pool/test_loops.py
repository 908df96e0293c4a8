"""An async pool serves whichever event loop awaits it.

Applications that run a loop per job (``asyncio.run()`` in a worker, a loop
per test) keep one pool across loops. The pool's maintenance runs as tasks
on a loop that uses it; when that loop ends, the work it had not done moves
to the next loop. Async-only by nature: the sync pool has no loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ferropool import AsyncConnectionPool, AsyncNullConnectionPool
from tests.fixtures.helpers import DEADLINE


async def serve(pool: Any, requests: int) -> list[int]:
    """Concurrent requests, more than the pool has connections (some wait)."""

    async def one() -> int:
        async with pool.connection(timeout=DEADLINE) as conn:
            cur = await conn.execute("select 1")
            row = await cur.fetchone()
            await asyncio.sleep(0.01)
            return int(row[0])

    return list(await asyncio.gather(*(one() for _ in range(requests))))


@pytest.mark.parametrize("cls", [AsyncConnectionPool, AsyncNullConnectionPool])
def test_a_pool_serves_one_loop_after_another(dsn: str, cls: type[Any]) -> None:
    pool = cls(dsn, min_size=0 if cls is AsyncNullConnectionPool else 2, max_size=2, open=False)

    async def first() -> None:
        await pool.open()
        assert await serve(pool, 6) == [1] * 6

    asyncio.run(first())
    for _ in range(5):
        assert asyncio.run(serve(pool, 6)) == [1] * 6
    stats = pool.get_stats()
    assert stats["requests_num"] == 36
    assert stats["requests_errors"] == 0

    async def last() -> None:
        await pool.close()

    asyncio.run(last())
    assert pool.closed


def test_maintenance_moves_to_the_next_loop(dsn: str) -> None:
    """Connections to open (a drain, expired ones) after the first loop ended
    are opened by workers on the loop that uses the pool next."""
    pool = AsyncConnectionPool(dsn, min_size=3, open=False)

    async def first() -> set[int]:
        await pool.open(wait=True, timeout=DEADLINE)
        return await pids(pool, 3)

    before = asyncio.run(first())

    async def second() -> set[int]:
        await pool.drain()  # every connection replaced, by workers on this loop
        await pool.wait(timeout=DEADLINE)
        return await pids(pool, 3)

    after = asyncio.run(second())
    assert not before & after, "the drained connections were replaced"
    assert pool.get_stats()["pool_available"] == 3
    asyncio.run(pool.close())


async def pids(pool: Any, n: int) -> set[int]:
    conns = [await pool.getconn(timeout=DEADLINE) for _ in range(n)]
    try:
        return {c.info.backend_pid for c in conns}
    finally:
        for c in conns:
            await pool.putconn(c)
