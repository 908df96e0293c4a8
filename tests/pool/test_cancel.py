"""Cancellation safety of the async pools: the heart of an asyncio pool.

A task cancelled while it waits never takes a connection with it, however
the cancellation and a returned connection interleave; a task cancelled
while it holds one gives it back, rolled back; asyncio.wait_for,
asyncio.timeout and anyio's cancel scopes bound a request without
swallowing the caller's own cancellation; closing the pool wakes its
waiters. psycopg_pool's issues #509 (connections lost when waiting tasks
are cancelled) and #1401 (cancellation absorbed by the connection check)
each have a regression test here. After every scenario the pool is asked
for all its connections at once: one lost would make that time out.

Async only, and not a generated source: cancelling a task at an await has
no sync counterpart (a thread cannot be cancelled). The sync pools' nearest
case, KeyboardInterrupt in the main thread, is test_interrupts.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import anyio
import psycopg
import pytest
import uvloop
from psycopg import sql

from ferropool import AsyncConnectionPool, AsyncNullConnectionPool
from tests.fixtures.freezable_proxy import FreezableProxy
from tests.fixtures.helpers_async import (
    DEADLINE,
    all_back,
    assert_whole,
    available,
    committed_rows,
    create_table,
    drop_table,
    holding,
    queued,
    wait_backends,
    wait_until_async,
)

pytestmark = pytest.mark.anyio

AnyPool = AsyncConnectionPool[Any]


@pytest.fixture
def table(dsn: str) -> Iterator[sql.Identifier]:
    name = create_table(dsn)
    yield name
    drop_table(dsn, name)


async def outcome(task: asyncio.Task[Any]) -> str:
    """How a task ended: "cancelled", or the name of its result's type."""
    try:
        result = await task
    except asyncio.CancelledError:
        return "cancelled"
    except Exception as ex:
        return type(ex).__name__
    return type(result).__name__


# ---- cancelled while waiting ------------------------------------------------


async def test_cancelled_waiters_take_nothing(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=2) as pool:
        await pool.wait()
        for _ in range(20):
            async with holding(pool, 2):
                waiters = [asyncio.create_task(pool.getconn(timeout=DEADLINE)) for _ in range(5)]
                await queued(pool, 5)
                for waiter in waiters:
                    waiter.cancel()
                assert [await outcome(w) for w in waiters] == ["cancelled"] * 5
                assert pool.get_stats()["requests_waiting"] == 0
        await assert_whole(pool, 2)


@pytest.mark.parametrize("order", ["return_then_cancel", "cancel_then_return"])
async def test_cancel_and_return_in_the_same_loop_iteration(dsn: str, order: str) -> None:
    """The connection goes to a waiter that is cancelled before it runs
    again: the waiter still ends cancelled, and the connection is back."""
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        await pool.wait()
        for _ in range(200):
            held = await pool.getconn()
            waiter = asyncio.create_task(pool.getconn(timeout=DEADLINE))
            await queued(pool, 1)
            # No await in between: both happen before the waiter runs again.
            if order == "return_then_cancel":
                await pool.putconn(held)  # completes without suspending
                waiter.cancel()
            else:
                waiter.cancel()
                await pool.putconn(held)
            assert await outcome(waiter) == "cancelled"
            stats = pool.get_stats()
            assert (stats["pool_available"], stats["requests_waiting"]) == (1, 0), stats
        await assert_whole(pool, 1)


