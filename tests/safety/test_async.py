"""Safe-by-default features on AsyncConnectionPool: the sync suite's main
cases (test_safety_*.py), run on the event loop.

Blocking helpers (terminating backends, asking pg_stat_activity) run in a
thread, so the pool's maintenance tasks keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors as e

from ferropool import AsyncConnectionPool, PoolTimeout
from tests.fixtures.helpers import DEADLINE, terminate_backend
from tests.fixtures.safety import backend_pids, terminate_all

pytestmark = pytest.mark.anyio

AConn = psycopg.AsyncConnection[Any]


async def wait_for(
    predicate: Callable[[], object], timeout: float = DEADLINE, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


async def pid_of(conn: AConn) -> int:
    cur = await conn.execute("select pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    if not conn.autocommit:
        await conn.rollback()
    return int(row[0])


async def apool_pids(pool: AsyncConnectionPool[Any]) -> set[int]:
    conns = [await pool.getconn(timeout=DEADLINE) for _ in range(pool.max_size)]
    try:
        return {await pid_of(c) for c in conns}
    finally:
        for c in conns:
            await pool.putconn(c)


def settled(pool: AsyncConnectionPool[Any], size: int) -> Callable[[], bool]:
    def check() -> bool:
        stats = pool.get_stats()
        return stats["pool_size"] == stats["pool_available"] == size

    return check


@pytest.mark.parametrize("last_use", ["idle", "just_used"])
async def test_no_request_fails_after_every_backend_is_terminated(
    dsn: str, app_name: str, last_use: str
) -> None:
    async with AsyncConnectionPool(
        dsn, min_size=4, open=False, kwargs={"application_name": app_name}
    ) as pool:
        await pool.wait(timeout=DEADLINE)
        old = await apool_pids(pool)
        if last_use == "idle":
            await asyncio.sleep(0.7)  # past liveness_bypass
        assert await asyncio.to_thread(terminate_all, dsn, app_name) == 4

        failures = []
        for i in range(100):
            try:
                async with pool.connection() as conn:
                    await conn.execute("select 1")
            except Exception as ex:
                failures.append(f"request {i}: {type(ex).__name__}: {ex}")

        assert failures == [], f"{len(failures)} of 100 requests failed: {failures[:3]}"
        await wait_for(settled(pool, 4), what="refilled")
        assert (await apool_pids(pool)).isdisjoint(old)


async def test_shutdown_error_in_a_block_retires_every_connection_once(
    dsn: str, app_name: str
) -> None:
    async with AsyncConnectionPool(
        dsn, min_size=3, open=False, kwargs={"application_name": app_name}
    ) as pool:
        await pool.wait(timeout=DEADLINE)
        old = await apool_pids(pool)

        with pytest.raises(e.AdminShutdown):
            async with pool.connection() as conn:
                await asyncio.to_thread(terminate_backend, dsn, await pid_of(conn))
                await conn.execute("select 1")

        assert pool.get_stats()["failovers"] == 1
        await wait_for(settled(pool, 3), what="replacements")
        assert (await apool_pids(pool)).isdisjoint(old)
        assert pool.get_stats()["failovers"] == 1
        assert await asyncio.to_thread(backend_pids, dsn, app_name) == await apool_pids(pool)


async def test_keepalive_replaces_a_connection_terminated_while_idle(
    dsn: str, app_name: str
) -> None:
    async with AsyncConnectionPool(
        dsn,
        min_size=1,
        open=False,
        keepalive_interval=0.3,
        kwargs={"application_name": app_name},
    ) as pool:
        await pool.wait(timeout=DEADLINE)
        [old] = await asyncio.to_thread(backend_pids, dsn, app_name)
        await asyncio.to_thread(terminate_backend, dsn, old)
        await wait_for(lambda: pool.get_stats()["connections_lost"] == 1, what="found by a ping")
        await wait_for(settled(pool, 1), what="replaced")
        stats = pool.get_stats()
        assert stats["requests_num"] == 0
        assert stats["keepalive_pings"] >= 1
        assert old not in await apool_pids(pool)


async def test_reset_discard_cleans_the_session(dsn: str) -> None:
    async with AsyncConnectionPool(
        dsn, min_size=1, max_size=1, open=False, reset="discard"
    ) as pool:
        async with pool.connection() as conn:
            pid = await pid_of(conn)
            await conn.execute("set work_mem = '7MB'")
            await conn.execute("select pg_advisory_lock(4243)")
        async with pool.connection() as conn:
            assert await pid_of(conn) == pid
            cur = await conn.execute("show work_mem")
            assert await cur.fetchone() != ("7MB",)
            cur = await conn.execute("select count(*) from pg_locks where locktype = 'advisory'")
            assert await cur.fetchone() == (0,)
            assert conn.autocommit is False


async def test_async_and_plain_hooks_fire_with_their_arguments(dsn: str) -> None:
    events: list[tuple[Any, ...]] = []

    async def on_connect(conn: AConn) -> None:
        await asyncio.sleep(0)
        events.append(("connect", conn))

    async def on_checkout(conn: AConn) -> None:
        events.append(("checkout", conn))

    def on_checkin(conn: AConn) -> None:
        events.append(("checkin", conn))

    async def on_close(conn: AConn, reason: str) -> None:
        events.append(("close", conn, reason))

    async def on_error(exc: BaseException, conn: AConn | None) -> None:
        events.append(("error", exc, conn))

    pool = AsyncConnectionPool(
        dsn,
        min_size=1,
        open=False,
        on_connect=on_connect,  # type: ignore[arg-type]
        on_checkout=on_checkout,  # type: ignore[arg-type]
        on_checkin=on_checkin,
        on_close=on_close,  # type: ignore[arg-type]
        on_error=on_error,  # type: ignore[arg-type]
    )
    async with pool:
        await pool.wait(timeout=DEADLINE)
        [(_, first)] = events
        async with pool.connection() as conn:
            assert conn is first
            assert events[-1] == ("checkout", conn)
        assert events[-1] == ("checkin", conn)
        with pytest.raises(e.AdminShutdown) as raised:
            async with pool.connection() as conn:
                await asyncio.to_thread(terminate_backend, dsn, await pid_of(conn))
                await conn.execute("select 1")
        assert ("error", raised.value, first) in events
        assert ("close", first, "broken") in events
        await wait_for(settled(pool, 1), what="replacement")
        second = [ev[1] for ev in events if ev[0] == "connect"][1]
    assert events[-1] == ("close", second, "pool closed")


async def test_a_raising_async_hook_is_logged_and_changes_nothing(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")

    async def boom(*args: Any) -> None:
        raise RuntimeError("async hook boom")

    async with AsyncConnectionPool(
        dsn,
        min_size=2,
        open=False,
        on_connect=boom,  # type: ignore[arg-type]
        on_checkout=boom,  # type: ignore[arg-type]
        on_checkin=boom,  # type: ignore[arg-type]
    ) as pool:
        await pool.wait(timeout=DEADLINE)
        for _ in range(5):
            async with pool.connection() as conn:
                await conn.execute("select 1")
        stats = pool.get_stats()
        assert stats["pool_size"] == stats["pool_available"] == 2
        assert stats["connections_lost"] == stats["requests_errors"] == 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for hook in ("on_connect", "on_checkout", "on_checkin"):
        assert f"{hook} hook failed: async hook boom" in logged


async def test_leak_is_reported_once_with_its_stack(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    async with AsyncConnectionPool(dsn, min_size=1, open=False, leak_timeout=0.3) as pool:
        conn = await pool.getconn(timeout=DEADLINE)
        await wait_for(lambda: pool.get_stats()["leaks_detected"] == 1, what="leak report")
        await asyncio.sleep(1.0)
        reports = [r.getMessage() for r in caplog.records if "held for" in r.getMessage()]
        assert len(reports) == 1
        assert "test_leak_is_reported_once_with_its_stack" in reports[0]
        assert pool.get_stats()["leaks_detected"] == 1
        await pool.putconn(conn)


async def test_dropped_connection_is_reclaimed(dsn: str) -> None:
    async with AsyncConnectionPool(
        dsn, min_size=1, max_size=1, open=False, leak_timeout=0.3
    ) as pool:
        await pool.getconn(timeout=DEADLINE)  # dropped at once
        gc.collect()
        await wait_for(lambda: pool.get_stats()["leaks_reclaimed"] == 1, what="reclaimed")
        async with pool.connection(timeout=DEADLINE) as conn:
            await conn.execute("select 1")


async def test_pause_and_resume(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, open=False) as pool:
        await pool.wait(timeout=DEADLINE)
        pool.pause()
        assert pool.get_stats()["paused"] == 1
        with pytest.raises(PoolTimeout):
            await pool.getconn(timeout=0.3)
        served: list[int] = []

        async def request(n: int) -> None:
            async with pool.connection(timeout=DEADLINE):
                served.append(n)
                await asyncio.sleep(0.01)

        tasks = []
        for n in range(3):
            tasks.append(asyncio.create_task(request(n)))
            await wait_for(lambda n=n: pool.get_stats()["requests_waiting"] == n + 1)
        pool.resume()
        await asyncio.gather(*tasks)
        assert served == [0, 1, 2]
        assert not pool.paused
