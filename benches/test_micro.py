"""The cost of the pool itself: one thread (or task) borrowing from an idle pool.

Each benchmarked call does OPS_PER_CALL borrows (ASYNC_OPS_PER_CALL empty
``async with`` blocks for the async pools, whose calls also drive the event
loop), so the figures are per call; the ratio between the pools is what
counts.

Two ways to get that ratio. The per-pool tests are pytest-benchmark's usual
kind: each pool's test runs to its end before the other's starts, so a
shared machine whose speed drifts over seconds tilts the ratio (the same
build read 13x and 25x in two runs an hour apart). ``test_alternating_rounds``
runs the two pools' calls back to back, in alternating order, round after
round, and takes the median of the rounds' ratios, as the bench CLI
alternates its rounds: drift hits both sides of each round alike. The
summary prints both; the targets are judged on the alternating ratio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from statistics import median
from time import perf_counter
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
from ferropool.cli.contenders import FERROPOOL, PSYCOPG_POOL, PoolKind, open_pool
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


# Rounds of the alternating benchmark, and how many more operations
# ferropool's call does than psycopg_pool's: the two calls of a round then
# last about as long (0.3-10 ms each), so drift within a round hits both
# alike and neither starts its call with the other's code in the caches for
# more than a sliver of it. Times are compared per operation.
ALTERNATING_ROUNDS = {GROUP_GETCONN: 300, GROUP_BLOCK: 300, GROUP_ASYNC_BLOCK: 60}
FERROPOOL_OPS_FACTOR = 10


def _async_call(loop: asyncio.AbstractEventLoop, pool: Any, blocks: int) -> None:
    loop.run_until_complete(async_connection_blocks(pool, blocks))


@contextmanager
def _calls(
    group: str, bench_dsn: str, loop: asyncio.AbstractEventLoop
) -> Iterator[dict[str, tuple[Callable[[], None], int]]]:
    """One call of *group*'s workload per pool, and its operations; both
    pools open."""
    with ExitStack() as stack:
        calls: dict[str, tuple[Callable[[], None], int]] = {}
        for kind in (PSYCOPG_POOL, FERROPOOL):
            factor = FERROPOOL_OPS_FACTOR if kind == FERROPOOL else 1
            if group == GROUP_ASYNC_BLOCK:
                apool = stack.enter_context(pool_on(loop, kind, bench_dsn, MICRO_POOL_SIZE))
                ops = ASYNC_OPS_PER_CALL * factor
                calls[kind] = (partial(_async_call, loop, apool, ops), ops)
            else:
                work = getconn_putconn if group == GROUP_GETCONN else connection_block
                pool = stack.enter_context(open_pool(kind, bench_dsn, MICRO_POOL_SIZE))
                ops = OPS_PER_CALL * factor
                calls[kind] = (partial(work, pool, ops), ops)
        yield calls


@pytest.mark.parametrize("group", list(ALTERNATING_ROUNDS))
def test_alternating_rounds(
    benchmark: Any,
    bench_dsn: str,
    loop: asyncio.AbstractEventLoop,
    group: str,
    record_alternating: Callable[[str, float, int], None],
) -> None:
    """Each benchmarked round: a call of each pool, timed apart, in
    alternating order. Recorded: the median over the rounds of
    psycopg_pool's time per operation over ferropool's."""
    benchmark.group = f"{group}: alternating rounds"
    per_op: dict[str, list[float]] = {PSYCOPG_POOL: [], FERROPOOL: []}
    with _calls(group, bench_dsn, loop) as calls:
        order = [PSYCOPG_POOL, FERROPOOL]

        def one_round() -> None:
            order.reverse()
            for kind in order:
                call, ops = calls[kind]
                started = perf_counter()
                call()
                per_op[kind].append((perf_counter() - started) / ops)

        benchmark.extra_info.update(pool="both", threads=1, alternating=True)
        benchmark.pedantic(one_round, rounds=ALTERNATING_ROUNDS[group], warmup_rounds=3)
    if benchmark.disabled:  # a smoke run: one round, nothing to report
        assert len(per_op[FERROPOOL]) == len(per_op[PSYCOPG_POOL]) == 1
        return
    rounds = ALTERNATING_ROUNDS[group]
    # The warm-up rounds are timed too: only the measured ones count.
    theirs, ours = per_op[PSYCOPG_POOL][-rounds:], per_op[FERROPOOL][-rounds:]
    ratios = [t / o for t, o in zip(theirs, ours, strict=True)]
    assert len(ratios) == rounds and all(r > 0 for r in ratios)
    record_alternating(group, median(ratios), rounds)