@pytest.mark.parametrize("order", ["return_then_cancel", "cancel_then_return"])
async def test_connection_passes_over_a_cancelled_waiter_to_the_next(dsn: str, order: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        await pool.wait()
        for _ in range(50):
            held = await pool.getconn()
            first = asyncio.create_task(pool.getconn(timeout=DEADLINE))
            await queued(pool, 1)
            second = asyncio.create_task(pool.getconn(timeout=DEADLINE))
            await queued(pool, 2)
            if order == "return_then_cancel":
                await pool.putconn(held)
                first.cancel()
            else:
                first.cancel()
                await pool.putconn(held)
            assert await outcome(first) == "cancelled"
            assert await second is held, "the next waiter is served, not left waiting"
            await pool.putconn(held)
        await assert_whole(pool, 1)


async def test_cancellations_racing_with_returns_lose_nothing(dsn: str) -> None:
    """Many waiters, returns and cancellations interleaved at random points."""
    size = 3
    async with AsyncConnectionPool(dsn, min_size=size) as pool:
        await pool.wait()

        async def client(hold: float) -> None:
            async with pool.connection(timeout=DEADLINE):
                await asyncio.sleep(hold)

        for round_ in range(30):
            tasks = [asyncio.create_task(client(0.001 * (i % 3))) for i in range(12)]
            # Cancel every other task after a varying number of loop turns.
            for _ in range(round_ % 5):
                await asyncio.sleep(0)
            for task in tasks[round_ % 2 :: 2]:
                task.cancel()
            outcomes = [await outcome(t) for t in tasks]
            assert set(outcomes) <= {"cancelled", "NoneType"}
        await assert_whole(pool, size)


async def test_cancelled_while_pool_grows_takes_nothing(dsn: str, app_name: str) -> None:
    """Waiters cancelled while new connections are being opened for them."""
    async with AsyncConnectionPool(
        dsn, min_size=0, max_size=3, kwargs={"application_name": app_name}
    ) as pool:
        for _ in range(5):
            waiters = [asyncio.create_task(pool.getconn(timeout=DEADLINE)) for _ in range(6)]
            await asyncio.sleep(0)
            for waiter in waiters:
                waiter.cancel()
            for waiter in waiters:
                if await outcome(waiter) != "cancelled":
                    await pool.putconn(waiter.result())
        # Whatever was opened meanwhile is idle, and all of max_size can be had.
        await all_back(pool)
        async with holding(pool, 3):
            pass
        await assert_whole(pool, 3)
        await wait_backends(dsn, app_name, 3)


async def test_cancelled_waiter_counts_as_request_error(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        await pool.wait()
        held = await pool.getconn()
        waiter = asyncio.create_task(pool.getconn(timeout=DEADLINE))
        await queued(pool, 1)
        waiter.cancel()
        await pool.putconn(held)
        assert await outcome(waiter) == "cancelled"
        stats = pool.get_stats()
        assert (stats["requests_num"], stats["requests_queued"]) == (2, 1)
        assert stats["requests_errors"] == 1


# ---- cancelled while holding --------------------------------------------------


@pytest.mark.parametrize("where", ["between queries", "during a query"])
async def test_cancelled_holder_returns_connection_rolled_back(
    dsn: str, table: sql.Identifier, where: str
) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        inside = asyncio.Event()
        seen: list[psycopg.AsyncConnection[Any]] = []

        async def work() -> None:
            async with pool.connection() as conn:
                seen.append(conn)
                await conn.execute(sql.SQL("insert into {} values (1)").format(table))
                inside.set()
                if where == "during a query":
                    await conn.execute("select pg_sleep(60)")
                else:
                    await asyncio.sleep(60)

        task = asyncio.create_task(work())
        await inside.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        assert await outcome(task) == "cancelled"
        assert await committed_rows(dsn, table) == []
        async with pool.connection(timeout=DEADLINE) as conn:
            assert conn is seen[0], "the same connection, reused"
            cur = await conn.execute(sql.SQL("select count(*) from {}").format(table))
            assert await cur.fetchone() == (0,)
        await assert_whole(pool, 1)


async def test_cancelled_getconn_holder_can_putconn_in_finally(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:

        async def work() -> None:
            conn = await pool.getconn()
            try:
                await conn.execute("select pg_sleep(60)")
            finally:
                await pool.putconn(conn)

        task = asyncio.create_task(work())
        await wait_until_async(lambda: pool.get_stats()["pool_available"] == 0)
        await asyncio.sleep(0.05)
        task.cancel()
        assert await outcome(task) == "cancelled"
        await assert_whole(pool, 1)


async def test_holder_cancelled_twice_mid_query_gets_connection_replaced(dsn: str) -> None:
    """A query hangs on a connection whose peer went silent; cancelled once,
    psycopg tries to cancel it on the server; cancelled again, it gives up
    and closes the connection. The pool takes it back as broken and opens a
    replacement."""
    async with (
        FreezableProxy(dsn) as proxy,
        AsyncConnectionPool(proxy.dsn, min_size=2) as pool,
    ):
        await pool.wait()
        seen: list[psycopg.AsyncConnection[Any]] = []

        async def work() -> None:
            async with pool.connection() as conn:
                seen.append(conn)
                await conn.execute("select 1")

        proxy.freeze()
        task = asyncio.create_task(work())
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.sleep(0.1)
        task.cancel()
        assert await outcome(task) == "cancelled"
        proxy.thaw()
        assert seen[0].closed
        await assert_whole(pool, 2)
        assert pool.get_stats()["connections_num"] == 3


async def test_cancelled_check_loses_no_connection(dsn: str) -> None:
    """pool.check() cancelled half-way: checked or not, every connection stays."""

    class SlowCheckPool(AsyncConnectionPool[Any]):
        @staticmethod
        async def check_connection(conn: psycopg.AsyncConnection[Any]) -> None:
            await asyncio.sleep(0.05)
            await AsyncConnectionPool.check_connection(conn)

    async with SlowCheckPool(dsn, min_size=3) as pool:
        await pool.wait()
        for delay in (0.0, 0.03, 0.08):
            task = asyncio.create_task(pool.check())
            await asyncio.sleep(delay)
            task.cancel()
            assert await outcome(task) == "cancelled"
            await assert_whole(pool, 3)
        async with holding(pool, 3) as conns:
            assert not any(c.autocommit for c in conns), "left as configured"
            for conn in conns:
                await AsyncConnectionPool.check_connection(conn)


# ---- wait_for, timeout ------------------------------------------------------------


async def use_block(pool: AnyPool, hold: float = 0.0) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("select 1")
        row = await cur.fetchone()
        await asyncio.sleep(hold)
        assert row is not None
        return int(row[0])


async def test_wait_for_bounds_a_request(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, timeout=60) as pool:
        assert await asyncio.wait_for(use_block(pool), DEADLINE) == 1
        async with holding(pool, 1):
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(use_block(pool), 0.2)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.getconn(), 0.2)
            assert time.monotonic() - t0 >= 0.4
            assert pool.get_stats()["requests_waiting"] == 0
        await assert_whole(pool, 1)


async def test_wait_for_times_out_inside_the_block(dsn: str, table: sql.Identifier) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:

        async def work() -> None:
            async with pool.connection() as conn:
                await conn.execute(sql.SQL("insert into {} values (1)").format(table))
                await conn.execute("select pg_sleep(60)")

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(work(), 0.3)
        assert await committed_rows(dsn, table) == []
        await assert_whole(pool, 1)


@contextlib.asynccontextmanager
async def anyio_fail_after(seconds: float) -> AsyncIterator[None]:
    with anyio.fail_after(seconds):
        yield


def timeout_managers() -> list[Any]:
    """Deadlines a caller puts around a request, as async context managers."""
    managers: list[Any] = [pytest.param(anyio_fail_after, id="anyio.fail_after")]
    if sys.version_info >= (3, 11):
        managers.insert(0, pytest.param(lambda s: asyncio.timeout(s), id="asyncio.timeout"))
    return managers


@pytest.mark.parametrize("deadline", timeout_managers())
async def test_timeout_around_connection_block(
    dsn: str, deadline: Callable[[float], AbstractAsyncContextManager[Any]]
) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, timeout=60) as pool:
        # Waiting for the connection.
        async with holding(pool, 1):
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                async with deadline(0.2), pool.connection():
                    pass
            assert time.monotonic() - t0 >= 0.2
        # Inside the block.
        with pytest.raises(TimeoutError):
            async with deadline(0.2), pool.connection() as conn:
                await conn.execute("select pg_sleep(60)")
        await assert_whole(pool, 1)


async def test_outer_cancel_inside_wait_for_is_not_swallowed(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, timeout=60) as pool:
        async with holding(pool, 1):
            reached = asyncio.Event()

            async def caller() -> None:
                reached.set()
                await asyncio.wait_for(use_block(pool), 30)

            task = asyncio.create_task(caller())
            await reached.wait()
            await queued(pool, 1)
            task.cancel()
            assert await outcome(task) == "cancelled"
        # Holding the connection inside wait_for.
        holder = asyncio.create_task(asyncio.wait_for(use_block(pool, hold=60), 30))
        await available(pool, 0)
        await asyncio.sleep(0.05)
        holder.cancel()
        assert await outcome(holder) == "cancelled"
        await assert_whole(pool, 1)


@pytest.mark.parametrize("deadline", timeout_managers())
async def test_outer_cancel_inside_a_deadline_is_not_turned_into_timeout(
    dsn: str, deadline: Callable[[float], AbstractAsyncContextManager[Any]]
) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, timeout=60) as pool:
        async with holding(pool, 1):

            async def waiting() -> None:
                async with deadline(30), pool.connection():
                    pass

            task = asyncio.create_task(waiting())
            await queued(pool, 1)
            task.cancel()
            assert await outcome(task) == "cancelled"

        async def holding_it() -> None:
            async with deadline(30), pool.connection() as conn:
                await conn.execute("select pg_sleep(60)")

        task = asyncio.create_task(holding_it())
        await wait_until_async(lambda: pool.get_stats()["pool_available"] == 0)
        await asyncio.sleep(0.05)
        task.cancel()
        assert await outcome(task) == "cancelled"
        await assert_whole(pool, 1)


