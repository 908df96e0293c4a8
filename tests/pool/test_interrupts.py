"""Ctrl-C in the sync pools: KeyboardInterrupt never loses a connection.

Sync only, and not generated from an async source: Python delivers
KeyboardInterrupt to the main thread, wherever it is blocked (waiting in
getconn(), inside a check callback). The async pools' counterpart, a task
cancelled at any await, is test_cancel.py.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ferropool import ConnectionPool, PoolTimeout
from tests.fixtures.helpers import (
    DEADLINE,
    Threads,
    borrow_all,
    count_backends,
    give_back,
    wait_until,
)
from tests.fixtures.safety import fork_and_run


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


class _Interrupted(Exception):
    """What the tests' SIGINT handler raises."""


@contextlib.contextmanager
def _sigint_raises() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_grant_landing_just_after_ctrl_c_goes_back_to_the_pool(dsn: str) -> None:
    """SIGINT reaches the main thread while it waits, and a connection is
    returned 5 ms later, before the wait looked for signals: the handler's
    exception is raised from the wait, and the connection granted meanwhile
    goes back to the pool (it used to come out of the wait, and the
    exception raised right after lost it, every time)."""
    main = threading.get_ident()
    with ConnectionPool(dsn, min_size=1, open=True) as pool, _sigint_raises():
        pool.wait(DEADLINE)
        for _ in range(20):
            held = pool.getconn()

            def interrupt_then_return(held: Any = held) -> None:
                wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="queued")
                signal.pthread_kill(main, signal.SIGINT)
                time.sleep(0.005)
                pool.putconn(held)

            helper = Threads()
            helper.start(interrupt_then_return)
            with pytest.raises(_Interrupted):
                pool.getconn(timeout=60)
            helper.join(DEADLINE)
            stats = pool.get_stats()
            assert (stats["pool_size"], stats["pool_available"]) == (1, 1), "a connection was lost"
        with pool.connection(timeout=1) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


def test_ctrl_c_is_heard_at_once_in_a_child_forked_from_another_thread(dsn: str) -> None:
    """After fork() from a non-main thread, that thread is the child's main
    thread: its waits look for signals every 50 ms, not every 5 s (the main
    thread used to be remembered across fork)."""
    with ConnectionPool(dsn, min_size=0, max_size=1, open=True) as pool:
        # A wait on the main thread first, as a program would have done.
        held = pool.getconn()
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.01)
        pool.putconn(held)

        def child() -> dict[str, Any]:
            honoured = threading.Event()
            first: list[bool] = []
            main = threading.get_ident()
            with _sigint_raises():
                held = pool.getconn(timeout=DEADLINE)

                def interrupt() -> None:
                    wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="queued")
                    signal.pthread_kill(main, signal.SIGINT)
                    # Heard before the connection comes back 3 s later?
                    first.append(honoured.wait(3.0))
                    pool.putconn(held)

                helper = threading.Thread(target=interrupt, daemon=True)
                helper.start()
                try:
                    pool.getconn(timeout=30)
                    outcome = "served"
                except _Interrupted:
                    outcome = "interrupted"
                    honoured.set()
                helper.join(DEADLINE)
            stats = pool.get_stats()
            return {
                "outcome": outcome,
                "heard_before_the_return": first == [True],
                "kept": [stats["pool_size"], stats["pool_available"]],
            }

        results: list[Any] = []
        forker = threading.Thread(target=lambda: results.append(fork_and_run(child)))
        forker.start()
        forker.join(60)
    assert results == [{"outcome": "interrupted", "heard_before_the_return": True, "kept": [1, 1]}]
