"""Leak detection: leases held past leak_timeout are reported once, with the
stack of the code that took them; connections dropped by their borrower
without being returned are reclaimed.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import psycopg
import pytest

from ferropool import ConnectionPool
from tests.fixtures.fault_proxy import fault_proxy
from tests.fixtures.helpers import DEADLINE, backend_pid, count_backends, wait_until

LEAK_TIMEOUT = 0.3


def leak_reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "ferropool" and r.levelno == logging.WARNING and "held for" in r.getMessage()
    ]


def reclaim_reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "garbage-collected" in r.getMessage()]


def take_a_connection_and_forget_it(pool: ConnectionPool[Any]) -> psycopg.Connection[Any]:
    """The call site a leak report must point at."""
    return pool.getconn(timeout=DEADLINE)


def test_lease_held_past_leak_timeout_is_reported_once_with_its_stack(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    with ConnectionPool(dsn, min_size=1, open=True, leak_timeout=LEAK_TIMEOUT) as pool:
        assert pool.leak_timeout == LEAK_TIMEOUT
        conn = take_a_connection_and_forget_it(pool)
        wait_until(lambda: leak_reports(caplog), what="a leak report")
        [report] = leak_reports(caplog)
        text = report.getMessage()
        assert "take_a_connection_and_forget_it" in text
        assert "test_lease_held_past_leak_timeout_is_reported_once_with_its_stack" in text
        assert pool.get_stats()["leaks_detected"] == 1

        # Held much longer: still one report.
        time.sleep(4 * LEAK_TIMEOUT)
        assert len(leak_reports(caplog)) == 1
        assert pool.get_stats()["leaks_detected"] == 1

        # Reported, not taken away: the borrower can still use and return it.
        assert conn.execute("select 1").fetchone() == (1,)
        pool.putconn(conn)
        stats = pool.get_stats()
        assert stats["pool_available"] == 1
        assert stats["leaks_reclaimed"] == 0


def test_each_new_lease_is_reported_again(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    with ConnectionPool(dsn, min_size=1, open=True, leak_timeout=LEAK_TIMEOUT) as pool:
        for n in (1, 2):
            conn = pool.getconn(timeout=DEADLINE)
            wait_until(
                lambda n=n: len(leak_reports(caplog)) == n,
                timeout=5,
                what=f"leak report {n} (leak_timeout {LEAK_TIMEOUT} s)",
            )
            pool.putconn(conn)
        assert pool.get_stats()["leaks_detected"] == 2


def test_leases_returned_in_time_are_not_reported(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    with ConnectionPool(dsn, min_size=2, open=True, leak_timeout=LEAK_TIMEOUT) as pool:
        for _ in range(20):
            with pool.connection() as conn:
                conn.execute("select 1")
        with pool.connection():
            time.sleep(LEAK_TIMEOUT / 3)
        time.sleep(3 * LEAK_TIMEOUT)
        assert pool.get_stats()["leaks_detected"] == 0
        assert leak_reports(caplog) == []


def test_connection_dropped_without_putconn_is_reclaimed(
    dsn: str, app_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    with ConnectionPool(
        dsn,
        min_size=1,
        max_size=1,
        open=True,
        leak_timeout=LEAK_TIMEOUT,
        kwargs={"application_name": app_name},
    ) as pool:
        conn = take_a_connection_and_forget_it(pool)
        lost_pid = backend_pid(conn)
        del conn
        gc.collect()

        wait_until(lambda: pool.get_stats()["leaks_reclaimed"] == 1, what="reclaimed")
        wait_until(lambda: pool.get_stats()["pool_available"] == 1, what="capacity back")
        assert len(reclaim_reports(caplog)) == 1
        stats = pool.get_stats()
        assert stats["leaks_detected"] == 1
        assert stats["pool_size"] == 1
        # The only slot is usable again, by a fresh connection: the lost one
        # was closed (its state is unknown).
        with pool.connection(timeout=DEADLINE) as conn:
            assert backend_pid(conn) != lost_pid
        assert count_backends(dsn, app_name) == 1


def test_connection_dropped_after_its_leak_report_is_reclaimed(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A borrower that loses its connection late (after the leak report)
    must not shrink the pool for good either."""
    caplog.set_level(logging.WARNING, logger="ferropool")
    with ConnectionPool(dsn, min_size=1, max_size=1, open=True, leak_timeout=LEAK_TIMEOUT) as pool:
        conn = take_a_connection_and_forget_it(pool)
        wait_until(lambda: pool.get_stats()["leaks_detected"] == 1, what="leak report")
        del conn
        gc.collect()

        wait_until(
            lambda: pool.get_stats()["leaks_reclaimed"] == 1,
            timeout=5,
            what="the dropped connection reclaimed",
        )
        with pool.connection(timeout=DEADLINE) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


def test_connection_still_referenced_is_not_reclaimed(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=1, open=True, leak_timeout=LEAK_TIMEOUT) as pool:
        holder = {"conn": pool.getconn(timeout=DEADLINE)}
        wait_until(lambda: pool.get_stats()["leaks_detected"] == 1, what="leak report")
        time.sleep(2 * LEAK_TIMEOUT)
        assert pool.get_stats()["leaks_reclaimed"] == 0
        conn = holder.pop("conn")
        assert conn.execute("select 1").fetchone() == (1,)
        pool.putconn(conn)
        assert pool.get_stats()["pool_available"] == 1


def test_the_pools_own_validation_pings_are_not_leaks(dsn: str) -> None:
    """A keepalive ping held up by a half-open connection (up to its 5 s
    deadline) is the pool's own lease, not a borrower's leak."""
    with fault_proxy(dsn) as proxy:
        through_proxy = proxy.dsn(dsn)
        with ConnectionPool(
            through_proxy, min_size=1, open=True, keepalive_interval=0.2, leak_timeout=0.5
        ) as pool:
            pool.wait(timeout=DEADLINE)
            proxy.black_hole()
            proxy.restore()  # only the open connection goes silent
            wait_until(
                lambda: pool.get_stats()["connections_lost"] == 1,
                what="the ping gives up on the half-open connection",
            )
            assert pool.get_stats()["leaks_detected"] == 0