# ---- close -----------------------------------------------------------------------


async def test_close_wakes_waiters_with_pool_closed(dsn: str) -> None:
    pool: AnyPool = AsyncConnectionPool(dsn, min_size=1, open=False)
    await pool.open(wait=True)
    held = await pool.getconn()
    waiters = [asyncio.create_task(pool.getconn(timeout=60)) for _ in range(3)]
    blocks = [asyncio.create_task(use_block(pool)) for _ in range(2)]
    await queued(pool, 5)
    await pool.close()
    # Woken by close(), not by their 60 s timeout.
    await asyncio.wait(waiters + blocks, timeout=DEADLINE)
    assert [await outcome(t) for t in waiters + blocks] == ["PoolClosed"] * 5
    await pool.putconn(held)
    assert held.closed


async def test_close_racing_with_cancellation(dsn: str) -> None:
    for _ in range(20):
        pool: AnyPool = AsyncConnectionPool(dsn, min_size=1, open=False)
        await pool.open(wait=True)
        held = await pool.getconn()
        waiters = [asyncio.create_task(pool.getconn(timeout=60)) for _ in range(4)]
        await queued(pool, 4)
        waiters[0].cancel()
        await pool.putconn(held)
        waiters[1].cancel()
        await pool.close()
        waiters[2].cancel()
        outcomes = [await outcome(w) for w in waiters]
        assert outcomes[:2] == ["cancelled", "cancelled"]
        assert outcomes[2] in ("cancelled", "PoolClosed")
        assert outcomes[3] == "PoolClosed"
        assert held.closed
        assert pool.get_stats()["pool_size"] == 0


