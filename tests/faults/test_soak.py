"""Soak: memory and file descriptors stay flat while connections churn.

A pool whose connections live 20 ms (max_lifetime), drained every quarter
of a second, serves four threads of requests until it has opened
``REPLACEMENTS`` connections (2,000; 30,000 with FERROPOOL_LONG=1, several
minutes). Resident memory (/proc/self/statm) and open file descriptors
(/proc/self/fd) are measured after a warm-up and at the end, each time with
the churn paused and the pool settled, so that only what leaks remains:

* file descriptors: the same count, less the pool's own sockets;
* resident memory: growth below a small bound;
* no request failed, no connection was lost or returned broken.
"""

from __future__ import annotations

import gc
import os
import time
from functools import partial
from typing import Any

from ferropool import ConnectionPool
from tests.fixtures.helpers import DEADLINE, count_backends, wait_until
from tests.fixtures.load import Load, select_one
from tests.fixtures.reliability import by_mode, report, time_limit

REPLACEMENTS = by_mode(2_000, 30_000)
WARM_UP = REPLACEMENTS // 5
TIME_CAP = by_mode(90.0, 800.0)
LIFETIME = 0.02
DRAIN_EVERY = 0.25
MIN_SIZE, MAX_SIZE = 2, 4
# Resident memory may grow this much after the warm-up (allocator slack);
# a leaked connection (libpq buffers, a PGconn) costs tens of kilobytes, so
# a leak per replacement shows as megabytes.
RSS_BOUND = 2 * 1024 * 1024

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def opened(pool: ConnectionPool[Any]) -> int:
    stats = pool.get_stats()
    return stats["connections_num"] - stats["connections_errors"]


def settle(pool: ConnectionPool[Any]) -> tuple[int, int]:
    """Pause the churn and measure: (resident bytes, fds less the pool's sockets)."""
    pool.max_lifetime = 3600.0
    pool.drain()  # replacements get the long lifetime

    def settled() -> bool:
        s = pool.get_stats()
        return s["pool_size"] == s["pool_available"] >= MIN_SIZE

    wait_until(settled, what="the pool settled")
    before = opened(pool)
    time.sleep(0.2)
    wait_until(settled, what="the pool settled")
    assert opened(pool) == before, "connections still being opened"
    gc.collect()
    size = pool.get_stats()["pool_size"]
    measured = resident(), open_fds() - size
    pool.max_lifetime = LIFETIME
    return measured


def requests_load(pool: ConnectionPool[Any]) -> Load:
    """Four threads of requests that keep only their failures."""
    return Load(pool, 4, partial(select_one, timeout=DEADLINE), think=0.002, keep_all=False)


def churn_until(pool: ConnectionPool[Any], target: int, deadline: float) -> None:
    next_drain = time.monotonic()
    while opened(pool) < target:
        assert time.monotonic() < deadline, f"only {opened(pool)} of {target} connections opened"
        if time.monotonic() >= next_drain:
            pool.drain()
            next_drain += DRAIN_EVERY
        time.sleep(0.01)


@time_limit(120, 900)
def test_memory_and_fds_stay_flat_under_churn(dsn: str, app_name: str) -> None:
    started = time.monotonic()
    deadline = started + TIME_CAP
    with ConnectionPool(
        dsn,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
        max_lifetime=LIFETIME,
        timeout=DEADLINE,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        loads = [requests_load(pool)]
        try:
            loads[-1].start()
            churn_until(pool, WARM_UP, deadline)
        finally:
            loads[-1].stop(bound=DEADLINE + 5)
        rss0, fds0 = settle(pool)
        base = opened(pool)
        samples = [(0, rss0)]
        step = max((REPLACEMENTS - base) // 10, 1)
        loads.append(requests_load(pool))
        try:
            loads[-1].start()
            while opened(pool) < REPLACEMENTS:
                churn_until(pool, min(opened(pool) + step, REPLACEMENTS), deadline)
                samples.append((opened(pool) - base, resident()))
        finally:
            loads[-1].stop(bound=DEADLINE + 5)
        rss1, fds1 = settle(pool)
        stats = pool.get_stats()
        replaced = opened(pool)
        backends = count_backends(dsn, app_name)

    failed = [r.describe() for load in loads for r in load.snapshot()]
    report(
        "soak",
        "ferropool",
        connections_opened=replaced,
        measured_over=replaced - base,
        requests=sum(load.count for load in loads),
        failed=len(failed),
        rss_baseline_mb=rss0 / 2**20,
        rss_end_mb=rss1 / 2**20,
        rss_growth_kb=(rss1 - rss0) / 1024,
        rss_peak_growth_kb=(max(r for _, r in samples) - rss0) / 1024,
        fds_baseline=fds0,
        fds_end=fds1,
        connections_lost=stats["connections_lost"],
        returns_bad=stats["returns_bad"],
        connections_retired=stats["connections_retired"],
        run_s=time.monotonic() - started,
    )
    assert failed == [], failed[:3]
    assert replaced >= REPLACEMENTS
    assert stats["connections_retired"] >= REPLACEMENTS - MAX_SIZE - WARM_UP
    assert stats["connections_lost"] == 0
    assert stats["returns_bad"] == 0
    assert backends == stats["pool_size"], "the server holds exactly the pool's connections"
    assert fds1 == fds0, f"open file descriptors went from {fds0} to {fds1}"
    assert rss1 - rss0 < RSS_BOUND, f"resident memory grew {(rss1 - rss0) / 2**20:.1f} MB"
