"""Storm: 1,000 threads on 8 connections.

Every thread runs short `select 1` requests in a loop, with a timeout, for
``DURATION`` (2.5 s; 10 s with FERROPOOL_LONG=1), all released at once. A
monitor thread samples the stats meanwhile. Afterwards:

* no deadlock: every thread ends within a bound, and requests completed in
  every second of the run;
* waiters served in order: with a FIFO queue every request waits about
  (threads / connections) x (time a connection is held), so the longest
  wait stays within a small multiple of the mean and every thread is
  served; an unfair queue starves some threads (waits near the timeout);
* sizes within limits: pool_size <= max_size and pool_available <=
  pool_size in every sample;
* every connection returned at the end (pool_available == pool_size);
* stats consistent with what the threads did: requests_num == attempts,
  requests_errors == timeouts seen.

The same storm runs against psycopg_pool 3.3, whose figures are reported,
not asserted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg_pool
import pytest

import ferropool
from tests.fixtures.helpers import DEADLINE, count_backends, wait_until
from tests.fixtures.load import Monitor
from tests.fixtures.reliability import by_mode, report, time_limit

THREADS = 1000
CONNECTIONS = 8
DURATION = by_mode(2.5, 10.0)
REQUEST_TIMEOUT = 30.0
STACK_SIZE = 256 * 1024

POOLS: dict[str, Any] = {
    "ferropool": ferropool.ConnectionPool,
    "psycopg_pool": psycopg_pool.ConnectionPool,
}
TIMEOUTS = (ferropool.PoolTimeout, psycopg_pool.PoolTimeout)


class Tally:
    """What each thread did, one slot per thread (no lock: each writes its own)."""

    def __init__(self, n: int) -> None:
        self.attempts = [0] * n
        self.served = [0] * n
        self.timeouts = [0] * n
        self.errors: list[str] = []
        self.max_wait = [0.0] * n
        self.sum_wait = [0.0] * n


@pytest.mark.parametrize("contender", list(POOLS))
@time_limit(120, 300)
def test_a_thousand_threads_on_eight_connections(contender: str, dsn: str, app_name: str) -> None:
    tally = Tally(THREADS)
    go = threading.Event()
    stop = threading.Event()

    def client(i: int, pool: Any) -> None:
        go.wait()
        while not stop.is_set():
            tally.attempts[i] += 1
            t0 = time.monotonic()
            try:
                with pool.connection(timeout=REQUEST_TIMEOUT) as conn:
                    waited = time.monotonic() - t0
                    conn.execute("select 1").fetchone()
            except TIMEOUTS:
                tally.timeouts[i] += 1
                continue
            except Exception as ex:
                tally.errors.append(f"{type(ex).__name__}: {ex}")
                continue
            tally.served[i] += 1
            tally.sum_wait[i] += waited
            tally.max_wait[i] = max(tally.max_wait[i], waited)

    with POOLS[contender](
        dsn,
        min_size=CONNECTIONS,
        max_size=CONNECTIONS,
        timeout=REQUEST_TIMEOUT,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        old_stack = threading.stack_size(STACK_SIZE)
        try:
            threads = [
                threading.Thread(target=client, args=(i, pool), daemon=True) for i in range(THREADS)
            ]
            for t in threads:
                t.start()
        finally:
            threading.stack_size(old_stack)
        with Monitor(pool, interval=0.005) as monitor:
            began = time.monotonic()
            go.set()
            time.sleep(DURATION)
            stop.set()
            stopping = time.monotonic()
            join_deadline = stopping + REQUEST_TIMEOUT + DEADLINE
            for t in threads:
                t.join(max(join_deadline - time.monotonic(), 0))
            joined = time.monotonic() - stopping
            hung = sum(t.is_alive() for t in threads)
        assert hung == 0, f"{hung} threads still running {joined:.1f} s after stop: deadlock?"
        wait_until(
            lambda: pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"],
            what="every connection returned",
        )
        stats = pool.get_stats()
        backends = count_backends(dsn, app_name)

    attempts = sum(tally.attempts)
    served = sum(tally.served)
    timeouts = sum(tally.timeouts)
    mean_wait = sum(tally.sum_wait) / max(served, 1)
    max_wait = max(tally.max_wait)
    samples = monitor.samples
    oversize = [s for _, s in samples if s["pool_size"] > CONNECTIONS]
    overcount = [s for _, s in samples if s["pool_available"] > s["pool_size"]]
    # Requests completed in every second of the run: no deadlock, no stall.
    per_second = []
    for k in range(int(DURATION)):
        window = [s.get("requests_num", 0) for t, s in samples if began + k <= t < began + k + 1]
        per_second.append(window[-1] - window[0] if len(window) > 1 else 0)
    report(
        "storm",
        contender,
        threads=THREADS,
        connections=CONNECTIONS,
        duration_s=DURATION,
        attempts=attempts,
        served=served,
        timeouts=timeouts,
        errors=len(tally.errors),
        requests_per_s=served / (stopping - began),
        mean_wait_s=mean_wait,
        max_wait_s=max_wait,
        expected_fifo_wait_s=THREADS / max(served / (stopping - began), 1),
        least_served_thread=min(tally.served),
        max_pool_size_seen=monitor.max("pool_size"),
        max_waiting_seen=monitor.max("requests_waiting"),
        stats_samples=len(samples),
        threads_joined_in_s=joined,
    )
    if contender != "ferropool":
        return
    assert tally.errors == [], tally.errors[:3]
    assert oversize == [], f"pool_size above max_size: {oversize[:1]}"
    assert overcount == [], f"more available than pooled: {overcount[:1]}"
    assert all(n > 0 for n in per_second), f"a second without progress: {per_second}"
    # Every connection back, the server agrees, nothing waits.
    assert stats["pool_size"] == stats["pool_available"] == CONNECTIONS
    assert stats["requests_waiting"] == 0
    assert backends == CONNECTIONS
    # The counters are what the threads did.
    assert stats["requests_num"] == attempts
    assert stats["requests_errors"] == timeouts
    assert stats["requests_queued"] <= attempts
    # In order: nobody starves, nobody waits much longer than the average.
    assert timeouts == 0, f"{timeouts} requests timed out after {REQUEST_TIMEOUT} s"
    assert min(tally.served) >= 1, "a thread was never served"
    assert max_wait <= 4 * mean_wait + 0.5, f"max wait {max_wait:.2f} s, mean {mean_wait:.2f} s"
