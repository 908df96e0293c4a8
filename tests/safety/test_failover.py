"""Failover awareness: an error meaning the server went away or changed role
retires every connection opened before it, once per event.

SQLSTATE class 08, 57P01-57P03 (pg_terminate_backend sends 57P01), and
25006 (read-only transaction) on a pool created with expect_primary=True,
seen by a `with pool.connection()` block, a validation ping or check().
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import errors as e
from psycopg.conninfo import conninfo_to_dict

from ferropool import ConnectionPool
from ferropool.embedded import free_port
from tests.fixtures.helpers import (
    DEADLINE,
    Threads,
    backend_pid,
    count_backends,
    terminate_backend,
    wait_until,
)
from tests.fixtures.safety import backend_pids, pool_pids, run_requests, terminate_all, with_params


def settled(pool: ConnectionPool[Any], size: int) -> bool:
    stats = pool.get_stats()
    return stats["pool_size"] == stats["pool_available"] == size


def test_shutdown_error_in_a_block_retires_every_connection_once(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=3, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        old = pool_pids(pool)

        with pytest.raises(e.AdminShutdown), pool.connection() as conn:
            terminate_backend(dsn, backend_pid(conn))
            conn.execute("select 1")

        stats = pool.get_stats()
        assert stats["failovers"] == 1
        assert stats["connections_lost"] == 1, "the failing connection"
        assert stats["connections_retired"] == 2, "its idle siblings, still healthy"
        wait_until(lambda: settled(pool, 3), what="replacements")
        assert pool_pids(pool).isdisjoint(old)
        assert count_backends(dsn, app_name) == 3
        assert pool.get_stats()["failovers"] == 1


def test_one_server_event_seen_by_several_borrowers_drains_once(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=3, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        old = pool_pids(pool)
        all_in = threading.Barrier(3, timeout=DEADLINE)
        terminated = threading.Event()
        errors: list[str] = []

        def borrower() -> None:
            try:
                with pool.connection(timeout=DEADLINE) as conn:
                    all_in.wait()
                    assert terminated.wait(DEADLINE)
                    conn.execute("select 1")
            except psycopg.Error as ex:
                errors.append(ex.sqlstate or "")

        threads = Threads()
        for _ in range(3):
            threads.start(borrower)
        wait_until(lambda: pool.get_stats()["pool_available"] == 0, what="all lent")
        terminate_all(dsn, app_name)
        terminated.set()
        threads.join()

        assert errors == ["57P01"] * 3
        assert pool.get_stats()["failovers"] == 1, "one event, one drain"
        wait_until(lambda: settled(pool, 3), what="replacements")
        fresh = pool_pids(pool)
        assert fresh.isdisjoint(old)
        # The replacements were not drained by the later errors.
        assert pool.get_stats()["connections_num"] == 6

        # A new event later is a new failover.
        with pytest.raises(e.AdminShutdown), pool.connection() as conn:
            terminate_backend(dsn, backend_pid(conn))
            conn.execute("select 1")
        assert pool.get_stats()["failovers"] == 2


def test_check_seeing_a_shutdown_error_retires_every_connection(dsn: str, app_name: str) -> None:
    with ConnectionPool(
        dsn,
        min_size=3,
        open=True,
        liveness_bypass=None,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        old = pool_pids(pool)
        terminate_backend(dsn, min(old))

        pool.check()

        assert pool.get_stats()["failovers"] == 1
        wait_until(lambda: settled(pool, 3), what="replacements")
        assert pool_pids(pool).isdisjoint(old)


def test_ordinary_errors_are_not_failovers(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=2, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        old = pool_pids(pool)
        with pytest.raises(e.UndefinedTable), pool.connection() as conn:
            conn.execute("select * from no_such_table")
        with pytest.raises(e.QueryCanceled), pool.connection() as conn:
            conn.execute("set statement_timeout = 10")
            conn.execute("select pg_sleep(1)")
        assert pool.get_stats()["failovers"] == 0
        assert pool_pids(pool) == old


# ---- multi-host conninfo --------------------------------------------------------


def test_multi_host_conninfo_with_target_session_attrs(dsn: str, app_name: str) -> None:
    params = conninfo_to_dict(dsn)
    live_port = int(params.get("port", 5432))
    dead_port = free_port()
    conninfo = with_params(
        dsn,
        host="127.0.0.1,127.0.0.1",
        port=f"{dead_port},{live_port}",
        target_session_attrs="read-write",
    )
    with ConnectionPool(
        conninfo, min_size=2, open=True, kwargs={"application_name": app_name}
    ) as pool:
        pool.wait(timeout=DEADLINE)
        with pool.connection() as conn:
            assert conn.info.port == live_port
            assert conn.execute("show transaction_read_only").fetchone() == ("off",)
        old = pool_pids(pool)

        # The server drops every session: the pool reconnects through the
        # same host list and keeps serving. (Idle past liveness_bypass first:
        # the just-used case is test_safety_liveness's.)
        time.sleep(0.7)
        terminate_all(dsn, app_name)
        assert run_requests(pool, 20) == []
        wait_until(lambda: settled(pool, 2), what="replacements")
        assert pool_pids(pool).isdisjoint(old)
        with pool.connection() as conn:
            assert conn.info.port == live_port


# ---- expect_primary and 25006 ------------------------------------------------------


@pytest.mark.parametrize("expect_primary", [True, False])
def test_read_only_error_is_a_failover_only_with_expect_primary(
    dsn: str, app_name: str, expect_primary: bool
) -> None:
    with ConnectionPool(
        dsn,
        min_size=2,
        open=True,
        expect_primary=expect_primary,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        old = pool_pids(pool)

        with pytest.raises(e.ReadOnlySqlTransaction), pool.connection() as conn:
            conn.autocommit = True
            # A session that behaves like a standby for writes.
            conn.execute("set default_transaction_read_only = on")
            conn.execute("create table fp_failover_probe (x int)")

        stats = pool.get_stats()
        if expect_primary:
            assert stats["failovers"] == 1
            wait_until(lambda: settled(pool, 2), what="replacements")
            assert pool_pids(pool).isdisjoint(old)
        else:
            assert stats["failovers"] == 0
            assert stats["connections_lost"] == 0
            assert pool_pids(pool) == old
        assert backend_pids(dsn, app_name) == pool_pids(pool)
