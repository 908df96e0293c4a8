"""Many tasks, few connections: the async pool under load, on asyncio and uvloop.

1,000 tasks share 16 connections: every result must be the task's own, no
connection may be held by two tasks at once, and afterwards every
connection is back and every checkout was counted. The same workload, and
a cancellation workload, run on asyncio's loop and on uvloop, whose
thread-safe wake-up (how the core wakes a waiter) is implemented apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from ferropool import AsyncConnectionPool
from tests.fixtures.helpers import DEADLINE

TASKS = 1_000
CONNECTIONS = 16
BLOCKS_PER_TASK = 3

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]

LOOPS: list[Any] = [
    pytest.param(asyncio.run, id="asyncio"),
    pytest.param(uvloop.run, id="uvloop"),
]


async def share_connections(dsn: str) -> dict[str, Any]:
    """TASKS tasks doing BLOCKS_PER_TASK `select` blocks each on CONNECTIONS."""
    async with AsyncConnectionPool(dsn, min_size=CONNECTIONS, timeout=60, open=False) as pool:
        await pool.wait(timeout=DEADLINE)
        # Which task holds each connection right now.
        holder: dict[int, int] = {}
        overlaps: list[tuple[int, int, int]] = []
        wrong: list[tuple[int, Any]] = []
        peak = 0

        async def client(task_id: int) -> int:
            nonlocal peak
            done = 0
            for block in range(BLOCKS_PER_TASK):
                async with pool.connection() as conn:
                    key = id(conn)
                    if key in holder:
                        overlaps.append((key, holder[key], task_id))
                    holder[key] = task_id
                    peak = max(peak, len(holder))
                    token = task_id * BLOCKS_PER_TASK + block
                    cur = await conn.execute("select 1, %s::int", (token,))
                    row = await cur.fetchone()
                    if row != (1, token):
                        wrong.append((token, row))
                    if holder.get(key) == task_id:
                        del holder[key]
                    done += 1
            return done

        results = await asyncio.gather(*(client(i) for i in range(TASKS)))
        return {
            "results": results,
            "overlaps": overlaps,
            "wrong": wrong,
            "peak": peak,
            "stats": pool.get_stats(),
        }


@pytest.mark.parametrize("run", LOOPS)
def test_1000_tasks_share_16_connections(dsn: str, run: Runner[dict[str, Any]]) -> None:
    outcome = run(share_connections(dsn))
    assert outcome["results"] == [BLOCKS_PER_TASK] * TASKS
    assert outcome["wrong"] == [], "every result is the task's own"
    assert outcome["overlaps"] == [], "no connection held by two tasks at once"
    assert outcome["peak"] == CONNECTIONS, "all connections were used"
    stats = outcome["stats"]
    assert stats["pool_size"] == stats["pool_available"] == CONNECTIONS
    assert stats["requests_num"] == TASKS * BLOCKS_PER_TASK
    assert stats["requests_waiting"] == 0
    assert stats["requests_errors"] == 0
    assert stats["connections_num"] == CONNECTIONS, "no connection lost or replaced"


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
    outcome = run(cancel_under_load(dsn))
    outcomes = outcome["outcomes"]
    assert outcomes.get("not cancelled", 0) == 0, "a cancelled waiter ended cancelled"
    assert outcomes["served"] + outcomes["cancelled"] == 20 * 40
    assert outcomes["cancelled"] > 0
    stats = outcome["stats"]
    assert stats["pool_size"] == stats["pool_available"] == 4
    assert stats["requests_waiting"] == 0
    assert stats["connections_num"] == 4, "no connection lost or replaced"