# ---- psycopg_pool issue #509 --------------------------------------------------


async def sleeping_queries(dsn: str, application_name: str) -> int:
    """How many of the pool's connections are running pg_sleep on the server."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "select count(*) from pg_stat_activity where application_name = %s"
            " and state = 'active' and query like 'select pg_sleep%%'",
            (application_name,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def run_and_cancel(pool: AnyPool, dsn: str, app_name: str, when: str) -> None:
    """#509's reproduction: more tasks than connections, each running a
    query in `async with pool.connection()`, all cancelled at once."""

    async def operation() -> None:
        async with pool.connection() as conn:
            await conn.execute("select pg_sleep(60)")

    tasks = [asyncio.create_task(operation()) for _ in range(10)]
    if when == "all connections busy":
        # The queries are running on the server (so psycopg's cancel reaches
        # them), the other tasks are queued.
        deadline = time.monotonic() + DEADLINE
        while await sleeping_queries(dsn, app_name) < pool.max_size:
            assert time.monotonic() < deadline, "3 queries running"
            await asyncio.sleep(0.01)
        await queued(pool, 10 - pool.max_size)
    else:
        await asyncio.sleep(0)  # every task is queued, connections are being opened
    for task in tasks:
        task.cancel()
    assert {await outcome(t) for t in tasks} == {"cancelled"}


@pytest.mark.parametrize("when", ["all connections busy", "pool still growing"])
async def test_issue_509_cancelled_tasks_do_not_lose_connections(
    dsn: str, app_name: str, when: str
) -> None:
    """psycopg/psycopg#509: with a growing pool (min_size=0, max_size=3),
    cancelling tasks that wait for or hold connections lost connections for
    good; the pool then timed out for every later request."""
    for _ in range(3):
        # A new pool each round: "growing" must start from empty.
        async with AsyncConnectionPool(
            dsn,
            min_size=0,
            max_size=3,
            timeout=2.0,
            num_workers=1,
            kwargs={"application_name": app_name},
        ) as pool:
            await run_and_cancel(pool, dsn, app_name, when)
            await all_back(pool)
            # max_size concurrent borrowers are served at once.
            async with holding(pool, 3):
                pass
            await assert_whole(pool, 3)


# ---- psycopg_pool issue #1401 -------------------------------------------------


async def test_issue_1401_wait_for_bounds_a_hanging_check(dsn: str) -> None:
    """psycopg/psycopg#1401: cancellation raised inside the `check` callback
    was absorbed by the retry loop, so wait_for() could not bound getconn()."""
    hang = True

    async def check(conn: psycopg.AsyncConnection[Any]) -> None:
        if hang:
            await asyncio.sleep(3600)

    async with AsyncConnectionPool(dsn, min_size=2, check=check, timeout=30) as pool:
        await pool.wait()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.getconn(), 0.3)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(use_block(pool), 0.3)
        # Bounded by wait_for: an absorbed cancellation would leave wait_for
        # waiting for the hung check (and the test to its timeout).
        assert time.monotonic() - t0 >= 0.6
        hang = False
        await assert_whole(pool, 2)


async def test_issue_1401_timeout_bounds_a_failing_check_loop(dsn: str) -> None:
    """A check that keeps failing makes getconn() retry with a backoff: a
    cancellation during the backoff or the check ends the request at once."""

    async def check(conn: psycopg.AsyncConnection[Any]) -> None:
        raise psycopg.OperationalError("the check fails")

    async with AsyncConnectionPool(dsn, min_size=1, check=check, timeout=30) as pool:
        for budget in (0.05, 0.3, 1.5):
            t0 = time.monotonic()
            # Bounded by wait_for, not by the pool: an absorbed cancellation
            # would end in the pool's PoolTimeout after 30 s instead.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.getconn(), budget)
            assert time.monotonic() - t0 >= budget
        assert pool.get_stats()["requests_waiting"] == 0
        await wait_until_async(lambda: pool.get_stats()["pool_available"] == 1, what="refill")


async def test_issue_1401_cancelled_check_on_half_open_connection(dsn: str) -> None:
    """The #1401 follow-up (psycopg#1412): the check hangs on a connection
    whose peer went silent; the caller gives up. psycopg closes the
    connection when cancelled twice, and then resetting autocommit in
    check_connection fails: that error must not replace the CancelledError,
    and the dead connection must be replaced, not lost."""
    async with (
        FreezableProxy(dsn) as proxy,
        AsyncConnectionPool(
            proxy.dsn, min_size=1, check=AsyncConnectionPool.check_connection, timeout=30
        ) as pool,
    ):
        await pool.wait()
        proxy.freeze()
        task = asyncio.create_task(pool.getconn())
        await asyncio.sleep(0.2)
        task.cancel()  # psycopg tries to cancel the query on the server...
        await asyncio.sleep(0.2)
        task.cancel()  # ...and the caller insists: psycopg closes the connection
        assert await outcome(task) == "cancelled"
        proxy.thaw()
        await wait_until_async(lambda: pool.get_stats()["pool_available"] == 1, what="refill")
        async with pool.connection(timeout=DEADLINE) as conn:
            await AsyncConnectionPool.check_connection(conn)
        await assert_whole(pool, 1)


async def test_cancelled_during_check_loses_no_connection(dsn: str) -> None:
    entered = asyncio.Event()

    async def check(conn: psycopg.AsyncConnection[Any]) -> None:
        entered.set()
        await asyncio.sleep(0.05)

    async with AsyncConnectionPool(dsn, min_size=2, check=check) as pool:
        await pool.wait()
        for _ in range(10):
            entered.clear()
            task = asyncio.create_task(pool.getconn())
            await entered.wait()
            task.cancel()
            assert await outcome(task) == "cancelled"
        await assert_whole(pool, 2)


# ---- null pool ------------------------------------------------------------------


async def test_null_pool_cancelled_while_connecting_releases_capacity(dsn: str) -> None:
    """AsyncNullConnectionPool opens the connection on the requesting task:
    cancelled mid-connect, the slot it reserved must come back."""
    async with (
        FreezableProxy(dsn) as proxy,
        AsyncNullConnectionPool(proxy.dsn, max_size=1) as pool,
    ):
        for _ in range(3):
            proxy.freeze()
            task = asyncio.create_task(pool.getconn(timeout=30))
            await asyncio.sleep(0.1)
            task.cancel()
            assert await outcome(task) == "cancelled"
            proxy.thaw()
            assert pool.get_stats()["pool_size"] == 0
            async with pool.connection(timeout=DEADLINE) as conn:
                await conn.execute("select 1")


async def test_null_pool_cancelled_waiter_takes_nothing(dsn: str) -> None:
    async with AsyncNullConnectionPool(dsn, max_size=1) as pool:
        for order in ("return_then_cancel", "cancel_then_return"):
            for _ in range(20):
                held = await pool.getconn()
                waiter = asyncio.create_task(pool.getconn(timeout=DEADLINE))
                await queued(pool, 1)
                if order == "return_then_cancel":
                    await pool.putconn(held)
                    waiter.cancel()
                else:
                    waiter.cancel()
                    await pool.putconn(held)
                assert await outcome(waiter) == "cancelled"
                await wait_until_async(lambda: pool.get_stats()["pool_size"] == 0)
                assert held.closed
        async with pool.connection(timeout=DEADLINE) as conn:
            await conn.execute("select 1")


async def test_null_pool_waiter_cancelled_after_a_grant_passes_the_capacity_on(
    dsn: str,
) -> None:
    """A task cancelled after it was granted capacity never keeps it: the
    next queued request gets it. Async only, like this whole module: the
    grant and the cancellation land in one loop iteration, and a thread
    cannot be cancelled."""
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


# ---- anyio ----------------------------------------------------------------------


def test_anyio_cancel_scopes(dsn: str) -> None:
    """Under anyio's asyncio backend: move_on_after and a cancelled scope
    around pool.connection() behave like asyncio's own cancellation."""

    async def main() -> dict[str, int]:
        async with AsyncConnectionPool(dsn, min_size=2) as pool:
            await pool.wait()
            # A request that times out while waiting.
            async with holding(pool, 2):
                with anyio.move_on_after(0.2) as scope:
                    async with pool.connection():
                        raise AssertionError("no connection was free")
                assert scope.cancelled_caught
            # A block cancelled in the middle of a query.
            with anyio.move_on_after(0.2) as scope:
                async with pool.connection() as conn:
                    await conn.execute("select pg_sleep(60)")
            assert scope.cancelled_caught
            # Tasks in a group, the group cancelled while some wait.
            served = 0

            async def client() -> None:
                nonlocal served
                async with pool.connection() as conn:
                    await conn.execute("select pg_sleep(0.05)")
                    served += 1

            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(client)
                await anyio.sleep(0.07)
                group.cancel_scope.cancel()
            assert 0 < served < 20
            # Results are read while the pool is still open.
            for _ in range(2):
                async with pool.connection() as conn:
                    await conn.execute("select 1")
            await assert_whole(pool, 2)
            return pool.get_stats()

    stats = anyio.run(main, backend="asyncio")
    assert stats["requests_waiting"] == 0


