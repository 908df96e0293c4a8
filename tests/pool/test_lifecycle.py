"""Connections over time: filling, growing, shrinking, expiring, replacing.

Also the callbacks that run over a connection's life (configure, check,
reset, conninfo and kwargs as callables) and the pool's behaviour when the
server is unreachable or goes away and comes back. Background effects are
awaited with generous deadlines; server-side counts come from
pg_stat_activity, through a per-test application_name.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from ferropool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from ferropool.embedded import EmbeddedPostgres, free_port
from tests.fixtures.helpers import (
    DEADLINE,
    Threads,
    backend_pid,
    count_backends,
    terminate_backend,
    wait_until,
)


def borrow_all(pool: ConnectionPool[Any]) -> list[psycopg.Connection[Any]]:
    """Every connection of a full pool, lent at once (so each is seen once)."""
    return [pool.getconn(timeout=DEADLINE) for _ in range(pool.max_size)]


def give_back(pool: ConnectionPool[Any], conns: list[psycopg.Connection[Any]]) -> None:
    for conn in conns:
        pool.putconn(conn)


# ---- filling, growing, shrinking --------------------------------------------


def test_min_size_filled_in_background(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=3, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        stats = pool.get_stats()
        assert stats["pool_size"] == stats["pool_available"] == 3
        assert stats["connections_num"] == 3
        assert count_backends(dsn, app_name) == 3
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="close() closes all")


def test_grows_to_max_size_under_demand_and_never_above(dsn: str, app_name: str) -> None:
    max_size = 4
    clients = 7
    with ConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait()
        sizes: list[int] = []
        server_counts: list[int] = []
        stop = threading.Event()

        def monitor() -> None:
            n = 0
            while not stop.is_set():
                sizes.append(pool.get_stats()["pool_size"])
                n += 1
                if n % 50 == 0:  # the server-side view, less often (it connects)
                    server_counts.append(count_backends(dsn, app_name))
                time.sleep(0.001)

        release = threading.Event()
        holding: list[int] = []
        lock = threading.Lock()

        def client() -> None:
            with pool.connection(timeout=60):
                with lock:
                    holding.append(1)
                release.wait(60)

        watcher = Threads()
        watcher.start(monitor)
        threads = Threads()
        for _ in range(clients):
            threads.start(client)
        wait_until(
            lambda: (
                len(holding) == max_size
                and pool.get_stats()["requests_waiting"] == clients - max_size
            ),
            what="max_size connections lent, the rest queued",
        )
        assert pool.get_stats()["pool_size"] == max_size
        assert count_backends(dsn, app_name) == max_size
        release.set()
        threads.join()
        stop.set()
        watcher.join()
        assert len(holding) == clients
        assert max(sizes) == max_size
        assert max(server_counts, default=0) <= max_size
        stats = pool.get_stats()
        assert stats["pool_size"] == stats["pool_available"] == max_size


def test_idle_connections_above_min_size_are_closed(dsn: str, app_name: str) -> None:
    max_idle = 0.3
    with ConnectionPool(
        dsn,
        min_size=1,
        max_size=4,
        max_idle=max_idle,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        conns = borrow_all(pool)
        assert pool.get_stats()["pool_size"] == 4
        returned_at = time.monotonic()
        give_back(pool, conns)
        stats = pool.get_stats()
        if time.monotonic() - returned_at < max_idle / 2:
            # Not closed right away: they were just used.
            assert stats["pool_size"] == 4
        wait_until(lambda: pool.get_stats()["pool_size"] == 1, what="shrink to min_size")
        wait_until(lambda: count_backends(dsn, app_name) == 1, what="server-side shrink")
        assert sum(c.closed for c in conns) == 3

        # The min_size connection stays, however long it is idle.
        with pool.connection() as conn:
            survivor = backend_pid(conn)
        time.sleep(max_idle * 3)
        assert pool.get_stats()["pool_size"] == 1
        with pool.connection() as conn:
            assert backend_pid(conn) == survivor


def test_busy_connections_above_min_size_are_kept(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=2, max_idle=0.3, open=True) as pool:
        conns = borrow_all(pool)
        # Lent for longer than max_idle: being lent is not being idle.
        time.sleep(0.6)
        assert pool.get_stats()["pool_size"] == 2
        give_back(pool, conns)
        assert all(not c.closed for c in conns)


def test_close_while_connections_are_being_opened_leaks_nothing(dsn: str, app_name: str) -> None:
    def slow_configure(conn: psycopg.Connection[Any]) -> None:
        time.sleep(0.3)

    pool = ConnectionPool(
        dsn,
        min_size=4,
        configure=slow_configure,
        open=True,
        kwargs={"application_name": app_name},
    )
    wait_until(lambda: count_backends(dsn, app_name) > 0, what="connections being opened")
    pool.close()
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="every connection closed")
    assert pool.get_stats()["pool_size"] == 0


def test_pool_dropped_without_close_releases_connections(dsn: str, app_name: str) -> None:
    pool = ConnectionPool(dsn, min_size=2, open=True, kwargs={"application_name": app_name})
    pool.wait()
    assert count_backends(dsn, app_name) == 2
    del pool
    gc.collect()
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="connections closed")


# ---- lifetime and drain -----------------------------------------------------


def test_expired_connection_is_never_handed_out(dsn: str) -> None:
    max_lifetime = 0.3
    with ConnectionPool(dsn, min_size=2, max_lifetime=max_lifetime, open=True) as pool:
        pool.wait()
        # Upper bound of each connection's creation time: when first seen.
        first_seen: dict[int, float] = {}
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            asked_at = time.monotonic()
            with pool.connection(timeout=DEADLINE) as conn:
                pid = backend_pid(conn)
                born_by = first_seen.setdefault(pid, time.monotonic())
                # Handed out after asked_at, created before born_by.
                assert asked_at - born_by < max_lifetime, f"pid {pid} handed out expired"
            time.sleep(0.02)
        assert len(first_seen) >= 3, "connections were renewed"


def test_expired_idle_connection_is_replaced(dsn: str, app_name: str) -> None:
    with ConnectionPool(
        dsn, min_size=1, max_lifetime=0.3, open=True, kwargs={"application_name": app_name}
    ) as pool:
        with pool.connection() as first:
            pid = backend_pid(first)
        time.sleep(0.6)
        with pool.connection(timeout=DEADLINE) as conn:
            assert conn is not first
            assert backend_pid(conn) != pid
        wait_until(lambda: first.closed, what="the expired connection closed")
        wait_until(lambda: count_backends(dsn, app_name) == 1, what="one server connection")


def test_expiry_checked_at_return(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_lifetime=0.3, open=True) as pool:
        conn = pool.getconn()
        pid = backend_pid(conn)
        time.sleep(0.6)
        pool.putconn(conn)
        # Closed on the way back, never parked in the pool.
        assert conn.closed
        with pool.connection(timeout=DEADLINE) as fresh:
            assert backend_pid(fresh) != pid
        wait_until(lambda: pool.get_stats()["pool_size"] == 1, what="size back to 1")


def test_drain_replaces_every_connection(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=3, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait()
        conns = borrow_all(pool)
        old = {backend_pid(c) for c in conns}
        in_use, idle = conns[0], conns[1:]
        give_back(pool, idle)

        pool.drain()
        assert all(c.closed for c in idle)
        assert not in_use.closed, "a lent connection is left to its borrower"
        assert in_use.execute("select 1").fetchone() == (1,)
        in_use.rollback()
        wait_until(lambda: pool.get_stats()["pool_available"] == 2, what="idle replaced")

        pool.putconn(in_use)
        assert in_use.closed, "replaced when returned"
        wait_until(lambda: pool.get_stats()["pool_available"] == 3, what="all replaced")
        conns = borrow_all(pool)
        assert {backend_pid(c) for c in conns}.isdisjoint(old)
        give_back(pool, conns)
        wait_until(lambda: count_backends(dsn, app_name) == 3, what="3 server connections")


# ---- resize and check -------------------------------------------------------


def test_resize_up_and_down(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait()
        pool.resize(3, 5)
        assert (pool.min_size, pool.max_size) == (3, 5)
        stats = pool.get_stats()
        assert (stats["pool_min"], stats["pool_max"]) == (3, 5)
        wait_until(lambda: pool.get_stats()["pool_available"] == 3, what="grown to 3")
        assert count_backends(dsn, app_name) == 3

        pool.resize(1)
        assert (pool.min_size, pool.max_size) == (1, 1)
        assert pool.get_stats()["pool_size"] == 1
        wait_until(lambda: count_backends(dsn, app_name) == 1, what="shrunk to 1")
        with pool.connection() as conn:
            assert conn.execute("select 1").fetchone() == (1,)


def test_resize_down_while_lent(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=3, open=True) as pool:
        pool.wait()
        conns = borrow_all(pool)
        pool.resize(1)
        give_back(pool, conns)
        # Surplus connections closed as they come back.
        assert sum(c.closed for c in conns) == 2
        stats = pool.get_stats()
        assert stats["pool_size"] == stats["pool_available"] == 1
        # Only one connection now: a second concurrent borrower waits.
        with pytest.raises(PoolTimeout), pool.connection(), pool.connection(timeout=0.2):
            pass


def test_check_replaces_terminated_connection(dsn: str) -> None:
    """pg_terminate_backend sends 57P01, the same error as a server
    shutdown: the pool treats it as the server going away and retires every
    connection opened before it, not only the one that failed."""
    with ConnectionPool(dsn, min_size=2, open=True) as pool:
        pool.wait()
        conns = borrow_all(pool)
        old_pids = {backend_pid(c) for c in conns}
        dead = next(iter(old_pids))
        give_back(pool, conns)
        terminate_backend(dsn, dead)

        pool.check()
        stats = pool.get_stats()
        assert stats["connections_lost"] == 1
        assert stats["failovers"] == 1
        wait_until(lambda: pool.get_stats()["pool_available"] == 2, what="replacements")
        conns = borrow_all(pool)
        pids = {backend_pid(c) for c in conns}
        give_back(pool, conns)
        assert not pids & old_pids, "every connection opened before 57P01 is replaced"
        assert pool.get_stats()["pool_size"] == 2


def test_check_keeps_healthy_connections_after_an_unrelated_failure(dsn: str) -> None:
    """A connection that fails its check for a reason that is not the server
    going away is replaced alone: its healthy siblings stay."""
    with ConnectionPool(dsn, min_size=2, open=True) as pool:
        pool.wait()
        conns = borrow_all(pool)
        broken, healthy = conns
        alive = backend_pid(healthy)
        broken.close()  # closed on the client side: no server event
        give_back(pool, conns)
        pool.check()
        wait_until(lambda: pool.get_stats()["pool_available"] == 2, what="replacement")
        conns = borrow_all(pool)
        pids = {backend_pid(c) for c in conns}
        give_back(pool, conns)
        assert alive in pids, "the healthy connection is kept"
        assert pool.get_stats()["failovers"] == 0


def test_interrupted_check_loses_no_connection(dsn: str) -> None:
    """Ctrl-C during pool.check(): the connections not checked yet stay usable."""

    class InterruptedPool(ConnectionPool[Any]):
        interrupt = False

        @staticmethod
        def check_connection(conn: psycopg.Connection[Any]) -> None:
            if InterruptedPool.interrupt:
                raise KeyboardInterrupt
            ConnectionPool.check_connection(conn)

    with InterruptedPool(dsn, min_size=3, open=True) as pool:
        pool.wait()
        InterruptedPool.interrupt = True
        with pytest.raises(KeyboardInterrupt):
            pool.check()
        InterruptedPool.interrupt = False
        wait_until(lambda: pool.get_stats()["pool_available"] == 3, what="3 available")
        give_back(pool, borrow_all(pool))


# ---- unreachable server, outage and recovery --------------------------------


def unreachable_conninfo() -> str:
    # Nothing listens there: connections are refused at once.
    return f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres connect_timeout=2"


def test_wait_names_last_connection_error(dsn: str) -> None:
    pool = ConnectionPool(unreachable_conninfo(), min_size=1, open=True)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout, match="Connection refused") as info:
        pool.wait(timeout=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert "0.5" in str(info.value)
    assert pool.closed, "wait() closes a pool that did not fill"


def test_getconn_timeout_names_last_connection_error() -> None:
    with ConnectionPool(unreachable_conninfo(), min_size=1, open=True) as pool:
        with pytest.raises(PoolTimeout, match="Connection refused"):
            pool.getconn(timeout=0.5)
        assert pool.get_stats()["connections_errors"] > 0


def test_reconnect_failed_called_after_reconnect_timeout() -> None:
    calls: list[tuple[ConnectionPool[Any], float]] = []
    pool = ConnectionPool(
        unreachable_conninfo(),
        min_size=1,
        reconnect_timeout=0.5,
        reconnect_failed=lambda p: calls.append((p, time.monotonic())),
        open=False,
    )
    opened_at = time.monotonic()
    pool.open()
    try:
        wait_until(lambda: calls, what="reconnect_failed")
        called_with, called_at = calls[0]
        assert called_with is pool
        assert called_at - opened_at >= 0.5
    finally:
        pool.close()


def test_failing_reconnect_failed_callback_does_not_stop_the_pool(dsn: str) -> None:
    """The pool keeps trying after giving up once, so it recovers later."""
    calls: list[float] = []
    target = {"conninfo": unreachable_conninfo()}

    def reconnect_failed(pool: ConnectionPool[Any]) -> None:
        calls.append(time.monotonic())
        target["conninfo"] = dsn  # the "server" is reachable from now on
        raise RuntimeError("alerting is down too")

    with ConnectionPool(
        lambda: target["conninfo"],
        min_size=1,
        reconnect_timeout=0.3,
        reconnect_failed=reconnect_failed,
        open=True,
    ) as pool:
        pool.wait(timeout=DEADLINE)
        assert calls
        with pool.connection() as conn:
            assert conn.execute("select 1").fetchone() == (1,)


def test_server_restart_pool_refills(stoppable_server: EmbeddedPostgres, app_name: str) -> None:
    server = stoppable_server
    with ConnectionPool(
        server.dsn, min_size=2, open=True, kwargs={"application_name": app_name}
    ) as pool:
        pool.wait()
        conns = borrow_all(pool)
        old = {backend_pid(c) for c in conns}
        give_back(pool, conns)

        server.stop()
        pool.check()  # finds both broken; replacements fail while down
        assert pool.get_stats()["connections_lost"] == 2
        wait_until(lambda: pool.get_stats()["connections_errors"] > 0, what="failed attempts")
        with pytest.raises(PoolTimeout, match="last connection error"):
            pool.getconn(timeout=0.3)

        # A client that asks during the outage is served once it ends.
        served: list[int] = []
        threads = Threads()

        def client() -> None:
            with pool.connection(timeout=60) as conn:
                served.append(backend_pid(conn))

        threads.start(client)
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="a waiter")

        server.start()
        threads.join()
        assert len(served) == 1
        wait_until(lambda: pool.get_stats()["pool_available"] == 2, what="refilled")
        conns = borrow_all(pool)
        assert {backend_pid(c) for c in conns}.isdisjoint(old)
        give_back(pool, conns)
        assert count_backends(server.dsn, app_name) == 2


def test_pool_opened_during_outage_fills_when_server_starts(
    stoppable_server: EmbeddedPostgres,
) -> None:
    server = stoppable_server
    server.stop()
    with ConnectionPool(server.dsn, min_size=2, open=True) as pool:
        wait_until(lambda: pool.get_stats()["connections_errors"] > 0, what="failed attempts")
        server.start()
        pool.wait(timeout=DEADLINE)
        assert pool.get_stats()["pool_available"] == 2


# ---- callbacks --------------------------------------------------------------


def test_configure_runs_once_per_connection(dsn: str) -> None:
    configured: list[int] = []

    def configure(conn: psycopg.Connection[Any]) -> None:
        configured.append(id(conn))
        # `with conn:` commits; it must not close a connection being pooled.
        with conn:
            conn.execute("set timezone = 'Asia/Tokyo'")

    with ConnectionPool(dsn, min_size=2, configure=configure, open=True) as pool:
        pool.wait()
        for _ in range(5):
            with pool.connection() as conn:
                assert conn.execute("show timezone").fetchone() == ("Asia/Tokyo",)
        assert len(configured) == 2
        assert len(set(configured)) == 2
        pool.drain()
        wait_until(lambda: pool.get_stats()["pool_available"] == 2, what="replacements")
        assert len(configured) == 4


def test_configure_leaving_transaction_open_discards_connection(dsn: str, app_name: str) -> None:
    calls: list[int] = []

    lock = threading.Lock()

    def configure(conn: psycopg.Connection[Any]) -> None:
        # Workers configure concurrently: number the calls atomically.
        with lock:
            calls.append(1)
            first = len(calls) == 1
        conn.execute("select 1")  # opens a transaction...
        if not first:
            conn.commit()  # ...which only the first call forgets

    with ConnectionPool(
        dsn,
        min_size=2,
        configure=configure,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        assert len(calls) == 3
        conns = borrow_all(pool)
        assert all(c.pgconn.transaction_status == TransactionStatus.IDLE for c in conns)
        give_back(pool, conns)
        wait_until(lambda: count_backends(dsn, app_name) == 2, what="the bad one closed")


def test_configure_always_failing_names_the_reason(dsn: str, app_name: str) -> None:
    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.execute("select 1")

    pool = ConnectionPool(
        dsn,
        min_size=1,
        configure=configure,
        open=True,
        kwargs={"application_name": app_name},
    )
    with pytest.raises(PoolTimeout, match="INTRANS"):
        pool.wait(timeout=0.5)
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="no connection leaked")


def test_conninfo_and_kwargs_callables_evaluated_at_each_connect(dsn: str, app_name: str) -> None:
    conninfo_calls: list[int] = []
    kwargs_calls: list[int] = []

    def conninfo() -> str:
        conninfo_calls.append(1)
        return dsn

    lock = threading.Lock()

    def kwargs() -> dict[str, Any]:
        # Workers connect concurrently: number the calls atomically.
        with lock:
            kwargs_calls.append(1)
            n = len(kwargs_calls)
        return {"application_name": f"{app_name}-{n}"}

    with ConnectionPool(conninfo, kwargs=kwargs, min_size=2, open=True) as pool:
        pool.wait()
        assert len(conninfo_calls) == len(kwargs_calls) == 2
        pool.drain()
        wait_until(lambda: pool.get_stats()["pool_available"] == 2, what="replacements")
        assert len(conninfo_calls) == len(kwargs_calls) == 4
        assert pool.get_stats()["connections_num"] == 4
        conns = borrow_all(pool)
        names = {c.execute("show application_name").fetchone() for c in conns}
        for c in conns:
            c.rollback()
        give_back(pool, conns)
        # Fresh values, from the latest calls.
        assert names == {(f"{app_name}-3",), (f"{app_name}-4",)}


def test_reset_runs_on_return(dsn: str) -> None:
    resets: list[int] = []

    def reset(conn: psycopg.Connection[Any]) -> None:
        resets.append(id(conn))
        conn.execute("reset timezone")
        conn.commit()

    with ConnectionPool(dsn, min_size=1, reset=reset, open=True) as pool:
        with pool.connection() as conn:
            default = conn.execute("show timezone").fetchone()
            conn.execute("set timezone = 'Asia/Tokyo'")
        with pool.connection() as again:
            assert again is conn
            assert again.execute("show timezone").fetchone() == default
        assert resets == [id(conn), id(conn)]


@pytest.mark.parametrize("failure", ["raises", "leaves_transaction"])
def test_failing_reset_discards_connection(dsn: str, app_name: str, failure: str) -> None:
    def reset(conn: psycopg.Connection[Any]) -> None:
        if failure == "raises":
            raise RuntimeError("cannot reset")
        conn.execute("select 1")

    with ConnectionPool(
        dsn, min_size=1, reset=reset, open=True, kwargs={"application_name": app_name}
    ) as pool:
        conn = pool.getconn()
        pid = backend_pid(conn)
        pool.putconn(conn)
        assert conn.closed
        assert pool.get_stats()["returns_bad"] == 1
        with pool.connection(timeout=DEADLINE) as fresh:
            assert backend_pid(fresh) != pid
        wait_until(lambda: count_backends(dsn, app_name) == 1, what="one server connection")


def test_check_at_checkout_discards_broken_connection(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=2, check=ConnectionPool.check_connection, open=True) as pool:
        pool.wait()
        dead_conn, held = borrow_all(pool)
        dead = backend_pid(dead_conn)
        pool.putconn(dead_conn)
        terminate_backend(dsn, dead)
        # The only idle connection is dead: the check finds it out and the
        # borrower gets its replacement instead.
        with pool.connection(timeout=DEADLINE) as conn:
            assert conn is not dead_conn
            assert backend_pid(conn) != dead
        assert dead_conn.closed
        assert pool.get_stats()["connections_lost"] == 1
        pool.putconn(held)


def test_check_callback_sees_every_checkout(dsn: str) -> None:
    checked: list[int] = []
    with ConnectionPool(dsn, min_size=1, check=lambda c: checked.append(id(c)), open=True) as pool:
        for _ in range(3):
            with pool.connection() as conn:
                pass
        assert checked == [id(conn)] * 3


def test_interrupted_check_callback_loses_no_connection(dsn: str) -> None:
    interrupt = [True]

    def check(conn: psycopg.Connection[Any]) -> None:
        if interrupt[0]:
            raise KeyboardInterrupt

    with ConnectionPool(dsn, min_size=1, check=check, open=True) as pool:
        pool.wait()
        with pytest.raises(KeyboardInterrupt):
            pool.getconn()
        interrupt[0] = False
        assert pool.get_stats()["pool_available"] == 1
        with pool.connection(timeout=1) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


def test_interrupted_check_closes_expired_connection(dsn: str, app_name: str) -> None:
    """A check interrupted after the connection expired must not leak it."""
    checked: list[psycopg.Connection[Any]] = []

    def check(conn: psycopg.Connection[Any]) -> None:
        checked.append(conn)
        time.sleep(0.6)  # slow check: the connection expires meanwhile
        raise KeyboardInterrupt

    with ConnectionPool(
        dsn,
        min_size=1,
        check=check,
        max_lifetime=0.3,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait()
        with pytest.raises(KeyboardInterrupt):
            pool.getconn()
        # Either back in the pool or closed; here expired, so closed.
        wait_until(lambda: checked[0].closed, timeout=2, what="the expired connection closed")
        wait_until(lambda: count_backends(dsn, app_name) <= 1, what="nothing leaked")


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
