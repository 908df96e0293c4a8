"""A closed or never-opened pool holds no OS thread and no descriptor.

Sync and async pools in one scenario (plain functions: the async pools
open and close under asyncio.run()), counted from /proc as a person would.
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

import pytest

from ferropool import AsyncConnectionPool, ConnectionPool


def _threads_and_descriptors() -> tuple[int, int]:
    """OS threads (Rust's included, which threading does not see) and open
    file descriptors of this process."""
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_closed_and_never_opened_pools_hold_no_thread_or_descriptor(dsn: str) -> None:
    """psycopg_pool keeps nothing for a pool that is closed or was never
    opened; neither does ferropool: the hang-up watch's thread and its two
    descriptors exist only while the pool is open. 200 pools of each kind,
    kept referenced (so that garbage collection frees nothing): the process
    holds as many threads and descriptors as before (it held 200 threads
    and 400 descriptors more)."""
    gc.collect()
    before = _threads_and_descriptors()
    never_opened = [ConnectionPool(dsn, open=False) for _ in range(200)]
    assert _threads_and_descriptors() == before

    closed = []
    for _ in range(200):
        pool = ConnectionPool(dsn, min_size=0, max_size=1, open=True)
        pool.close()
        closed.append(pool)

    async def open_and_close() -> list[AsyncConnectionPool[Any]]:
        pools = []
        for _ in range(20):
            apool = AsyncConnectionPool(dsn, min_size=0, max_size=1, open=False)
            await apool.open()
            await apool.close()
            pools.append(apool)
        return pools

    closed_async = asyncio.run(open_and_close())
    threads, fds = _threads_and_descriptors()
    # A little slack for threads of the process that come and go by
    # themselves; a leak is one thread and two descriptors per pool.
    assert threads - before[0] < 5 and fds - before[1] < 5, (before, (threads, fds))
    assert len(never_opened) == len(closed) == 200 and len(closed_async) == 20