@pytest.fixture
async def anyio_pool(dsn: str) -> AsyncIterator[AnyPool]:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        yield pool


async def test_anyio_fixture_pool(anyio_pool: AnyPool) -> None:
    """A pool opened in an anyio async fixture serves the test's tasks."""
    async with anyio_pool.connection() as conn:
        cur = await conn.execute("select 1")
        assert await cur.fetchone() == (1,)
    with anyio.move_on_after(0.1):
        async with holding(anyio_pool, 1):
            await anyio.sleep(60)
    await assert_whole(anyio_pool, 1)


# ---- under load, on asyncio and uvloop ----------------------------------------

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]

LOOPS: list[Any] = [
    pytest.param(asyncio.run, id="asyncio"),
    pytest.param(uvloop.run, id="uvloop"),
]


async def cancel_under_load(dsn: str) -> dict[str, Any]:
    """Waiters cancelled as connections come back, at random points."""
    size = 4
    async with AsyncConnectionPool(dsn, min_size=size, timeout=60, open=False) as pool:
        await pool.wait(timeout=DEADLINE)
        outcomes: dict[str, int] = {}

        async def client() -> None:
            async with pool.connection() as conn:
                await conn.execute("select 1")

        for round_ in range(20):
            tasks = [asyncio.create_task(client()) for _ in range(40)]
            for _ in range(round_ % 7):
                await asyncio.sleep(0)
            for task in tasks[round_ % 3 :: 3]:
                task.cancel()
            for task in tasks:
                try:
                    await task
                    outcomes["served"] = outcomes.get("served", 0) + 1
                except asyncio.CancelledError:
                    outcomes["cancelled"] = outcomes.get("cancelled", 0) + 1
        # Same-iteration return and cancel, in both orders.
        for order in range(100):
            held = [await pool.getconn() for _ in range(size)]
            waiter = asyncio.create_task(pool.getconn())
            while pool.get_stats()["requests_waiting"] == 0:
                await asyncio.sleep(0)
            if order % 2:
                waiter.cancel()
                await pool.putconn(held[0])
            else:
                await pool.putconn(held[0])
                waiter.cancel()
            try:
                await waiter
                outcomes["not cancelled"] = outcomes.get("not cancelled", 0) + 1
            except asyncio.CancelledError:
                pass
            for conn in held[1:]:
                await pool.putconn(conn)
        # All of them, at once.
        conns = [await pool.getconn(timeout=DEADLINE) for _ in range(size)]
        for conn in conns:
            await pool.putconn(conn)
        return {"outcomes": outcomes, "stats": pool.get_stats()}


@pytest.mark.parametrize("run", LOOPS)
def test_cancellation_under_load(dsn: str, run: Runner[dict[str, Any]]) -> None:
    """On asyncio's loop and on uvloop, whose thread-safe wake-up (how the
    core wakes a waiter) is implemented apart."""
    outcome = run(cancel_under_load(dsn))
    outcomes = outcome["outcomes"]
    assert outcomes.get("not cancelled", 0) == 0, "a cancelled waiter ended cancelled"
    assert outcomes["served"] + outcomes["cancelled"] == 20 * 40
    assert outcomes["cancelled"] > 0
    stats = outcome["stats"]
    assert stats["pool_size"] == stats["pool_available"] == 4
    assert stats["requests_waiting"] == 0
    assert stats["connections_num"] == 4, "no connection lost or replaced"
