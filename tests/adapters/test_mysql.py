"""ferropool.adapters.dbapi.Pool serving MySQL-family databases: PyMySQL
against a real MariaDB server (Debian's package, started by the fixture).

PyMySQL cannot tell whether a connection is in a transaction without a
round trip, so every return rolls back: the tests show that is both
needed (row locks and uncommitted rows never leak to the next borrower)
and enough.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from ferropool import PoolTimeout
from ferropool.adapters.dbapi import Pool
from tests.fixtures.helpers import DEADLINE, Threads, wait_until
from tests.fixtures.mariadb import MariaDB


def query(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def connection_id(conn: Any) -> int:
    return int(query(conn, "SELECT CONNECTION_ID()")[0][0])


@pytest.fixture
def table(mariadb: MariaDB) -> Iterator[str]:
    name = "adapters_mysql_t"
    with contextlib.closing(mariadb.connect(autocommit=True)) as conn:
        query(conn, f"DROP TABLE IF EXISTS {name}")
        query(conn, f"CREATE TABLE {name} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
    yield name
    with contextlib.closing(mariadb.connect(autocommit=True)) as conn:
        query(conn, f"DROP TABLE IF EXISTS {name}")


def rows(mariadb: MariaDB, table: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(mariadb.connect(autocommit=True)) as conn:
        return query(conn, f"SELECT id, v FROM {table} ORDER BY id")


def test_pool_serves_mariadb(mariadb: MariaDB) -> None:
    with Pool(mariadb.connect, min_size=2, max_size=3, name="mariadb") as pool:
        pool.wait(timeout=DEADLINE)
        assert mariadb.sessions() == 2
        with pool.connection() as conn:
            version = query(conn, "SELECT VERSION()")[0][0]
            assert "MariaDB" in version
        assert pool.driver is not None and pool.driver.name == "pymysql"
        assert pool.get_stats()["requests_num"] == 1
    wait_until(lambda: mariadb.sessions() == 0, what="sessions closed with the pool")


def test_threads_on_a_small_pool(mariadb: MariaDB, table: str) -> None:
    held: set[int] = set()
    lock = threading.Lock()
    peak = [0]

    def work(pool: Pool[Any], n: int) -> None:
        for i in range(20):
            with pool.connection() as conn:
                with lock:
                    assert id(conn) not in held, "a connection lent twice"
                    held.add(id(conn))
                    peak[0] = max(peak[0], len(held))
                try:
                    key = n * 100 + i
                    assert query(conn, "SELECT %s * 2", (key,)) == [(key * 2,)]
                    query(conn, f"INSERT INTO {table} VALUES (%s, %s)", (key, n))
                finally:
                    with lock:
                        held.discard(id(conn))

    with Pool(mariadb.connect, min_size=2, max_size=3, timeout=DEADLINE) as pool:
        threads = Threads()
        for n in range(12):
            threads.start(work, pool, n)
        threads.join()
        stats = pool.get_stats()
        assert stats["requests_num"] == 240
        assert stats["pool_size"] <= 3
        assert stats["returns_bad"] == 0
        assert peak[0] <= 3
        assert mariadb.sessions() <= 3
    # Every block committed its row, once.
    assert rows(mariadb, table) == [(n * 100 + i, n) for n in range(12) for i in range(20)]


def test_return_rolls_back_rows_and_locks(mariadb: MariaDB, table: str) -> None:
    with Pool(mariadb.connect, min_size=1, max_size=1, timeout=DEADLINE) as pool:
        conn = pool.getconn()
        query(conn, f"INSERT INTO {table} VALUES (1, 1)")
        pool.putconn(conn)  # not committed
        assert rows(mariadb, table) == []

        # Row locks taken by SELECT ... FOR UPDATE, which PyMySQL's own
        # server_status does not report as a transaction, are released.
        with contextlib.closing(mariadb.connect(autocommit=True)) as other:
            query(other, f"INSERT INTO {table} VALUES (2, 0)")
        conn = pool.getconn()
        query(conn, f"SELECT * FROM {table} WHERE id = 2 FOR UPDATE")
        pool.putconn(conn)
        with contextlib.closing(mariadb.connect(autocommit=True)) as other:
            query(other, "SET SESSION innodb_lock_wait_timeout = 1")
            query(other, f"UPDATE {table} SET v = 5 WHERE id = 2")  # not blocked
        assert rows(mariadb, table) == [(2, 5)]

        with pool.connection() as conn:
            assert query(conn, "SELECT @@in_transaction") == [(0,)]
        assert pool.get_stats()["returns_bad"] == 0


def test_connection_block_commits_or_rolls_back(mariadb: MariaDB, table: str) -> None:
    with Pool(mariadb.connect, min_size=1) as pool:
        with pool.connection() as conn:
            query(conn, f"INSERT INTO {table} VALUES (1, 1)")
        with pytest.raises(RuntimeError), pool.connection() as conn:
            query(conn, f"INSERT INTO {table} VALUES (2, 2)")
            raise RuntimeError("abort the block")
    assert rows(mariadb, table) == [(1, 1)]


def test_broken_connection_is_discarded(mariadb: MariaDB) -> None:
    with Pool(mariadb.connect, min_size=1, max_size=1, timeout=DEADLINE) as pool:
        # Killed while lent: the borrower sees the error, the pool discards it.
        conn = pool.getconn()
        first = connection_id(conn)
        mariadb.kill(first)
        with pytest.raises(pymysql.err.OperationalError):
            query(conn, "SELECT 1")
        pool.putconn(conn)
        assert pool.get_stats()["returns_bad"] == 1
        with pool.connection() as again:
            assert again is not conn
            second = connection_id(again)
        assert second != first

        # Killed while idle: found (the socket hung up) and replaced before
        # anyone borrows it.
        mariadb.kill(second)
        time.sleep(0.7)  # past liveness_bypass: the socket is polled too
        with pool.connection() as third:
            assert connection_id(third) not in (first, second)
        stats = pool.get_stats()
        assert stats["connections_lost"] == 1
        assert stats["requests_errors"] == 0


def test_exhausted_pool_times_out(mariadb: MariaDB) -> None:
    with Pool(mariadb.connect, min_size=1, max_size=1, timeout=0.2) as pool:
        held = pool.getconn()
        with pytest.raises(PoolTimeout):
            pool.getconn()
        pool.putconn(held)
        with pool.connection() as conn:
            assert query(conn, "SELECT 1") == [(1,)]


def test_wrong_password_is_reported_without_the_password(mariadb: MariaDB) -> None:
    pool = Pool(lambda: mariadb.connect(password="not-the-password"), min_size=1)
    with pytest.raises(PoolTimeout, match="Access denied") as info:
        pool.wait(timeout=1.0)
    assert "not-the-password" not in str(info.value)
