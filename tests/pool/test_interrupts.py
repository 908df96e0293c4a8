"""Ctrl-C in the sync pools: KeyboardInterrupt never loses a connection.

Sync only, and not generated from an async source: Python delivers
KeyboardInterrupt to the main thread, wherever it is blocked (waiting in
getconn(), inside a check callback). The async pools' counterpart, a task
cancelled at any await, is test_cancel.py.
"""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ferropool import ConnectionPool
from tests.fixtures.helpers import (
    DEADLINE,
    Threads,
    borrow_all,
    count_backends,
    give_back,
    wait_until,
)


@pytest.fixture
def python_sigint_handler() -> Iterator[None]:
    """Python's own SIGINT handler for the test: _thread.interrupt_main()
    does nothing while SIGINT is ignored, and it is ignored in a Python
    started in the background by a non-interactive shell (`pytest ... &` in
    a script, as CI runners and timing scripts do): there the interrupt
    never came and getconn() waited its whole 60 s."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint_handler")
def test_keyboard_interrupt_while_waiting_loses_nothing(dsn: str) -> None:
    """Ctrl-C in a waiting main thread; the next waiter still gets served."""
    with ConnectionPool(dsn, min_size=1, open=False) as pool:
        held = pool.getconn()
        threads = Threads()
        behind: list[psycopg.Connection] = []

        def queue_behind_then_interrupt() -> None:
            wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="main queued")
            threads.start(lambda: behind.append(pool.getconn(timeout=60)))
            wait_until(lambda: pool.get_stats()["requests_waiting"] == 2, what="2nd queued")
            _thread.interrupt_main()

        helper = threading.Thread(target=queue_behind_then_interrupt, daemon=True)
        helper.start()
        # Interrupted, not timed out: a PoolTimeout would fail this.
        with pytest.raises(KeyboardInterrupt):
            pool.getconn(timeout=60)
        helper.join(DEADLINE)
        # The interrupted request left the queue; the one behind it remains.
        assert pool.get_stats()["requests_waiting"] == 1
        pool.putconn(held)
        threads.join(DEADLINE)
        assert behind == [held]
        pool.putconn(behind[0])
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (1, 1)
        with pool.connection(timeout=1) as conn:
            assert conn is held


def test_interrupted_check_loses_no_connection(dsn: str) -> None:
    """Ctrl-C during pool.check(): the connections not checked yet stay usable."""

    class InterruptedPool(ConnectionPool[Any]):
        interrupt = False

        @staticmethod
        def check_connection(conn: psycopg.Connection[Any]) -> None:
            if InterruptedPool.interrupt:
                raise KeyboardInterrupt
            ConnectionPool.check_connection(conn)

    with InterruptedPool(dsn, min_size=3, open=False) as pool:
        pool.wait()
        InterruptedPool.interrupt = True
        with pytest.raises(KeyboardInterrupt):
            pool.check()
        InterruptedPool.interrupt = False
        wait_until(lambda: pool.get_stats()["pool_available"] == 3, what="3 available")
        give_back(pool, borrow_all(pool))


def test_interrupted_check_callback_loses_no_connection(dsn: str) -> None:
    interrupt = [True]

    def check(conn: psycopg.Connection[Any]) -> None:
        if interrupt[0]:
            raise KeyboardInterrupt

    with ConnectionPool(dsn, min_size=1, check=check, open=False) as pool:
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
        open=False,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait()
        with pytest.raises(KeyboardInterrupt):
            pool.getconn()
        # Either back in the pool or closed; here expired, so closed.
        wait_until(lambda: checked[0].closed, timeout=2, what="the expired connection closed")
        wait_until(lambda: count_backends(dsn, app_name) <= 1, what="nothing leaked")
