"""Zero-round-trip liveness: the pool never hands out a dead connection.

A connection idle longer than liveness_bypass has its socket polled at
checkout (no query); a readable or hung-up socket gets a real ping in the
background and is replaced if the ping fails, while the borrower gets
another connection or waits. The issue's acceptance tests: terminate every
backend, then 100 requests, none fails; stop and start the server, no
request started after the server is back fails.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from ferropool import ConnectionPool
from ferropool.embedded import EmbeddedPostgres
from tests.fixtures.helpers import DEADLINE, Threads, count_backends, wait_until
from tests.fixtures.safety import pool_pids, run_requests, terminate_all

# The default liveness_bypass; "idle" below means idle for longer than it.
BYPASS = 0.5


def settle_past_bypass() -> None:
    time.sleep(BYPASS + 0.2)


def wait_server_back(dsn: str) -> float:
    """Wait until a plain psycopg.connect succeeds; return that moment."""
    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return time.monotonic()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@pytest.mark.parametrize("last_use", ["idle", "just_used"])
def test_no_request_fails_after_every_backend_is_terminated(
    dsn: str, app_name: str, last_use: str
) -> None:
    with ConnectionPool(dsn, min_size=4, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        old = pool_pids(pool)
        if last_use == "idle":
            settle_past_bypass()
        assert terminate_all(dsn, app_name) == 4

        failures = run_requests(pool, 100)

        assert failures == [], f"{len(failures)} of 100 requests failed: {failures[:3]}"
        stats = pool.get_stats()
        assert stats["requests_errors"] == 0
        wait_until(lambda: pool.get_stats()["pool_available"] == 4, what="refilled")
        assert pool_pids(pool).isdisjoint(old), "every dead connection was replaced"
        assert count_backends(dsn, app_name) == 4
        if last_use == "idle":
            # Found by the socket poll, confirmed by a ping: one server event.
            assert stats["liveness_suspects"] >= 1
            assert stats["failovers"] == 1


def test_dead_connections_are_found_without_a_query(dsn: str, app_name: str) -> None:
    """The server hung up on both idle connections: the checkout finds both
    suspect without sending anything (the core's hang-up watch saw the
    FIN; the socket poll is the fallback), and waits for a fresh one."""
    with ConnectionPool(dsn, min_size=2, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        settle_past_bypass()
        terminate_all(dsn, app_name)
        with pool.connection(timeout=DEADLINE) as conn:
            conn.execute("select 1")
        stats = pool.get_stats()
        assert stats["liveness_suspects"] == 2
        assert stats["requests_queued"] == 1
        assert stats["requests_errors"] == 0


@pytest.mark.parametrize("watch", ["epoll", "poll"])
def test_a_hang_up_is_seen_without_polling_right_after_use(
    dsn: str, app_name: str, watch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections used a moment ago are not polled at checkout (within
    liveness_bypass); the hang-up watch still learns that their server hung
    up. Both backends: epoll (Linux), and the portable poll() fallback used
    on other platforms, forced here through FERROPOOL_HANGUP_WATCH (read
    when a pool is built), which looks every 250 ms."""
    monkeypatch.setenv("FERROPOOL_HANGUP_WATCH", watch)
    with ConnectionPool(
        dsn,
        min_size=2,
        liveness_bypass=60.0,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        assert run_requests(pool, 4) == []
        terminate_all(dsn, app_name)
        time.sleep(1.5)  # the fallback's period, six times over
        assert run_requests(pool, 10) == []
        stats = pool.get_stats()
        assert stats["liveness_polls"] == 0, "found without polling at checkout"
        assert stats["liveness_suspects"] == 2
        assert stats["requests_errors"] == 0


@pytest.mark.parametrize("last_use", ["idle", "just_used"])
def test_no_request_started_after_a_server_restart_fails(
    stoppable_server: EmbeddedPostgres, app_name: str, last_use: str
) -> None:
    server = stoppable_server
    with ConnectionPool(
        server.dsn, min_size=3, open=True, kwargs={"application_name": app_name}
    ) as pool:
        pool.wait(timeout=DEADLINE)
        old = pool_pids(pool)
        if last_use == "idle":
            settle_past_bypass()
        try:
            server.stop()
        finally:
            server.start()
        wait_server_back(server.dsn)

        failures = run_requests(pool, 100)

        assert failures == [], f"{len(failures)} of 100 requests failed: {failures[:3]}"
        wait_until(lambda: pool.get_stats()["pool_available"] == 3, what="refilled")
        assert pool_pids(pool).isdisjoint(old)


def test_no_request_started_after_a_server_restart_fails_under_load(
    stoppable_server: EmbeddedPostgres, app_name: str
) -> None:
    """An application keeps sending requests through the outage: those
    started once the server is back all succeed."""
    server = stoppable_server
    results: list[tuple[float, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(pool: ConnectionPool[Any]) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                with pool.connection(timeout=5) as conn:
                    conn.execute("select 1").fetchone()
                error = None
            except Exception as ex:
                error = f"{type(ex).__name__}: {ex}"
            with lock:
                results.append((started, error))
            if error:
                time.sleep(0.01)

    def started_after(moment: float) -> list[str | None]:
        with lock:
            return [error for started, error in results if started >= moment]

    with ConnectionPool(
        server.dsn, min_size=2, open=True, kwargs={"application_name": app_name}
    ) as pool:
        pool.wait(timeout=DEADLINE)
        threads = Threads()
        for _ in range(2):
            threads.start(client, pool)
        try:
            wait_until(lambda: len(started_after(0.0)) >= 20, what="traffic before the outage")
            try:
                server.stop()
                time.sleep(0.3)
            finally:
                server.start()
            back = wait_server_back(server.dsn)
            wait_until(
                lambda: len(started_after(back)) >= 100,
                timeout=30,
                what="100 requests after the restart",
            )
        finally:
            stop.set()
            threads.join()

    failures = [error for error in started_after(back) if error is not None]
    assert failures == [], f"{len(failures)} requests started after the restart failed"


def test_liveness_bypass_none_disables_polling(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=2, open=True) as pool:
        pool.wait(timeout=DEADLINE)
        settle_past_bypass()
        with pool.connection():
            pass
        polls = pool.get_stats()["liveness_polls"]
        assert polls >= 1, "on by default: an idle connection is polled at checkout"

        pool.liveness_bypass = None
        assert pool.liveness_bypass is None
        settle_past_bypass()
        for _ in range(10):
            with pool.connection():
                pass
        assert pool.get_stats()["liveness_polls"] == polls

    with ConnectionPool(dsn, min_size=2, open=True, liveness_bypass=None) as pool:
        pool.wait(timeout=DEADLINE)
        settle_past_bypass()
        for _ in range(10):
            with pool.connection():
                pass
        assert pool.liveness_bypass is None
        assert pool.get_stats()["liveness_polls"] == 0


def test_connections_reused_within_the_bypass_window_are_not_polled(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True, liveness_bypass=60.0) as pool:
        pool.wait(timeout=DEADLINE)
        for _ in range(20):
            with pool.connection():
                pass
        assert pool.get_stats()["liveness_polls"] == 0
