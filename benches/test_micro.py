"""The cost of the pool itself: one thread borrowing from an idle pool.

Each benchmarked call does OPS_PER_CALL borrows, so the figures are per
100 operations; the ratio between the pools is what counts.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench_config import GROUP_BLOCK, GROUP_GETCONN, OPS_PER_CALL
from ferropool.cli.contenders import PoolKind
from ferropool.cli.workloads import Pool, connection_block, getconn_putconn


@pytest.mark.benchmark(group=GROUP_GETCONN, warmup=True)
def test_getconn_putconn(benchmark: Any, micro_pool: Pool, pool_kind: PoolKind) -> None:
    benchmark.extra_info.update(pool=pool_kind, threads=1, ops_per_call=OPS_PER_CALL)
    benchmark(getconn_putconn, micro_pool, OPS_PER_CALL)


@pytest.mark.benchmark(group=GROUP_BLOCK, warmup=True)
def test_connection_block(benchmark: Any, micro_pool: Pool, pool_kind: PoolKind) -> None:
    benchmark.extra_info.update(pool=pool_kind, threads=1, ops_per_call=OPS_PER_CALL)
    benchmark(connection_block, micro_pool, OPS_PER_CALL)
