"""Lifetime controls: max_uses, per-connection max_idle, bounded parallel
growth (max_connecting), and pause()/resume().
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from ferropool import ConnectionPool, NullConnectionPool, PoolTimeout
from tests.fixtures.helpers import DEADLINE, Threads, backend_pid, count_backends, wait_until

# ---- max_uses ---------------------------------------------------------------------


def checkout_pids(pool: ConnectionPool[Any], count: int) -> list[int]:
    pids = []
    for _ in range(count):
        with pool.connection(timeout=DEADLINE) as conn:
            pids.append(backend_pid(conn))
    return pids


def test_max_uses_replaces_a_connection_after_that_many_checkouts(dsn: str, app_name: str) -> None:
    with ConnectionPool(
        dsn, min_size=1, open=True, max_uses=3, kwargs={"application_name": app_name}
    ) as pool:
        assert pool.max_uses == 3
        first, second, third, fourth, *_ = checkout_pids(pool, 7)
        assert first == second == third
        assert fourth != first
        assert pool.get_stats()["connections_retired"] == 2
        wait_until(lambda: count_backends(dsn, app_name) == 1, what="the used-up one closed")

        pool.max_uses = 0  # off: no more retirements
        pids = checkout_pids(pool, 5)
        assert len(set(pids)) == 1


@pytest.mark.parametrize("own_use", ["check", "keepalive"])
def test_the_pools_own_pings_do_not_count_as_uses(dsn: str, own_use: str) -> None:
    """max_uses counts borrowers' checkouts, as node-postgres's maxUses."""
    with ConnectionPool(
        dsn,
        min_size=1,
        open=True,
        max_uses=2,
        keepalive_interval=0.2 if own_use == "keepalive" else None,
    ) as pool:
        [first] = checkout_pids(pool, 1)
        if own_use == "check":
            pool.check()
        else:
            wait_until(lambda: pool.get_stats()["keepalive_pings"] >= 1, what="a keepalive ping")
            wait_until(lambda: pool.get_stats()["pool_available"] == 1, what="ping done")
        second, third = checkout_pids(pool, 2)
        assert second == first, "one checkout so far: not used up"
        assert third != first


# ---- max_idle, per connection ------------------------------------------------------


def test_idle_surplus_is_closed_at_once_not_one_per_interval(dsn: str, app_name: str) -> None:
    max_idle = 0.5
    with ConnectionPool(
        dsn,
        min_size=1,
        max_size=4,
        max_idle=max_idle,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        # A burst: four requests at once grow the pool to max_size.
        conns = [pool.getconn(timeout=DEADLINE) for _ in range(4)]
        for conn in conns:
            pool.putconn(conn)
        returned = time.monotonic()
        assert pool.get_stats()["pool_size"] == 4

        samples: list[tuple[float, int]] = []
        deadline = returned + DEADLINE
        while time.monotonic() < deadline:
            size = pool.get_stats()["pool_size"]
            samples.append((time.monotonic(), size))
            if size == 1:
                break
            time.sleep(0.005)

        first_drop = next(t for t, size in samples if size < 4)
        at_min = next((t for t, size in samples if size == 1), None)
        assert at_min is not None, f"still {samples[-1][1]} connections after {DEADLINE} s"
        # psycopg_pool closes one connection per max_idle: 3 surplus would
        # take 3 intervals. Per connection, they all go in one sweep.
        assert at_min - first_drop < max_idle
        assert at_min - returned < 4 * max_idle
        wait_until(lambda: count_backends(dsn, app_name) == 1, what="server side closed too")


# ---- growth in parallel, bounded ---------------------------------------------------


class ConnectRecorder:
    """A slow configure callback that records how many run at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.running = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
        time.sleep(self.delay)
        with self._lock:
            self.running -= 1


def grow_under_demand(
    dsn: str, max_connecting: int, requests: int, delay: float
) -> tuple[ConnectRecorder, float]:
    """*requests* requests arrive at an empty pool and each holds its
    connection until all are served; return the recorder and the time taken."""
    recorder = ConnectRecorder(delay)
    with ConnectionPool(
        dsn,
        min_size=0,
        max_size=requests,
        max_connecting=max_connecting,
        configure=recorder,
        open=True,
    ) as pool:
        assert pool.get_stats()["pool_size"] == 0
        all_served = threading.Barrier(requests + 1, timeout=DEADLINE * 2)

        def request() -> None:
            with pool.connection(timeout=DEADLINE * 2):
                all_served.wait()

        threads = Threads()
        start = time.monotonic()
        for _ in range(requests):
            threads.start(request)
        all_served.wait()
        took = time.monotonic() - start
        threads.join()
        assert pool.get_stats()["pool_size"] == requests
    return recorder, took


@pytest.mark.parametrize("max_connecting", [3, 6])
def test_waiting_requests_open_connections_in_parallel(dsn: str, max_connecting: int) -> None:
    delay = 0.3
    recorder, took = grow_under_demand(dsn, max_connecting=max_connecting, requests=8, delay=delay)
    assert recorder.calls == 8
    assert recorder.peak == max_connecting, f"{recorder.peak} connections opened at once"
    # One at a time would take 8 * delay; three at a time about 3 * delay.
    assert took < 6 * delay


def test_max_connecting_bounds_parallel_growth(dsn: str) -> None:
    recorder, _ = grow_under_demand(dsn, max_connecting=1, requests=3, delay=0.1)
    assert recorder.calls == 3
    assert recorder.peak == 1


# ---- pause and resume ------------------------------------------------------------


def test_pause_holds_new_checkouts_and_resume_serves_them_in_order(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        pool.wait(timeout=DEADLINE)
        lent = pool.getconn()
        pool.pause()
        assert pool.paused
        assert pool.get_stats()["paused"] == 1

        # Connections already lent are unaffected, and go back idle.
        assert lent.execute("select 1").fetchone() == (1,)
        pool.putconn(lent)
        assert pool.get_stats()["pool_available"] == 1
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.3)

        served: list[int] = []
        threads = Threads()

        def request(n: int) -> None:
            with pool.connection(timeout=DEADLINE) as conn:
                conn.execute("select 1")
                served.append(n)

        for n in range(4):
            threads.start(request, n)
            wait_until(
                lambda n=n: pool.get_stats()["requests_waiting"] == n + 1,
                what=f"request {n} queued",
            )
        time.sleep(0.2)
        assert served == [], "nothing served while paused"

        pool.resume()
        threads.join()
        assert served == [0, 1, 2, 3], "served oldest first"
        assert not pool.paused
        stats = pool.get_stats()
        assert stats["paused"] == 0
        assert stats["pool_available"] == 1


def test_close_while_paused_fails_waiting_requests(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1, open=True)
    try:
        pool.wait(timeout=DEADLINE)
        pool.pause()
        outcome: list[str] = []

        def request() -> None:
            try:
                with pool.connection(timeout=DEADLINE):
                    outcome.append("served")
            except Exception as ex:
                outcome.append(type(ex).__name__)

        threads = Threads()
        threads.start(request)
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="queued")
    finally:
        pool.close()
    threads.join()
    assert outcome == ["PoolClosed"]


def test_null_pools_cannot_pause(dsn: str) -> None:
    with NullConnectionPool(dsn, open=True) as pool, pytest.raises(NotImplementedError):
        pool.pause()
