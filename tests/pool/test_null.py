"""NullConnectionPool: psycopg_pool's pool that keeps no connection.

Each request gets a new connection, closed when given back unless a queued
request takes it over; max_size bounds how many exist at once (0: no
bound). Connections are counted on the server through pg_stat_activity.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from ferropool import NullConnectionPool, PoolClosed, PoolTimeout, TooManyRequests
from ferropool.embedded import free_port
from tests.fixtures.fault_proxy import fault_proxy
from tests.fixtures.helpers import DEADLINE, Threads, backend_pid, count_backends, wait_until


def null_pool(dsn: str, app_name: str, **kwargs: Any) -> NullConnectionPool[Any]:
    """An open null pool whose connections carry *app_name* on the server."""
    return NullConnectionPool(dsn, kwargs={"application_name": app_name}, open=True, **kwargs)


def test_min_size_must_be_zero(dsn: str) -> None:
    with pytest.raises(ValueError, match=r"min_size.*1"):
        NullConnectionPool(dsn, min_size=1, open=False)
    with NullConnectionPool(dsn, max_size=2, open=True) as pool:
        with pytest.raises(ValueError, match=r"min_size.*1"):
            pool.resize(1, 3)
        assert (pool.min_size, pool.max_size) == (0, 2)


def test_defaults_like_psycopg_pool(dsn: str) -> None:
    pool = NullConnectionPool(dsn, open=False)
    assert (pool.min_size, pool.max_size) == (0, 0)


def test_close_returns_is_ignored_like_psycopg_pool(dsn: str, app_name: str) -> None:
    """A null pool keeps nothing, so close() on a connection closes it."""
    with null_pool(dsn, app_name, close_returns=True) as pool:
        assert pool.close_returns is False
        conn = pool.getconn()
        pool.putconn(conn)
        assert conn.closed
        wait_until(lambda: count_backends(dsn, app_name) == 0, what="server count back to 0")
    with pytest.raises(TypeError, match=r"close_returns.*'yes'"):
        NullConnectionPool(dsn, close_returns="yes", open=False)  # type: ignore[arg-type]


def test_each_getconn_opens_a_new_connection(dsn: str, app_name: str) -> None:
    with null_pool(dsn, app_name) as pool:
        pids = []
        for _ in range(3):
            with pool.connection() as conn:
                pids.append(backend_pid(conn))
                assert count_backends(dsn, app_name) == 1
        assert len(set(pids)) == 3
        assert pool.get_stats()["connections_num"] == 3


def test_connections_closed_on_return(dsn: str, app_name: str) -> None:
    with null_pool(dsn, app_name) as pool:
        conns = [pool.getconn() for _ in range(3)]
        assert count_backends(dsn, app_name) == 3
        for conn in conns:
            pool.putconn(conn)
            assert conn.closed
        wait_until(lambda: count_backends(dsn, app_name) == 0, what="server count back to 0")
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (0, 0)


def test_max_size_bounds_concurrent_connections(dsn: str, app_name: str) -> None:
    with null_pool(dsn, app_name, max_size=2) as pool:
        a, b = pool.getconn(), pool.getconn()
        pid_a = backend_pid(a)
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.2)
        assert count_backends(dsn, app_name) == 2

        # A waiter is handed the returned connection itself, not a new one.
        got: list[psycopg.Connection[Any]] = []
        threads = Threads()
        threads.start(lambda: got.append(pool.getconn(timeout=DEADLINE)))
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="a waiter")
        pool.putconn(a)
        threads.join(DEADLINE)
        assert got == [a]
        assert not a.closed
        assert backend_pid(a) == pid_a
        assert count_backends(dsn, app_name) == 2
        pool.putconn(a)
        pool.putconn(b)
        assert pool.get_stats()["pool_size"] == 0


def test_waiters_served_in_fifo_order(dsn: str) -> None:
    n = 5
    with NullConnectionPool(dsn, max_size=1, open=True) as pool:
        held = pool.getconn()
        order: list[int] = []
        threads = Threads()

        def client(i: int) -> None:
            with pool.connection(timeout=60):
                order.append(i)

        for i in range(n):
            threads.start(client, i)
            wait_until(
                lambda i=i: pool.get_stats()["requests_waiting"] == i + 1,
                what=f"{i + 1} waiters",
            )
        pool.putconn(held)
        threads.join()
        assert order == list(range(n))


def test_max_size_zero_is_unlimited(dsn: str, app_name: str) -> None:
    with null_pool(dsn, app_name, max_size=0) as pool:
        assert pool.max_size == 0
        assert pool.get_stats()["pool_max"] == 0
        conns = [pool.getconn(timeout=DEADLINE) for _ in range(12)]
        assert len({backend_pid(c) for c in conns}) == 12
        assert count_backends(dsn, app_name) == 12
        for conn in conns:
            pool.putconn(conn)
        wait_until(lambda: count_backends(dsn, app_name) == 0, what="all closed")


def test_concurrent_requests_never_exceed_max_size(dsn: str, app_name: str) -> None:
    max_size = 3
    with null_pool(dsn, app_name, max_size=max_size) as pool:
        sizes: list[int] = []
        stop = threading.Event()

        def monitor() -> None:
            while not stop.is_set():
                sizes.append(pool.get_stats()["pool_size"])
                time.sleep(0.001)

        def client() -> None:
            for _ in range(5):
                with pool.connection(timeout=60) as conn:
                    conn.execute("select 1")

        watcher = Threads()
        watcher.start(monitor)
        threads = Threads()
        for _ in range(8):
            threads.start(client)
        threads.join()
        stop.set()
        watcher.join()
        assert max(sizes) <= max_size
        assert pool.get_stats()["requests_num"] == 40
        wait_until(lambda: count_backends(dsn, app_name) == 0, what="all closed")


def test_timed_out_waiter_does_not_swallow_connection(dsn: str, app_name: str) -> None:
    with null_pool(dsn, app_name, max_size=1) as pool:
        held = pool.getconn()
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.3)
        assert time.monotonic() - t0 >= 0.3
        pool.putconn(held)
        # Nobody waits any more: closed, and the capacity is free again.
        assert held.closed
        assert pool.get_stats()["pool_size"] == 0
        with pool.connection(timeout=DEADLINE) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


def test_max_waiting(dsn: str) -> None:
    with NullConnectionPool(dsn, max_size=1, max_waiting=1, open=True) as pool:
        held = pool.getconn()
        threads = Threads()
        threads.start(lambda: pool.putconn(pool.getconn(timeout=60)))
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="a waiter")
        with pytest.raises(TooManyRequests):
            pool.getconn(timeout=60)
        pool.putconn(held)
        threads.join()


def test_wait_checks_connectivity(dsn: str, app_name: str) -> None:
    with null_pool(dsn, app_name) as pool:
        pool.wait(timeout=DEADLINE)
        # Proven, then closed: the pool keeps nothing.
        wait_until(lambda: count_backends(dsn, app_name) == 0, what="test connection closed")
        assert pool.get_stats()["pool_size"] == 0

    bad = NullConnectionPool(f"host=127.0.0.1 port={free_port()} connect_timeout=2", open=True)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout, match="Connection refused"):
        bad.wait(timeout=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert bad.closed


def test_resize_changes_max_only(dsn: str, app_name: str) -> None:
    with null_pool(dsn, app_name, max_size=1) as pool:
        pool.resize(0, 3)
        assert (pool.min_size, pool.max_size) == (0, 3)
        # Nothing opened in advance.
        assert count_backends(dsn, app_name) == 0
        conns = [pool.getconn(timeout=DEADLINE) for _ in range(3)]
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.2)
        for conn in conns:
            pool.putconn(conn)


def test_broken_connection_returned(dsn: str) -> None:
    with NullConnectionPool(dsn, max_size=1, open=True) as pool:
        conn = pool.getconn()
        conn.close()
        pool.putconn(conn)
        assert pool.get_stats()["returns_bad"] == 1
        assert pool.get_stats()["pool_size"] == 0
        with pool.connection(timeout=DEADLINE) as fresh:
            assert fresh.execute("select 1").fetchone() == (1,)


def test_configure_and_reset_run_for_every_connection(dsn: str) -> None:
    configured: list[int] = []
    resets: list[int] = []

    def configure(conn: psycopg.Connection[Any]) -> None:
        configured.append(id(conn))
        conn.autocommit = True

    with NullConnectionPool(
        dsn, configure=configure, reset=lambda c: resets.append(id(c)), open=True
    ) as pool:
        for _ in range(3):
            with pool.connection() as conn:
                assert conn.autocommit
        assert len(configured) == 3
        assert len(resets) == 3


def test_closed_pool(dsn: str) -> None:
    pool = NullConnectionPool(dsn, open=True)
    conn = pool.getconn()
    pool.close()
    with pytest.raises(PoolClosed):
        pool.getconn()
    pool.putconn(conn)
    assert conn.closed


@pytest.mark.timeout(60)
def test_a_connect_with_no_time_left_still_has_a_connect_timeout(dsn: str) -> None:
    """wait(timeout=0) against a server that never answers: the attempt is
    bounded by connect_timeout (its 1 s minimum), it does not hang."""
    with fault_proxy(dsn) as proxy:
        proxy.black_hole()  # new connections are accepted, then never answered
        pool = NullConnectionPool(proxy.dsn(dsn), open=True)
        with pytest.raises(PoolTimeout, match="initialization incomplete"):
            pool.wait(timeout=0)
        assert pool.closed


def test_requests_queued_behind_expiring_connections_are_all_served(dsn: str) -> None:
    """psycopg_pool's behaviour (issue 13 item 2): 5 threads, one connection
    at a time, each connection expiring after 0.2 s and each request holding
    it 0.1 s. A connection retired on return frees its capacity for the
    oldest queued request, which opens a new one: nobody waits out its
    timeout."""
    served: list[int] = []
    with NullConnectionPool(dsn, max_size=1, max_lifetime=0.2, open=True) as pool:

        def client(i: int) -> None:
            with pool.connection(timeout=DEADLINE):
                time.sleep(0.1)
            served.append(i)

        threads = Threads()
        for i in range(5):
            threads.start(client, i)
        threads.join()
        stats = pool.get_stats()
    assert sorted(served) == list(range(5))
    assert stats["requests_errors"] == 0
    assert stats["connections_num"] >= 2, "expired connections were replaced"


def _expire(pool: NullConnectionPool[Any], conn: psycopg.Connection[Any]) -> None:
    time.sleep(0.2)  # past its max_lifetime (0.1 s)
    pool.putconn(conn)


def _close_then_return(pool: NullConnectionPool[Any], conn: psycopg.Connection[Any]) -> None:
    conn.close()
    pool.putconn(conn)


def _fail_rollback(pool: NullConnectionPool[Any], conn: psycopg.Connection[Any]) -> None:
    # Returned inside a transaction whose server went away: the rollback
    # fails and the connection is discarded.
    conn.execute("select 1")
    with psycopg.connect(pool.conninfo, autocommit=True) as admin:  # type: ignore[arg-type]
        admin.execute("select pg_terminate_backend(%s, 5000)", (conn.info.backend_pid,))
    pool.putconn(conn)


def _drain_then_return(pool: NullConnectionPool[Any], conn: psycopg.Connection[Any]) -> None:
    pool.drain()
    pool.putconn(conn)


RETIRE_PATHS: dict[str, tuple[dict[str, Any], Any]] = {
    "expired": ({"max_lifetime": 0.1}, _expire),
    "closed by its borrower": ({}, _close_then_return),
    "reset failed": ({"reset": lambda conn: 1 / 0}, lambda pool, conn: pool.putconn(conn)),
    "rollback failed": ({}, _fail_rollback),
    "used up": ({"max_uses": 1}, lambda pool, conn: pool.putconn(conn)),
    "drained": ({}, _drain_then_return),
}


@pytest.mark.parametrize("path", sorted(RETIRE_PATHS))
def test_a_connection_retired_on_return_serves_a_queued_request(dsn: str, path: str) -> None:
    """Whatever retires the returned connection (it is closed, not handed
    over), the request queued behind it is told the capacity is free and
    opens its own connection at once, not after its timeout."""
    settings, retire = RETIRE_PATHS[path]
    with NullConnectionPool(dsn, max_size=1, open=True, **settings) as pool:
        held = pool.getconn()
        old_pid = held.info.backend_pid
        got: list[int] = []

        def waiter() -> None:
            with pool.connection(timeout=60) as conn:
                got.append(backend_pid(conn))

        threads = Threads()
        threads.start(waiter)
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="a queued request")
        retire(pool, held)
        threads.join(DEADLINE)
        assert len(got) == 1 and got[0] != old_pid, "served by a new connection"
        assert held.closed
        stats = pool.get_stats()
        assert (stats["requests_errors"], stats["requests_waiting"]) == (0, 0)


def test_capacity_of_a_failed_connect_goes_to_the_next_request(dsn: str) -> None:
    """A request whose own connect fails gives its capacity to the request
    queued behind it."""
    attempts = 0
    real = dsn
    gate = threading.Event()

    def conninfo() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            gate.wait(DEADLINE)  # until the second request has queued
            return f"host=127.0.0.1 port={free_port()} connect_timeout=2"
        return real

    with NullConnectionPool(conninfo, max_size=1, open=True) as pool:
        errors: list[BaseException] = []
        got: list[int] = []

        def first() -> None:
            try:
                pool.getconn(timeout=DEADLINE)
            except psycopg.OperationalError as ex:
                errors.append(ex)

        def second() -> None:
            with pool.connection(timeout=60) as conn:
                got.append(backend_pid(conn))

        threads = Threads()
        threads.start(first)
        wait_until(lambda: attempts == 1, what="the first attempt")
        threads.start(second)
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="a queued request")
        gate.set()
        threads.join(DEADLINE)
        assert len(errors) == 1 and len(got) == 1
