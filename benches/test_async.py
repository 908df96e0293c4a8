"""The async pools against psycopg_pool's, in the same run, on one event loop.

Two groups, each with ferropool.AsyncConnectionPool and
psycopg_pool.AsyncConnectionPool doing the same thing on the same server:

- ``async connection() block``: one task, an idle pool of 4, empty
  ``async with pool.connection():`` blocks; a benchmarked call runs
  ASYNC_OPS_PER_CALL of them, so the cost of driving the loop for a call is
  spread thin. The cost of the pool itself.
- ``async: 1000 tasks, 16 connections``: a benchmarked call is one batch in
  which TASKS tasks each run SELECTS_PER_TASK ``select 1`` blocks on a pool
  of 16; it ends when the last task is done. Each block's wait, from asking
  for the connection to holding it, is recorded as well: conftest.py prints
  each pool's 99th percentile (the median of the rounds' p99, so that one
  round slowed by a noisy machine doesn't decide it) next to the ratios.

What counts is the ratios printed at the end, never the absolute times.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from time import perf_counter
from typing import Any

import psycopg_pool
import pytest

import ferropool
from ferropool.cli.contenders import FERROPOOL, PSYCOPG_POOL

ASYNC_OPS_PER_CALL = 1_000
ASYNC_MICRO_POOL_SIZE = 4
TASKS = 1_000
CONNECTIONS = 16
SELECTS_PER_TASK = 5
ROUNDS = 7

GROUP_ASYNC_BLOCK = "async connection() block"
GROUP_ASYNC_TASKS = f"async: {TASKS} tasks, {CONNECTIONS} connections"
KINDS = [FERROPOOL, PSYCOPG_POOL]

_POOL_CLASSES: dict[str, Any] = {
    FERROPOOL: ferropool.AsyncConnectionPool,
    PSYCOPG_POOL: psycopg_pool.AsyncConnectionPool,
}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop of the benchmark's own: the pool opens on it, every call runs on it."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@asynccontextmanager
async def open_async_pool(kind: str, conninfo: str, size: int) -> AsyncIterator[Any]:
    """An open pool of *size* ready connections, of either kind, built alike."""
    pool = _POOL_CLASSES[kind](
        conninfo, min_size=size, max_size=size, open=False, name=f"bench-async-{kind}"
    )
    await pool.open(wait=True, timeout=60)
    try:
        yield pool
    finally:
        await pool.close()


@contextmanager
def pool_on(loop: asyncio.AbstractEventLoop, kind: str, conninfo: str, size: int) -> Iterator[Any]:
    """An async pool open on *loop* while the benchmark drives the loop call by call."""
    manager = open_async_pool(kind, conninfo, size)
    pool = loop.run_until_complete(manager.__aenter__())
    try:
        yield pool
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))


async def connection_blocks(pool: Any, n: int) -> None:
    connection = pool.connection
    for _ in range(n):
        async with connection():
            pass


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.benchmark(group=GROUP_ASYNC_BLOCK, warmup=True)
def test_async_connection_block(
    benchmark: Any, bench_dsn: str, loop: asyncio.AbstractEventLoop, kind: str
) -> None:
    benchmark.extra_info.update(pool=kind, threads=1, ops_per_call=ASYNC_OPS_PER_CALL)
    with pool_on(loop, kind, bench_dsn, ASYNC_MICRO_POOL_SIZE) as pool:

        def call() -> None:
            loop.run_until_complete(connection_blocks(pool, ASYNC_OPS_PER_CALL))

        benchmark(call)


async def select_one_batch(pool: Any, waits: list[float]) -> int:
    """TASKS tasks, SELECTS_PER_TASK `select 1` blocks each; appends every
    block's wait for its connection to *waits*. Returns the blocks done."""

    async def client() -> int:
        done = 0
        for _ in range(SELECTS_PER_TASK):
            asked = perf_counter()
            async with pool.connection() as conn:
                waits.append(perf_counter() - asked)
                cur = await conn.execute("select 1")
                if await cur.fetchone() != (1,):
                    raise AssertionError("select 1 did not return 1")
                done += 1
        return done

    return sum(await asyncio.gather(*(client() for _ in range(TASKS))))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.benchmark(group=GROUP_ASYNC_TASKS)
def test_async_tasks_share_connections(
    benchmark: Any,
    bench_dsn: str,
    loop: asyncio.AbstractEventLoop,
    kind: str,
    record_async_waits: Any,
) -> None:
    blocks = TASKS * SELECTS_PER_TASK
    benchmark.extra_info.update(pool=kind, threads=TASKS, blocks=blocks)
    rounds: list[list[float]] = []  # each round's waits
    with pool_on(loop, kind, bench_dsn, CONNECTIONS) as pool:

        def batch() -> None:
            rounds.append([])
            done = loop.run_until_complete(select_one_batch(pool, rounds[-1]))
            assert done == blocks

        batch()  # warm-up, not timed and not counted
        rounds.clear()
        benchmark.pedantic(batch, rounds=ROUNDS)
    assert rounds and all(len(waits) == blocks for waits in rounds)
    record_async_waits(GROUP_ASYNC_TASKS, kind, rounds)
