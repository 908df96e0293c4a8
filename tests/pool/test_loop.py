"""What only the async pools have: event loops, and callbacks for them.

Async only, and not a generated source: a sync pool has no loop to run on,
to block or to outlive. Here: the pools' constructor and its warning, opening
with and without a running loop, waiting that keeps the loop running (also
for several pools at once), maintenance on the pool's own loop, plain
callables where a coroutine function is also accepted (callbacks and
hooks), and the many-tasks
scenario of test_concurrency_async.py on uvloop, whose thread-safe wake-up
(how the core wakes a waiter) is implemented apart from asyncio's.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import psycopg_pool
import pytest
import uvloop
from psycopg import errors as e

from ferropool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    ConnectionPool,
    NullConnectionPool,
)
from ferropool.cli.embedded import free_port
from tests.fixtures.helpers_async import (
    DEADLINE,
    backend_pid_async,
    queued,
    terminate_backend_async,
    wait_backends,
    wait_until_async,
)
from tests.fixtures.safety_async import settled
from tests.pool.test_concurrency_async import share_connections

pytestmark = pytest.mark.anyio

PAIRS = [
    pytest.param(AsyncConnectionPool, psycopg_pool.AsyncConnectionPool, id="AsyncConnectionPool"),
    pytest.param(
        AsyncNullConnectionPool, psycopg_pool.AsyncNullConnectionPool, id="AsyncNullConnectionPool"
    ),
]


def test_constructors_match_the_sync_pools() -> None:
    """Same options as the sync pools, ferropool's own included."""
    pairs = [(AsyncConnectionPool, ConnectionPool), (AsyncNullConnectionPool, NullConnectionPool)]
    for async_cls, sync_cls in pairs:
        mine = inspect.signature(async_cls.__init__).parameters
        sync = inspect.signature(sync_cls.__init__).parameters
        assert [(p.name, p.kind) for p in mine.values()] == [
            (p.name, p.kind) for p in sync.values()
        ]
        for name, param in mine.items():
            if name != "connection_class":  # AsyncConnection, Connection
                assert param.default == sync[name].default, name


@pytest.mark.parametrize("cls", [AsyncConnectionPool, AsyncNullConnectionPool])
async def test_constructor_warning_points_at_the_caller(dsn: str, cls: type[Any]) -> None:
    """The warning names the line to change, not a line inside ferropool."""
    with pytest.warns(RuntimeWarning, match="in the constructor") as record:
        pool = cls(dsn, min_size=0, max_size=1, open=True)
    await pool.close()
    assert [(w.filename, w.lineno) for w in record] == [(__file__, record[0].lineno)]
    assert record[0].filename == __file__, f"points at {record[0].filename}"


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
def test_open_without_running_loop_raises(dsn: str, ours: type[Any], theirs: type[Any]) -> None:
    for cls in (theirs, ours):
        with pytest.raises(RuntimeError, match="open with no running loop"):
            cls(dsn)
        with (
            pytest.warns(RuntimeWarning, match="in the constructor"),
            pytest.raises(RuntimeError, match="open with no running loop"),
        ):
            cls(dsn, open=True)
        # open=False needs no loop: the pool is opened later, in one.
        pool = cls(dsn, open=False)
        assert pool.closed


def test_pool_made_outside_a_loop_opens_in_one(dsn: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=1, open=False)

    async def use() -> object:
        async with pool, pool.connection() as conn:
            cur = await conn.execute("select 1")
            return await cur.fetchone()

    assert asyncio.run(use()) == (1,)
    assert pool.closed


