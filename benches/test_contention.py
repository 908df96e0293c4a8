"""More threads than connections: 32 threads share 16, with empty blocks.

A benchmarked call is one batch: every thread does ITERATIONS empty
``with pool.connection():`` blocks, and the call ends when the last thread
is done. The 1-thread run does the same total number of blocks, so its
time against the 32-thread one is the throughput lost to contention.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from bench_config import CONTENTION_CONNECTIONS, CONTENTION_THREADS, GROUP_CONTENTION
from ferropool.cli.contenders import FERROPOOL, PoolKind, open_pool
from ferropool.cli.workloads import Pool, ThreadGang, connection_block

ITERATIONS = 2_000
ROUNDS = 10


@pytest.mark.benchmark(group=GROUP_CONTENTION)
def test_contention(benchmark: Any, contention_pool: Pool, pool_kind: PoolKind) -> None:
    benchmark.extra_info.update(
        pool=pool_kind, threads=CONTENTION_THREADS, blocks=CONTENTION_THREADS * ITERATIONS
    )
    work = partial(connection_block, contention_pool, ITERATIONS)
    with ThreadGang(CONTENTION_THREADS, work) as gang:
        benchmark.pedantic(gang.run, rounds=ROUNDS, warmup_rounds=1)


@pytest.mark.benchmark(group=GROUP_CONTENTION)
def test_one_thread(benchmark: Any, bench_dsn: str) -> None:
    blocks = CONTENTION_THREADS * ITERATIONS
    benchmark.extra_info.update(pool=FERROPOOL, threads=1, blocks=blocks)
    with (
        open_pool(FERROPOOL, bench_dsn, CONTENTION_CONNECTIONS) as pool,
        ThreadGang(1, partial(connection_block, pool, blocks)) as gang,
    ):
        benchmark.pedantic(gang.run, rounds=ROUNDS, warmup_rounds=1)
