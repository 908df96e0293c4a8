"""The async pools against psycopg_pool's, in the same run, on one event loop.

ferropool.AsyncConnectionPool and psycopg_pool.AsyncConnectionPool doing the
same thing on the same server (the cost of the pool itself, an empty
``async with pool.connection():`` block, is a micro benchmark: see
test_micro.py, which uses this module's helpers):

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

TASKS = 1_000
CONNECTIONS = 16
SELECTS_PER_TASK = 5
ROUNDS = 7

GROUP_ASYNC_TASKS = f"async: {TASKS} tasks, {CONNECTIONS} connections"
KINDS = [FERROPOOL, PSYCOPG_POOL]

_POOL_CLASSES: dict[str, Any] = {
    FERROPOOL: ferropool.AsyncConnectionPool,
    PSYCOPG_POOL: psycopg_pool.AsyncConnectionPool,
}


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
