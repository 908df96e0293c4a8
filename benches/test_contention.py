"""Threads sharing 16 connections, with empty blocks: 1, 4, 16, 32 and 64 threads.

A benchmarked call is one batch of CONTENTION_BLOCKS empty
``with pool.connection():`` blocks shared out between the threads; the
call ends when the last thread is done. Every thread count does the same
total, so ferropool's 32-thread time against its 1-thread time is the
throughput lost to contention.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench_config import CONTENTION_BLOCKS, CONTENTION_THREADS, contention_group
from ferropool.cli.contenders import PoolKind
from ferropool.cli.workloads import Pool, ThreadGang, connection_block

ROUNDS = 5


@pytest.mark.parametrize("threads", CONTENTION_THREADS)
def test_contention(
    benchmark: Any, contention_pool: Pool, pool_kind: PoolKind, threads: int
) -> None:
    benchmark.group = contention_group(threads)
    benchmark.extra_info.update(pool=pool_kind, threads=threads, blocks=CONTENTION_BLOCKS)

    def blocks(count: int) -> None:
        connection_block(contention_pool, count)

    with ThreadGang(threads, blocks) as gang:
        benchmark.pedantic(gang.run, args=(CONTENTION_BLOCKS // threads,), rounds=ROUNDS,
                           warmup_rounds=1)  # fmt: skip
