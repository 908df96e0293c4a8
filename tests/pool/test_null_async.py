"""AsyncNullConnectionPool: psycopg_pool's async pool that keeps no connection.

Each request opens its own connection, closed when given back unless a
queued request takes it over; max_size bounds how many exist at once (0: no
bound). Connections are counted on the server through pg_stat_activity.
Cancellation of null-pool requests is in test_pool_async_cancel.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from ferropool import AsyncNullConnectionPool, PoolClosed, PoolTimeout, TooManyRequests
from ferropool.embedded import free_port
from tests.fixtures.fault_proxy import fault_proxy
from tests.fixtures.helpers import DEADLINE
from tests.fixtures.helpers_async import (
    backend_pid_async,
    count_backends_async,
    queued,
    wait_backends,
    wait_until_async,
)

pytestmark = pytest.mark.anyio


def null_pool(dsn: str, app_name: str, **kwargs: Any) -> AsyncNullConnectionPool[Any]:
    """A null pool whose connections carry *app_name* on the server; open it
    with ``async with``."""
    return AsyncNullConnectionPool(dsn, kwargs={"application_name": app_name}, open=False, **kwargs)


async def test_min_size_must_be_zero(dsn: str) -> None:
    with pytest.raises(ValueError, match=r"min_size.*1"):
        AsyncNullConnectionPool(dsn, min_size=1, open=False)
    async with AsyncNullConnectionPool(dsn, max_size=2, open=False) as pool:
        with pytest.raises(ValueError, match=r"min_size.*1"):
            await pool.resize(1, 3)
        assert (pool.min_size, pool.max_size) == (0, 2)


async def test_each_request_opens_a_new_connection(dsn: str, app_name: str) -> None:
    async with null_pool(dsn, app_name) as pool:
        pids = []
        for _ in range(3):
            async with pool.connection() as conn:
                pids.append(await backend_pid_async(conn))
                assert await count_backends_async(dsn, app_name) == 1
        assert len(set(pids)) == 3
        assert pool.get_stats()["connections_num"] == 3


async def test_connections_closed_on_return(dsn: str, app_name: str) -> None:
    async with null_pool(dsn, app_name) as pool:
        conns = [await pool.getconn() for _ in range(3)]
        assert await count_backends_async(dsn, app_name) == 3
        for conn in conns:
            await pool.putconn(conn)
            assert conn.closed
        await wait_backends(dsn, app_name, 0)
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (0, 0)


async def test_max_size_bounds_concurrent_connections(dsn: str, app_name: str) -> None:
    async with null_pool(dsn, app_name, max_size=2) as pool:
        a, b = await pool.getconn(), await pool.getconn()
        pid_a = await backend_pid_async(a)
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout):
            await pool.getconn(timeout=0.2)
        assert time.monotonic() - t0 >= 0.2
        assert await count_backends_async(dsn, app_name) == 2

        # A waiter is handed the returned connection itself, not a new one.
        waiter = asyncio.create_task(pool.getconn(timeout=DEADLINE))
        await wait_until_async(lambda: pool.get_stats()["requests_waiting"] == 1)
        await pool.putconn(a)
        assert await waiter is a
        assert not a.closed
        assert await backend_pid_async(a) == pid_a
        assert await count_backends_async(dsn, app_name) == 2
        await pool.putconn(a)
        await pool.putconn(b)
        assert pool.get_stats()["pool_size"] == 0


async def test_waiters_served_in_fifo_order(dsn: str) -> None:
    async with AsyncNullConnectionPool(dsn, max_size=1) as pool:
        held = await pool.getconn()
        order: list[int] = []

        async def client(i: int) -> None:
            async with pool.connection(timeout=DEADLINE):
                order.append(i)

        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(client(i)))
            await queued(pool, i + 1)
        await pool.putconn(held)
        await asyncio.gather(*tasks)
        assert order == list(range(5))


async def test_max_size_zero_is_unlimited(dsn: str, app_name: str) -> None:
    async with null_pool(dsn, app_name, max_size=0) as pool:
        assert pool.max_size == 0
        conns = await asyncio.gather(*(pool.getconn(timeout=DEADLINE) for _ in range(12)))
        assert len({await backend_pid_async(c) for c in conns}) == 12
        assert await count_backends_async(dsn, app_name) == 12
        for conn in conns:
            await pool.putconn(conn)
        await wait_backends(dsn, app_name, 0)


async def test_concurrent_requests_never_exceed_max_size(dsn: str, app_name: str) -> None:
    max_size = 3
    async with null_pool(dsn, app_name, max_size=max_size) as pool:
        in_use = 0
        peak = 0

        async def client() -> None:
            nonlocal in_use, peak
            for _ in range(5):
                async with pool.connection(timeout=DEADLINE) as conn:
                    in_use += 1
                    peak = max(peak, in_use, pool.get_stats()["pool_size"])
                    await conn.execute("select 1")
                    in_use -= 1

        await asyncio.gather(*(client() for _ in range(8)))
        assert peak == max_size
        assert pool.get_stats()["requests_num"] == 40
        await wait_backends(dsn, app_name, 0)


async def test_timed_out_waiter_does_not_swallow_connection(dsn: str) -> None:
    async with AsyncNullConnectionPool(dsn, max_size=1) as pool:
        held = await pool.getconn()
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout):
            await pool.getconn(timeout=0.3)
        assert time.monotonic() - t0 >= 0.3
        await pool.putconn(held)
        # Nobody waits any more: closed, and the capacity is free again.
        assert held.closed
        assert pool.get_stats()["pool_size"] == 0
        async with pool.connection(timeout=DEADLINE) as conn:
            await conn.execute("select 1")


async def test_max_waiting(dsn: str) -> None:
    async with AsyncNullConnectionPool(dsn, max_size=1, max_waiting=1) as pool:
        held = await pool.getconn()
        waiter = asyncio.create_task(pool.getconn(timeout=DEADLINE))
        await wait_until_async(lambda: pool.get_stats()["requests_waiting"] == 1)
        with pytest.raises(TooManyRequests):
            await pool.getconn(timeout=DEADLINE)
        await pool.putconn(held)
        await pool.putconn(await waiter)


async def test_wait_checks_connectivity(dsn: str, app_name: str) -> None:
    async with null_pool(dsn, app_name) as pool:
        await pool.wait(timeout=DEADLINE)
        # Proven, then closed: the pool keeps nothing.
        await wait_backends(dsn, app_name, 0)
        assert pool.get_stats()["pool_size"] == 0

    bad: AsyncNullConnectionPool[Any] = AsyncNullConnectionPool(
        f"host=127.0.0.1 port={free_port()} connect_timeout=2", open=False
    )
    await bad.open()
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout, match="Connection refused"):
        await bad.wait(timeout=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert bad.closed


async def test_resize_changes_max_only(dsn: str, app_name: str) -> None:
    async with null_pool(dsn, app_name, max_size=1) as pool:
        await pool.resize(0, 3)
        assert (pool.min_size, pool.max_size) == (0, 3)
        assert await count_backends_async(dsn, app_name) == 0, "nothing opened in advance"
        conns = [await pool.getconn(timeout=DEADLINE) for _ in range(3)]
        with pytest.raises(PoolTimeout):
            await pool.getconn(timeout=0.2)
        for conn in conns:
            await pool.putconn(conn)
        await pool.check()  # nothing to check, and nothing opened
        await pool.drain()
        assert pool.get_stats()["pool_size"] == 0


async def test_broken_connection_returned(dsn: str) -> None:
    async with AsyncNullConnectionPool(dsn, max_size=1) as pool:
        conn = await pool.getconn()
        await conn.close()
        await pool.putconn(conn)
        stats = pool.get_stats()
        assert (stats["returns_bad"], stats["pool_size"]) == (1, 0)
        async with pool.connection(timeout=DEADLINE) as fresh:
            await fresh.execute("select 1")


async def test_coroutine_callbacks_run_for_every_connection(dsn: str) -> None:
    configured: list[int] = []
    resets: list[int] = []

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        configured.append(id(conn))
        await conn.set_autocommit(True)

    async def reset(conn: psycopg.AsyncConnection[Any]) -> None:
        resets.append(id(conn))

    async def conninfo() -> str:
        return dsn

    async with AsyncNullConnectionPool(conninfo, configure=configure, reset=reset) as pool:
        for _ in range(3):
            async with pool.connection() as conn:
                assert conn.autocommit
        assert len(configured) == 3
        assert len(resets) == 3


async def test_closed_pool(dsn: str) -> None:
    pool: AsyncNullConnectionPool[Any] = AsyncNullConnectionPool(dsn, open=False)
    await pool.open()
    conn = await pool.getconn()
    await pool.close()
    with pytest.raises(PoolClosed):
        await pool.getconn()
    await pool.putconn(conn)
    assert conn.closed


async def test_close_wakes_waiters(dsn: str) -> None:
    pool: AsyncNullConnectionPool[Any] = AsyncNullConnectionPool(dsn, max_size=1, open=False)
    await pool.open()
    held = await pool.getconn()
    waiters = [asyncio.create_task(pool.getconn(timeout=60)) for _ in range(3)]
    await wait_until_async(lambda: pool.get_stats()["requests_waiting"] == 3)
    await pool.close()
    for waiter in waiters:
        with pytest.raises(PoolClosed):
            await waiter
    await pool.putconn(held)
    assert held.closed


@pytest.mark.timeout(60)
async def test_a_connect_with_no_time_left_still_has_a_connect_timeout(dsn: str) -> None:
    """As for the sync null pool: wait(timeout=0) on a server that never
    answers ends at connect_timeout instead of hanging."""
    with fault_proxy(dsn) as proxy:
        proxy.black_hole()
        pool = null_pool(proxy.dsn(dsn), "no-time-left")
        await pool.open()
        with pytest.raises(PoolTimeout, match="initialization incomplete"):
            await pool.wait(timeout=0)
        assert pool.closed


async def test_requests_queued_behind_expiring_connections_are_all_served(dsn: str) -> None:
    """As the sync pool: a connection retired on return frees its capacity
    for the oldest queued request; nobody waits out its timeout."""
    served: list[int] = []
    async with AsyncNullConnectionPool(dsn, max_size=1, max_lifetime=0.2) as pool:

        async def client(i: int) -> None:
            async with pool.connection(timeout=DEADLINE):
                await asyncio.sleep(0.1)
            served.append(i)

        await asyncio.gather(*(client(i) for i in range(5)))
        stats = pool.get_stats()
    assert sorted(served) == list(range(5))
    assert stats["requests_errors"] == 0


async def _expire(pool: AsyncNullConnectionPool[Any], conn: psycopg.AsyncConnection[Any]) -> None:
    await asyncio.sleep(0.2)  # past its max_lifetime (0.1 s)
    await pool.putconn(conn)


async def _close_then_return(
    pool: AsyncNullConnectionPool[Any], conn: psycopg.AsyncConnection[Any]
) -> None:
    await conn.close()
    await pool.putconn(conn)


async def _fail_rollback(
    pool: AsyncNullConnectionPool[Any], conn: psycopg.AsyncConnection[Any]
) -> None:
    await conn.execute("select 1")
    async with await psycopg.AsyncConnection.connect(
        pool.conninfo,  # type: ignore[arg-type]
        autocommit=True,
    ) as admin:
        await admin.execute("select pg_terminate_backend(%s, 5000)", (conn.info.backend_pid,))
    await pool.putconn(conn)


async def _drain_then_return(
    pool: AsyncNullConnectionPool[Any], conn: psycopg.AsyncConnection[Any]
) -> None:
    await pool.drain()
    await pool.putconn(conn)


async def _return(pool: AsyncNullConnectionPool[Any], conn: psycopg.AsyncConnection[Any]) -> None:
    await pool.putconn(conn)


async def _failing_reset(conn: psycopg.AsyncConnection[Any]) -> None:
    raise RuntimeError("reset failed")


RETIRE_PATHS: dict[str, tuple[dict[str, Any], Any]] = {
    "expired": ({"max_lifetime": 0.1}, _expire),
    "closed by its borrower": ({}, _close_then_return),
    "reset failed": ({"reset": _failing_reset}, _return),
    "rollback failed": ({}, _fail_rollback),
    "used up": ({"max_uses": 1}, _return),
    "drained": ({}, _drain_then_return),
}


@pytest.mark.parametrize("path", sorted(RETIRE_PATHS))
async def test_a_connection_retired_on_return_serves_a_queued_request(dsn: str, path: str) -> None:
    """Whatever retires the returned connection, the request queued behind
    it is told the capacity is free and opens its own connection at once."""
    settings, retire = RETIRE_PATHS[path]
    async with AsyncNullConnectionPool(dsn, max_size=1, **settings) as pool:
        held = await pool.getconn()
        old_pid = held.info.backend_pid

        async def waiter() -> int:
            async with pool.connection(timeout=60) as conn:
                return await backend_pid_async(conn)

        task = asyncio.create_task(waiter())
        await queued(pool, 1)
        await retire(pool, held)
        pid = await asyncio.wait_for(task, DEADLINE)
        assert pid != old_pid, "served by a new connection"
        assert held.closed
        stats = pool.get_stats()
        assert (stats["requests_errors"], stats["requests_waiting"]) == (0, 0)


async def test_a_waiter_cancelled_after_a_grant_passes_the_capacity_on(dsn: str) -> None:
    """A task cancelled after it was granted capacity never keeps it: the
    next queued request gets it."""
    async with AsyncNullConnectionPool(dsn, max_size=1) as pool:
        held = await pool.getconn()
        first = asyncio.create_task(pool.getconn(timeout=60))
        await queued(pool, 1)
        second = asyncio.create_task(pool.getconn(timeout=60))
        await queued(pool, 2)
        await held.close()
        # The grant to `first` lands in this loop iteration; cancel it
        # before it runs.
        await pool.putconn(held)
        first.cancel()
        conn = await asyncio.wait_for(second, DEADLINE)
        with pytest.raises(asyncio.CancelledError):
            await first
        await pool.putconn(conn)
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["requests_waiting"]) == (0, 0)
