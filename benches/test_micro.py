"""The cost of the pool itself: one thread (or task) borrowing from an idle pool.

Each benchmarked call does OPS_PER_CALL borrows (ASYNC_OPS_PER_CALL empty
``async with`` blocks for the async pools, whose calls also drive the event
loop), so the figures are per call; the ratio between the pools is what
counts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench_config import (
    ASYNC_OPS_PER_CALL,
    GROUP_ASYNC_BLOCK,
    GROUP_BLOCK,
    GROUP_GETCONN,
    MICRO_POOL_SIZE,
    OPS_PER_CALL,
)
from ferropool.cli.contenders import PoolKind
from ferropool.cli.workloads import Pool, connection_block, getconn_putconn
from test_async import KINDS, pool_on


@pytest.mark.benchmark(group=GROUP_GETCONN, warmup=True)
def test_getconn_putconn(benchmark: Any, micro_pool: Pool, pool_kind: PoolKind) -> None:
    benchmark.extra_info.update(pool=pool_kind, threads=1, ops_per_call=OPS_PER_CALL)
    benchmark(getconn_putconn, micro_pool, OPS_PER_CALL)


@pytest.mark.benchmark(group=GROUP_BLOCK, warmup=True)
def test_connection_block(benchmark: Any, micro_pool: Pool, pool_kind: PoolKind) -> None:
    benchmark.extra_info.update(pool=pool_kind, threads=1, ops_per_call=OPS_PER_CALL)
    benchmark(connection_block, micro_pool, OPS_PER_CALL)


async def async_connection_blocks(pool: Any, n: int) -> None:
    """Enter and leave an empty ``async with pool.connection():`` block, *n* times."""
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
    with pool_on(loop, kind, bench_dsn, MICRO_POOL_SIZE) as pool:

        def call() -> None:
            loop.run_until_complete(async_connection_blocks(pool, ASYNC_OPS_PER_CALL))

        benchmark(call)
