"""Many threads, few connections: the pool's core promise under contention.

Checked from the outside: every query answers right, no connection is ever
held by two threads at once, and at the end every connection is back and
every checkout was counted.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import psycopg

from ferropool import ConnectionPool, PoolTimeout
from tests.fixtures.helpers import Threads


class Holders:
    """Which thread holds which connection; catches a connection lent twice."""

    def __init__(self) -> None:
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()
        self.max_held = 0

    def acquired(self, conn: psycopg.Connection[Any]) -> None:
        me = threading.get_ident()
        with self._lock:
            other = self._held.get(id(conn))
            assert other is None, f"connection {id(conn):x} lent to {me} while {other} holds it"
            self._held[id(conn)] = me
            self.max_held = max(self.max_held, len(self._held))

    def released(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            assert self._held.pop(id(conn)) == threading.get_ident()


def test_32_threads_share_4_connections(dsn: str) -> None:
    n_threads, iterations, size = 32, 200, 4
    holders = Holders()
    with ConnectionPool(dsn, min_size=size, open=True) as pool:
        pool.wait()
        pool.pop_stats()  # count this test's checkouts only
        start = threading.Barrier(n_threads)

        def worker(t: int) -> None:
            start.wait()
            for i in range(iterations):
                value = t * iterations + i
                with pool.connection(timeout=60) as conn:
                    holders.acquired(conn)
                    row = conn.execute("select %s::int", (value,)).fetchone()
                    assert row == (value,)
                    holders.released(conn)

        threads = Threads()
        for t in range(n_threads):
            threads.start(worker, t)
        threads.join(100)

        stats = pool.get_stats()
        assert stats["pool_available"] == stats["pool_size"] == size
        assert stats["requests_waiting"] == 0
        assert stats["requests_num"] == n_threads * iterations
        assert stats["requests_errors"] == 0
        assert stats["connections_num"] == 0, "no connection was replaced"
        assert holders.max_held == size


def test_getconn_putconn_with_timeouts_under_contention(dsn: str) -> None:
    """Short timeouts racing with returns: errors counted, nothing lost."""
    n_threads, iterations, size = 16, 60, 2
    holders = Holders()
    lock = threading.Lock()
    timeouts = [0]
    with ConnectionPool(dsn, min_size=size, open=True) as pool:
        pool.wait()
        pool.pop_stats()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(iterations):
                try:
                    conn = pool.getconn(timeout=rng.choice([0.001, 0.005, 0.02, 0.1]))
                except PoolTimeout:
                    with lock:
                        timeouts[0] += 1
                    continue
                holders.acquired(conn)
                try:
                    assert conn.execute("select 1").fetchone() == (1,)
                    conn.rollback()
                finally:
                    holders.released(conn)
                    pool.putconn(conn)

        threads = Threads()
        for seed in range(n_threads):
            threads.start(worker, seed)
        threads.join(100)

        stats = pool.get_stats()
        assert stats["pool_available"] == stats["pool_size"] == size
        assert stats["requests_waiting"] == 0
        assert stats["requests_num"] == n_threads * iterations
        assert stats["requests_errors"] == timeouts[0]
        assert holders.max_held <= size
        # Every connection still works.
        conns = [pool.getconn(timeout=1) for _ in range(size)]
        for conn in conns:
            assert conn.execute("select 1").fetchone() == (1,)
            conn.rollback()
            pool.putconn(conn)
