"""ferropool.adapters.dbapi.Pool: any DB-API 2 driver on ferropool's core.

pg8000 (pure Python) against the real PostgreSQL server, sqlite3 for a
driver without a server; PyMySQL on MariaDB is in test_adapters_mysql.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg8000.dbapi
import psycopg
import psycopg2
import pytest
from psycopg.conninfo import conninfo_to_dict

from ferropool import PoolClosed, PoolTimeout
from ferropool.adapters.dbapi import Pool, ping
from tests.fixtures.helpers import DEADLINE, Threads, count_backends, terminate_backend, wait_until
from tests.fixtures.safety import fork_and_run


@pytest.fixture
def pg8000_connect(dsn: str, app_name: str) -> Callable[[], Any]:
    params = conninfo_to_dict(dsn)

    def connect() -> Any:
        return pg8000.dbapi.connect(
            user=params.get("user", "postgres"),
            host=params.get("host", "127.0.0.1"),
            port=int(params.get("port", 5432)),
            database=params.get("dbname"),
            password=params.get("password"),
            application_name=app_name,
        )

    return connect


@pytest.fixture
def table(dsn: str) -> Iterator[str]:
    name = "adapters_dbapi_t"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop table if exists {name}")
        conn.execute(f"create table {name} (v int)")
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop table if exists {name}")


def rows(dsn: str, table: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(f"select v from {table} order by v")]


def query(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


def pid_of(conn: Any) -> int:
    return int(query(conn, "select pg_backend_pid()")[0][0])


def test_pg8000_pool_fills_and_lends(dsn: str, app_name: str, pg8000_connect: Any) -> None:
    with Pool(pg8000_connect, min_size=2, max_size=3, name="pg8000-pool") as pool:
        pool.wait(timeout=DEADLINE)
        assert count_backends(dsn, app_name) == 2
        with pool.connection() as conn:
            assert query(conn, "select 40 + 2") == [[42]]
        assert pool.driver is not None and pool.driver.name == "pg8000"
        stats = pool.get_stats()
        assert stats["requests_num"] == 1
        assert stats["pool_available"] == 2
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="closed with the pool")


def test_connection_block_commits_or_rolls_back(dsn: str, table: str, pg8000_connect: Any) -> None:
    with Pool(pg8000_connect, min_size=1) as pool:
        with pool.connection() as conn:
            query(conn, f"insert into {table} values (1)")
        assert rows(dsn, table) == [1]
        with pytest.raises(ZeroDivisionError), pool.connection() as conn:
            query(conn, f"insert into {table} values (2)")
            _ = 1 / 0
        assert rows(dsn, table) == [1]
        with pool.connection() as conn:
            assert not conn._in_transaction  # pg8000's own record
        assert pool.get_stats()["returns_bad"] == 0


def test_putconn_rolls_back_pg8000(dsn: str, table: str, pg8000_connect: Any) -> None:
    with Pool(pg8000_connect, min_size=1, max_size=1) as pool:
        conn = pool.getconn()
        query(conn, f"insert into {table} values (1)")
        assert conn._in_transaction
        pool.putconn(conn)
        assert not conn._in_transaction
        assert rows(dsn, table) == []
        # A failed transaction (InFailedSqlTransaction) is rolled back too.
        conn = pool.getconn()
        with pytest.raises(pg8000.dbapi.DatabaseError):
            query(conn, "select * from no_such_table")
        pool.putconn(conn)
        again = pool.getconn()
        assert again is conn
        assert query(again, "select 1") == [[1]]
        pool.putconn(again)


def test_pg8000_threads_on_a_small_pool(
    dsn: str, app_name: str, table: str, pg8000_connect: Any
) -> None:
    held: set[int] = set()
    lock = threading.Lock()

    def work(pool: Pool[Any], n: int) -> None:
        for i in range(20):
            with pool.connection() as conn:
                with lock:
                    assert id(conn) not in held, "a connection lent twice"
                    held.add(id(conn))
                try:
                    assert query(conn, "select %s::int * 100 + %s::int", (n, i)) == [[n * 100 + i]]
                    query(conn, f"insert into {table} values (%s)", (n * 100 + i,))
                finally:
                    with lock:
                        held.discard(id(conn))

    with Pool(pg8000_connect, min_size=2, max_size=3, timeout=DEADLINE) as pool:
        threads = Threads()
        for n in range(10):
            threads.start(work, pool, n)
        threads.join()
        stats = pool.get_stats()
        assert stats["requests_num"] == 200
        assert stats["pool_size"] <= 3
        assert stats["returns_bad"] == 0
        assert count_backends(dsn, app_name) <= 3
    assert rows(dsn, table) == sorted(n * 100 + i for n in range(10) for i in range(20))


def test_broken_pg8000_connection_is_discarded(
    dsn: str, app_name: str, pg8000_connect: Any
) -> None:
    with Pool(pg8000_connect, min_size=1, max_size=1, timeout=DEADLINE) as pool:
        conn = pool.getconn()
        pid = pid_of(conn)
        query(conn, "select 1")  # in a transaction: the return must roll back
        terminate_backend(dsn, pid)
        pool.putconn(conn)  # the rollback fails: discarded, not kept
        assert pool.get_stats()["returns_bad"] == 1
        with pool.connection() as again:
            assert again is not conn
            new_pid = pid_of(again)
        assert new_pid != pid
        # Terminated while idle: found before it is lent, replaced.
        terminate_backend(dsn, new_pid)
        time.sleep(0.7)  # past liveness_bypass: the socket is polled
        with pool.connection() as third:
            assert pid_of(third) not in (pid, new_pid)
        assert pool.get_stats()["connections_lost"] >= 1


def test_timeout_closed_and_foreign_connections(dsn: str, pg8000_connect: Any) -> None:
    pool = Pool(pg8000_connect, min_size=1, max_size=1, timeout=0.2)
    try:
        held = pool.getconn()
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.getconn()
        assert 0.15 < time.monotonic() - t0 < 5
        stranger = pg8000_connect()
        try:
            with pytest.raises(ValueError):
                pool.putconn(stranger)
        finally:
            stranger.close()
        pool.putconn(held)
    finally:
        pool.close()
    with pytest.raises(PoolClosed):
        pool.getconn()


def test_hooks_check_configure_reset(dsn: str, pg8000_connect: Any) -> None:
    events: list[str] = []

    def configure(conn: Any) -> None:
        query(conn, "set application_name = 'configured'")
        conn.commit()
        events.append("configure")

    def reset(conn: Any) -> None:
        events.append("reset")

    def check(conn: Any) -> None:
        events.append("check")
        ping(conn)

    with Pool(pg8000_connect, min_size=1, configure=configure, reset=reset, check=check) as pool:
        with pool.connection() as conn:
            assert query(conn, "show application_name") == [["configured"]]
        assert events == ["configure", "check", "reset"]


def test_configure_leaving_a_transaction_is_refused(pg8000_connect: Any) -> None:
    with (
        Pool(
            pg8000_connect,
            min_size=1,
            configure=lambda conn: query(conn, "select 1"),
            reconnect_timeout=0.5,
        ) as pool,
        pytest.raises(PoolTimeout, match="configure"),
    ):
        pool.wait(timeout=1.0)


def test_psycopg2_through_the_generic_pool(dsn: str, table: str) -> None:
    with Pool(lambda: psycopg2.connect(dsn), min_size=1) as pool:
        with pool.connection() as conn:
            query(conn, f"insert into {table} values (7)")
        conn = pool.getconn()
        query(conn, f"insert into {table} values (8)")
        pool.putconn(conn)  # libpq says INTRANS: rolled back
        assert pool.driver is not None and pool.driver.name == "psycopg2"
    assert rows(dsn, table) == [7]


def test_sqlite3_in_transaction_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as setup:
        setup.execute("create table t (v int)")
    setup.close()
    with Pool(
        lambda: sqlite3.connect(path, check_same_thread=False), min_size=1, max_size=1
    ) as pool:
        conn = pool.getconn()
        conn.execute("insert into t values (1)")
        assert conn.in_transaction
        pool.putconn(conn)
        assert not conn.in_transaction
        with pool.connection() as conn:
            conn.execute("insert into t values (2)")
        assert pool.driver is not None and pool.driver.name == "sqlite3"
    check = sqlite3.connect(path)
    try:
        assert check.execute("select v from t").fetchall() == [(2,)]
    finally:
        check.close()


def test_constructor_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="connect"):
        Pool("dbname=x", open=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="driver"):
        Pool(lambda: None, driver="oracle", open=False)
    with pytest.raises(ValueError, match="max_lifetime"):
        Pool(lambda: None, max_lifetime=0, open=False)


def test_wait_names_the_connection_error() -> None:
    def refuse() -> Any:
        raise ConnectionRefusedError("nothing listens there")

    pool = Pool(refuse, min_size=1)
    with pytest.raises(PoolTimeout, match="nothing listens there"):
        pool.wait(timeout=0.5)
    assert pool.closed


def test_close_waits_for_nothing_lent_and_closes_idle(
    dsn: str, app_name: str, pg8000_connect: Any
) -> None:
    pool = Pool(pg8000_connect, min_size=2)
    pool.wait(timeout=DEADLINE)
    lent = pool.getconn()
    pool.close()
    wait_until(lambda: count_backends(dsn, app_name) == 1, what="idle ones closed")
    pool.putconn(lent)  # returned after close: closed
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="the lent one closed")


def test_connection_lent_before_fork_is_closed_quietly_in_the_child(
    dsn: str, app_name: str, pg8000_connect: Any
) -> None:
    """As for ConnectionPool (tests/safety/test_fork): the child may give back a
    connection its parent lent; the child closes it (its socket points at
    /dev/null) and the parent's session is untouched."""
    with Pool(pg8000_connect, min_size=2, max_size=2) as pool:
        pool.wait(timeout=DEADLINE)
        lent = pool.getconn(timeout=DEADLINE)
        lent_pid = pid_of(lent)

        def child() -> int:
            pool.putconn(lent)
            with pool.connection(timeout=DEADLINE) as conn:
                return pid_of(conn)

        child_pid = fork_and_run(child)

        assert child_pid != lent_pid
        assert pid_of(lent) == lent_pid  # the parent's borrower still has its session
        pool.putconn(lent)
        assert pool.get_stats()["pool_available"] == 2
