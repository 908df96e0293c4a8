"""ferropool.adapters.psycopg2: psycopg2's pools, on ferropool's core.

Each test holds the drop-in to psycopg2's documented behaviour (psycopg2's
pool.py is the reference) against the real server, and checks what
ferropool adds: lost connections replaced, one borrower per connection,
stats.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.pool
import pytest
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from ferropool.adapters.psycopg2 import (
    PoolError,
    SimpleConnectionPool,
    ThreadedConnectionPool,
)
from tests.fixtures.helpers import DEADLINE, Threads, count_backends, terminate_backend, wait_until


def pid_of(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("select pg_backend_pid()")
        row = cur.fetchone()
    conn.rollback()
    return int(row[0])


@pytest.fixture
def table(dsn: str) -> Iterator[str]:
    name = "adapters_psycopg2_t"
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"drop table if exists {name}; create table {name} (v int)")
    yield name
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"drop table if exists {name}")
    finally:
        conn.close()


def rows(dsn: str, table: str) -> list[int]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"select v from {table} order by v")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def test_the_error_is_psycopg2s_own() -> None:
    assert PoolError is psycopg2.pool.PoolError


def test_constructor_opens_minconn_connections(dsn: str, app_name: str) -> None:
    pool = ThreadedConnectionPool(3, 5, dsn, application_name=app_name)
    try:
        # Opened before the constructor returned, as psycopg2 does.
        assert count_backends(dsn, app_name) == 3
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (3, 3)
        assert (pool.minconn, pool.maxconn, pool.closed) == (3, 5, False)
    finally:
        pool.closeall()
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="backends closed")


def test_constructor_raises_the_connection_error(dsn: str) -> None:
    with pytest.raises(psycopg2.OperationalError):
        ThreadedConnectionPool(1, 2, dsn, dbname="no_such_database_here")


def test_exhausted_pool_raises_at_once(dsn: str) -> None:
    pool = ThreadedConnectionPool(1, 2, dsn)
    try:
        held = [pool.getconn(), pool.getconn()]
        assert held[0] is not held[1]
        t0 = time.monotonic()
        with pytest.raises(PoolError, match="exhausted"):
            pool.getconn()
        assert time.monotonic() - t0 < 0.5
        pool.putconn(held.pop())
        conn = pool.getconn()  # a connection is free again
        pool.putconn(conn)
        pool.putconn(held.pop())
    finally:
        pool.closeall()


def test_pool_timeout_waits_for_a_return(dsn: str) -> None:
    pool = ThreadedConnectionPool(1, 1, dsn, pool_timeout=5.0)
    try:
        conn = pool.getconn()
        timer = threading.Timer(0.2, pool.putconn, (conn,))
        timer.start()
        t0 = time.monotonic()
        again = pool.getconn()
        assert 0.1 < time.monotonic() - t0 < 5.0
        assert again is conn
        pool.putconn(again)
        timer.join()
        # getconn(timeout=...) bounds a single request.
        held = pool.getconn()
        with pytest.raises(PoolError, match="exhausted"):
            pool.getconn(timeout=0.1)
        pool.putconn(held)
    finally:
        pool.closeall()


def test_growth_waits_for_the_new_connection(dsn: str, app_name: str) -> None:
    pool = ThreadedConnectionPool(0, 3, dsn, application_name=app_name)
    try:
        assert count_backends(dsn, app_name) == 0
        conns = [pool.getconn() for _ in range(3)]
        assert len({id(c) for c in conns}) == 3
        assert count_backends(dsn, app_name) == 3
        for c in conns:
            pool.putconn(c)
    finally:
        pool.closeall()


def test_keyed_connections(dsn: str) -> None:
    pool = SimpleConnectionPool(1, 3, dsn)
    try:
        a = pool.getconn("a")
        assert pool.getconn("a") is a  # same key, same connection
        b = pool.getconn("b")
        assert b is not a
        pool.putconn(key="a")  # psycopg2 finds the connection from the key
        pool.putconn(b)  # ... or the key from the connection
        with pytest.raises(PoolError, match="unkeyed"):
            pool.putconn(b)  # already put back
        stranger = psycopg2.connect(dsn)
        try:
            with pytest.raises(PoolError, match="unkeyed"):
                pool.putconn(stranger)
        finally:
            stranger.close()
        assert pool.get_stats()["pool_available"] >= 2
    finally:
        pool.closeall()


def test_putconn_rolls_back_an_open_transaction(dsn: str, table: str) -> None:
    pool = ThreadedConnectionPool(1, 1, dsn)
    try:
        conn = pool.getconn()
        with conn.cursor() as cur:
            cur.execute(f"insert into {table} values (1)")
        pool.putconn(conn)  # not committed
        assert rows(dsn, table) == []
        again = pool.getconn()
        assert again is conn
        assert again.info.transaction_status == TRANSACTION_STATUS_IDLE
        # A transaction opened by hand in autocommit mode, which psycopg2's
        # own rollback() would skip, is rolled back too.
        again.autocommit = True
        with again.cursor() as cur:
            cur.execute(f"begin; insert into {table} values (2)")
        pool.putconn(again)
        assert rows(dsn, table) == []
        assert pool.get_stats()["returns_bad"] == 0
    finally:
        pool.closeall()


def test_putconn_close_discards(dsn: str) -> None:
    pool = ThreadedConnectionPool(1, 1, dsn)
    try:
        conn = pool.getconn()
        pool.putconn(conn, close=True)
        assert conn.closed
        fresh = pool.getconn()
        assert fresh is not conn and not fresh.closed
        pool.putconn(fresh)
        assert pool.get_stats()["returns_bad"] == 1
    finally:
        pool.closeall()


def test_lost_connection_is_discarded_and_replaced(dsn: str) -> None:
    pool = ThreadedConnectionPool(1, 1, dsn)
    try:
        conn = pool.getconn()
        pid = pid_of(conn)
        terminate_backend(dsn, pid)
        with pytest.raises(psycopg2.OperationalError), conn.cursor() as cur:
            cur.execute("select 1")
        pool.putconn(conn)  # lost: psycopg2's status is UNKNOWN or closed
        again = pool.getconn()
        assert again is not conn
        assert pid_of(again) != pid
        pool.putconn(again)
        assert pool.get_stats()["returns_bad"] == 1
        # A backend terminated while idle in the pool: never lent (the
        # core sees the hang-up, or polls a socket idle past 0.5 s).
        idle_pid = pid_of(pool.getconn("k"))
        pool.putconn(key="k")
        terminate_backend(dsn, idle_pid)
        time.sleep(0.7)
        conn = pool.getconn()
        assert pid_of(conn) not in (pid, idle_pid)
        pool.putconn(conn)
    finally:
        pool.closeall()


def test_closeall_closes_even_connections_in_use(dsn: str, app_name: str) -> None:
    pool = ThreadedConnectionPool(2, 3, dsn, application_name=app_name)
    in_use = pool.getconn()
    pool.closeall()
    assert pool.closed
    assert in_use.closed
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="backends closed")
    with pytest.raises(PoolError, match="closed"):
        pool.getconn()
    with pytest.raises(PoolError, match="closed"):
        pool.putconn(in_use)
    with pytest.raises(PoolError, match="closed"):
        pool.closeall()


def test_threads_share_a_small_pool(dsn: str, app_name: str, table: str) -> None:
    pool = ThreadedConnectionPool(2, 4, dsn, application_name=app_name, pool_timeout=DEADLINE)
    held: set[int] = set()
    lock = threading.Lock()
    peak = [0]

    def work(n: int) -> None:
        for i in range(25):
            conn = pool.getconn()
            with lock:
                assert id(conn) not in held, "a connection lent twice"
                held.add(id(conn))
                peak[0] = max(peak[0], len(held))
            try:
                with conn.cursor() as cur:
                    cur.execute("select %s * 1000 + %s", (n, i))
                    assert cur.fetchone() == (n * 1000 + i,)
                    cur.execute(f"insert into {table} values (%s)", (n * 1000 + i,))
                conn.commit()
            finally:
                with lock:
                    held.discard(id(conn))
                pool.putconn(conn)

    threads = Threads()
    for n in range(12):
        threads.start(work, n)
    threads.join()
    try:
        assert rows(dsn, table) == sorted(n * 1000 + i for n in range(12) for i in range(25))
        assert peak[0] <= 4
        assert count_backends(dsn, app_name) <= 4
        stats = pool.get_stats()
        assert stats["requests_num"] >= 300
        assert stats["pool_size"] <= 4
        assert stats["returns_bad"] == 0
    finally:
        pool.closeall()