async def test_wait_keeps_the_loop_running(dsn: str) -> None:
    """Other tasks run while wait() waits for the pool to fill."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        async with AsyncConnectionPool(dsn, min_size=4, open=False) as pool:
            await pool.wait(timeout=DEADLINE)
    finally:
        task.cancel()
    assert ticks > 0


def test_pools_waiting_together_do_not_starve_the_loop(dsn: str) -> None:
    """Several pools opened with wait=True at once, as an app with a few
    databases does at start-up, all become ready.

    The loop's default executor is what psycopg uses to resolve host names:
    a wait() that parked there would keep connections from being opened.
    A small executor makes the limit the same on any machine.
    """

    async def main(dsn: str) -> list[dict[str, int]]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
        pools = [AsyncConnectionPool(dsn, min_size=1, open=False) for _ in range(3)]
        try:
            await asyncio.gather(*(p.open(wait=True, timeout=DEADLINE) for p in pools))
            return [p.get_stats() for p in pools]
        finally:
            for p in pools:
                await p.close()

    # By name, so that connecting needs the resolver.
    stats = asyncio.run(main(dsn.replace("host=127.0.0.1", "host=localhost")))
    assert [s["pool_available"] for s in stats] == [1, 1, 1]


async def test_waiting_does_not_block_the_loop(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        held = await pool.getconn()
        waiter = asyncio.create_task(pool.getconn(timeout=DEADLINE))
        await queued(pool, 1)
        await asyncio.sleep(0.05)  # the loop runs other tasks meanwhile
        assert not waiter.done()
        await pool.putconn(held)
        assert await waiter is held
        await pool.putconn(held)


async def test_configure_runs_on_the_pools_loop(dsn: str) -> None:
    """Maintenance runs as tasks on the pool's loop, not in another thread."""
    seen: list[tuple[asyncio.AbstractEventLoop, int]] = []

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        seen.append((asyncio.get_running_loop(), threading.get_ident()))

    async with AsyncConnectionPool(dsn, min_size=2, configure=configure) as pool:
        await pool.wait(timeout=DEADLINE)
    here = (asyncio.get_running_loop(), threading.get_ident())
    assert seen == [here, here]


async def test_conninfo_and_kwargs_may_be_plain_callables(dsn: str, app_name: str) -> None:
    calls: list[str] = []

    def conninfo() -> str:
        calls.append("conninfo")
        return dsn

    def kwargs() -> dict[str, Any]:
        calls.append("kwargs")
        return {"application_name": app_name}

    async with AsyncConnectionPool(conninfo, kwargs=kwargs, min_size=2) as pool:
        await pool.wait(timeout=DEADLINE)
        await wait_backends(dsn, app_name, 2)
    # Evaluated at each connect.
    assert calls == ["conninfo", "kwargs"] * 2


async def test_reconnect_failed_may_be_a_plain_callable() -> None:
    calls: list[Any] = []
    unreachable = f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres"
    async with AsyncConnectionPool(
        f"{unreachable} connect_timeout=2",
        min_size=1,
        reconnect_timeout=0.3,
        reconnect_failed=calls.append,
        open=False,
    ) as pool:
        t0 = time.monotonic()
        await wait_until_async(lambda: calls, what="reconnect_failed called")
        assert time.monotonic() - t0 >= 0.3
        assert calls[0] is pool
        assert pool.get_stats()["connections_errors"] > 0


def test_many_tasks_share_few_connections_on_uvloop(dsn: str) -> None:
    uvloop.run(share_connections(dsn))


async def test_hooks_may_be_coroutine_functions_or_plain_callables(dsn: str) -> None:
    """Hooks of both kinds on one pool, each called with its arguments."""
    events: list[tuple[Any, ...]] = []

    async def on_connect(conn: psycopg.AsyncConnection[Any]) -> None:
        await asyncio.sleep(0)
        events.append(("connect", conn))

    async def on_checkout(conn: psycopg.AsyncConnection[Any]) -> None:
        events.append(("checkout", conn))

    def on_checkin(conn: psycopg.AsyncConnection[Any]) -> None:
        events.append(("checkin", conn))

    async def on_close(conn: psycopg.AsyncConnection[Any], reason: str) -> None:
        events.append(("close", conn, reason))

    async def on_error(exc: BaseException, conn: psycopg.AsyncConnection[Any] | None) -> None:
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
                await terminate_backend_async(dsn, await backend_pid_async(conn))
                await conn.execute("select 1")
        assert ("error", raised.value, first) in events
        assert ("close", first, "broken") in events
        await wait_until_async(lambda: settled(pool, 1), what="replacement")
        second = [ev[1] for ev in events if ev[0] == "connect"][1]
    assert events[-1] == ("close", second, "pool closed")
