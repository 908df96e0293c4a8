"""Borrowing and giving back: getconn/putconn, connection(), waiting.

What a borrower sees: transactions committed or rolled back, connections
that come back dirty or broken cleaned or replaced, refused returns that
change nothing, timeouts that last at least as long as asked, a FIFO queue,
and no connection ever lost by a waiter that gave up or was interrupted.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus

from ferropool import ConnectionPool, PoolTimeout, TooManyRequests
from tests.fixtures.helpers import (
    DEADLINE,
    Threads,
    backend_pid,
    count_backends,
    terminate_backend,
    wait_until,
)
from tests.fixtures.safety import fork_and_run


@pytest.fixture
def table(dsn: str) -> Iterator[sql.Identifier]:
    """A fresh table, to observe commits from outside the pool."""
    name = sql.Identifier(f"borrow_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create table {} (x int)").format(name))
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop table {}").format(name))


def rows(dsn: str, table: sql.Identifier) -> list[int]:
    """The table's committed content, read on a connection of our own."""
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(sql.SQL("select x from {} order by x").format(table))
        return [r[0] for r in cur]


# ---- getconn / putconn / connection() ---------------------------------------


def test_getconn_putconn(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=2, open=True) as pool:
        pool.wait()
        conn = pool.getconn()
        assert conn.execute("select 1").fetchone() == (1,)
        conn.rollback()
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (2, 1)
        pool.putconn(conn)
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (2, 2)
        assert stats["requests_num"] == 1
        assert not conn.closed


def test_connection_commits_on_success(dsn: str, table: sql.Identifier) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        with pool.connection() as conn:
            conn.execute(sql.SQL("insert into {} values (1)").format(table))
        assert rows(dsn, table) == [1]
        assert not conn.closed
        assert conn.pgconn.transaction_status == TransactionStatus.IDLE


def test_connection_rolls_back_on_exception(dsn: str, table: sql.Identifier) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        with pytest.raises(ZeroDivisionError), pool.connection() as conn:
            conn.execute(sql.SQL("insert into {} values (1)").format(table))
            1 / 0  # noqa: B018
        assert rows(dsn, table) == []
        # The connection survived and is back, clean, for the next borrower.
        assert pool.get_stats()["pool_available"] == 1
        with pool.connection() as again:
            assert again is conn
            assert again.pgconn.transaction_status == TransactionStatus.IDLE
            again.execute(sql.SQL("insert into {} values (2)").format(table))
        assert rows(dsn, table) == [2]


def test_with_conn_inside_connection_does_not_close(dsn: str, table: sql.Identifier) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        with pool.connection() as conn:
            with conn:
                conn.execute(sql.SQL("insert into {} values (1)").format(table))
            # psycopg's `with conn:` commits but leaves a pooled connection open.
            assert not conn.closed
            assert rows(dsn, table) == [1]
        assert not conn.closed
        assert pool.get_stats()["pool_available"] == 1
        assert pool.get_stats()["returns_bad"] == 0


def test_close_returns(dsn: str, app_name: str) -> None:
    with ConnectionPool(
        dsn,
        min_size=1,
        close_returns=True,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        conn = pool.getconn()
        pid = backend_pid(conn)
        conn.close()
        # Given back, not closed.
        assert not conn.closed
        assert pool.get_stats()["pool_available"] == 1
        assert pool.get_stats()["returns_bad"] == 0
        again = pool.getconn()
        assert again is conn
        assert backend_pid(again) == pid
        pool.putconn(again)
        assert count_backends(dsn, app_name) == 1


def test_without_close_returns_close_really_closes(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        conn = pool.getconn()
        conn.close()
        assert conn.closed
        pool.putconn(conn)
        assert pool.get_stats()["returns_bad"] == 1


def test_same_connection_comes_back(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        first = pool.getconn()
        pid = backend_pid(first)
        pool.putconn(first)
        for _ in range(3):
            with pool.connection() as conn:
                assert conn is first
                assert backend_pid(conn) == pid


def _backends_serving(pool: ConnectionPool[Any], requests: int) -> list[int]:
    """How many of *requests* sequential requests each backend served,
    most first."""
    served: dict[int, int] = {}
    for _ in range(requests):
        with pool.connection() as conn:
            pid = backend_pid(conn)
            served[pid] = served.get(pid, 0) + 1
    return sorted(served.values(), reverse=True)


def test_use_is_spread_over_idle_connections_by_default(dsn: str) -> None:
    """As psycopg_pool (its idle queue is FIFO): 100 sequential requests on 4
    idle connections go 25/25/25/25, so every backend is used (per-backend
    state, load_balance_hosts) and none goes cold."""
    with ConnectionPool(dsn, min_size=4, open=True) as pool:
        pool.wait(DEADLINE)
        assert pool.lifo is False
        assert _backends_serving(pool, 100) == [25, 25, 25, 25]


def test_lifo_lends_the_connection_returned_last(dsn: str) -> None:
    """lifo=True (SQLAlchemy's pool_use_lifo): sequential requests reuse the
    connection returned last; the others stay idle."""
    with ConnectionPool(dsn, min_size=4, lifo=True, open=True) as pool:
        pool.wait(DEADLINE)
        assert pool.lifo is True
        assert _backends_serving(pool, 100) == [100]
        # Two held, the first given back: it is the next one lent.
        a, b = pool.getconn(), pool.getconn()
        pool.putconn(a)
        with pool.connection() as conn:
            assert conn is a
        pool.putconn(b)


def test_lifo_must_be_a_bool(dsn: str) -> None:
    with pytest.raises(TypeError, match=r"lifo must be a bool, got 'yes'"):
        ConnectionPool(dsn, lifo="yes", open=False)  # type: ignore[arg-type]


class TaggedConnection(psycopg.Connection[Any]):
    """A user's connection subclass, as psycopg_pool's connection_class allows."""


def test_connection_class_and_kwargs_are_used(dsn: str) -> None:
    with (
        ConnectionPool(
            dsn,
            connection_class=TaggedConnection,
            kwargs={"autocommit": True},
            min_size=1,
            open=True,
        ) as pool,
        pool.connection() as conn,
    ):
        assert type(conn) is TaggedConnection
        assert conn.autocommit
        conn.execute("select 1")
        # Autocommit: nothing left open for the pool to roll back.
        assert conn.pgconn.transaction_status == TransactionStatus.IDLE


# ---- refused returns --------------------------------------------------------


def test_putconn_from_another_pool_is_refused(dsn: str) -> None:
    with (
        ConnectionPool(dsn, min_size=1, name="lender", open=True) as lender,
        ConnectionPool(dsn, min_size=1, name="other", open=True) as other,
    ):
        lender.wait()
        other.wait()
        conn = lender.getconn()
        before = (lender.get_stats(), other.get_stats())
        with pytest.raises(ValueError, match="lender"):
            other.putconn(conn)
        assert (lender.get_stats(), other.get_stats()) == before
        # Still lent, still usable, and its own pool takes it back.
        assert conn.execute("select 1").fetchone() == (1,)
        conn.rollback()
        lender.putconn(conn)
        assert lender.get_stats()["pool_available"] == 1


def test_putconn_twice_is_refused(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=2, open=True) as pool:
        pool.wait()
        conn = pool.getconn()
        pool.putconn(conn)
        before = pool.get_stats()
        with pytest.raises(ValueError, match=r"already returned|doesn't come from"):
            pool.putconn(conn)
        assert pool.get_stats() == before
        # Not counted twice: two borrowers still get two distinct connections.
        a, b = pool.getconn(), pool.getconn()
        assert a is not b
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.1)
        pool.putconn(a)
        pool.putconn(b)


def test_putconn_of_unpooled_connection_is_refused(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool, psycopg.connect(dsn) as raw:
        pool.wait()
        before = pool.get_stats()
        with pytest.raises(ValueError, match="doesn't come from"):
            pool.putconn(raw)
        assert pool.get_stats() == before
        assert not raw.closed


# ---- dirty and broken returns -----------------------------------------------


def test_returned_in_transaction_is_rolled_back(dsn: str, table: sql.Identifier) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        conn = pool.getconn()
        conn.execute(sql.SQL("insert into {} values (1)").format(table))
        assert conn.pgconn.transaction_status == TransactionStatus.INTRANS
        pool.putconn(conn)
        assert rows(dsn, table) == []
        assert pool.get_stats()["returns_bad"] == 0
        with pool.connection() as again:
            assert again is conn
            assert again.pgconn.transaction_status == TransactionStatus.IDLE


def test_returned_in_failed_transaction_is_rolled_back(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        conn = pool.getconn()
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("select 1 / 0")
        assert conn.pgconn.transaction_status == TransactionStatus.INERROR
        pool.putconn(conn)
        with pool.connection() as again:
            assert again is conn
            assert again.execute("select 1").fetchone() == (1,)


def test_closed_connection_returned_is_replaced(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True, kwargs={"application_name": app_name}) as pool:
        conn = pool.getconn()
        pid = backend_pid(conn)
        conn.close()
        pool.putconn(conn)
        assert pool.get_stats()["returns_bad"] == 1
        with pool.connection(timeout=DEADLINE) as fresh:
            assert fresh is not conn
            assert backend_pid(fresh) != pid
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (1, 1)
        wait_until(lambda: count_backends(dsn, app_name) == 1, what="one server connection")


def test_broken_connection_returned_is_replaced(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        conn = pool.getconn()
        pid = backend_pid(conn)
        terminate_backend(dsn, pid)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
        pool.putconn(conn)
        assert conn.closed
        assert pool.get_stats()["returns_bad"] == 1
        with pool.connection(timeout=DEADLINE) as fresh:
            assert backend_pid(fresh) != pid


def test_connection_closed_inside_block_is_replaced(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        with pool.connection() as conn:
            pid = backend_pid(conn)
            conn.close()
        # No error on exit; the pool replaces what the block broke.
        with pool.connection(timeout=DEADLINE) as fresh:
            assert fresh is not conn
            assert backend_pid(fresh) != pid
        assert pool.get_stats()["returns_bad"] == 1


def test_connection_returned_during_a_query_is_discarded(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        conn = pool.getconn()
        pid = backend_pid(conn)
        # A query still running (sent, result not read): the connection
        # cannot be lent as is.
        conn.pgconn.send_query(b"select pg_sleep(0.5)")
        assert conn.pgconn.transaction_status == TransactionStatus.ACTIVE
        pool.putconn(conn)
        assert conn.closed
        with pool.connection(timeout=DEADLINE) as fresh:
            assert fresh is not conn
            assert backend_pid(fresh) != pid


# ---- timeouts and the queue -------------------------------------------------


def test_timeout(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        pool.wait()
        held = pool.getconn()
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout, match=r"0\.30 sec"):
            pool.getconn(timeout=0.3)
        waited = time.monotonic() - t0
        assert waited >= 0.3
        assert waited < 0.3 + 5.0
        stats = pool.get_stats()
        assert stats["requests_queued"] == 1
        assert stats["requests_errors"] == 1
        assert stats["requests_wait_ms"] >= 290
        pool.putconn(held)


def test_pool_default_timeout(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, timeout=0.25, open=True) as pool:
        held = pool.getconn()
        for borrow in (pool.getconn, lambda: pool.connection().__enter__()):
            t0 = time.monotonic()
            with pytest.raises(PoolTimeout):
                borrow()
            assert time.monotonic() - t0 >= 0.25
        pool.putconn(held)
        assert pool.get_stats()["pool_available"] == 1


def test_waiter_served_when_connection_returned(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        held = pool.getconn()
        got: list[psycopg.Connection] = []
        threads = Threads()
        threads.start(lambda: got.append(pool.getconn(timeout=DEADLINE)))
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="a waiter")
        pool.putconn(held)
        threads.join(DEADLINE)
        assert got == [held]
        pool.putconn(got[0])


def test_waiters_served_in_fifo_order(dsn: str) -> None:
    n = 8
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        held = pool.getconn()
        order: list[int] = []
        threads = Threads()

        def client(i: int) -> None:
            conn = pool.getconn(timeout=60)
            # One connection: only its holder appends, no lock needed.
            order.append(i)
            pool.putconn(conn)

        for i in range(n):
            threads.start(client, i)
            # Queued before the next one starts: the arrival order is known.
            wait_until(
                lambda i=i: pool.get_stats()["requests_waiting"] == i + 1,
                what=f"{i + 1} waiters",
            )
        pool.putconn(held)
        threads.join()
        assert order == list(range(n))
        assert pool.get_stats()["pool_available"] == 1


def test_returned_connection_goes_to_waiter_not_newcomer(dsn: str) -> None:
    """No barging: a request arriving as a connection is returned queues behind."""
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        held = pool.getconn()
        order: list[str] = []
        threads = Threads()

        def waiter() -> None:
            with pool.connection(timeout=60):
                order.append("waiter")
                time.sleep(0.1)

        threads.start(waiter)
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="a waiter")
        pool.putconn(held)
        with pool.connection(timeout=60):
            order.append("newcomer")
        threads.join()
        assert order == ["waiter", "newcomer"]


def test_new_connection_goes_to_oldest_waiter(dsn: str) -> None:
    n = 4

    def slow_configure(conn: psycopg.Connection) -> None:
        # Slow connections: the waiters are all queued before one is ready.
        time.sleep(0.3)

    with ConnectionPool(dsn, min_size=0, max_size=1, configure=slow_configure, open=True) as pool:
        order: list[int] = []
        threads = Threads()

        def client(i: int) -> None:
            with pool.connection(timeout=60):
                order.append(i)

        for i in range(n):
            threads.start(client, i)
            wait_until(
                lambda i=i: pool.get_stats()["requests_waiting"] + len(order) == i + 1,
                what=f"client {i} queued",
            )
        threads.join()
        assert order == list(range(n))
        assert pool.get_stats()["connections_num"] == 1


def test_max_waiting(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_waiting=2, open=True) as pool:
        held = pool.getconn()
        threads = Threads()
        served: list[int] = []

        def client() -> None:
            with pool.connection(timeout=60):
                served.append(1)

        for _ in range(2):
            threads.start(client)
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 2, what="2 waiters")
        t0 = time.monotonic()
        with pytest.raises(TooManyRequests, match="2 requests waiting"):
            pool.getconn(timeout=60)
        # Refused at once, not after the 60 s timeout.
        assert time.monotonic() - t0 < DEADLINE
        assert pool.get_stats()["requests_errors"] == 1
        assert pool.get_stats()["requests_waiting"] == 2
        pool.putconn(held)
        threads.join()
        assert len(served) == 2
        # The queue has room again.
        with pool.connection(timeout=DEADLINE):
            pass


def test_timed_out_waiters_do_not_swallow_connections(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=2, open=True) as pool:
        pool.wait()
        held = [pool.getconn(), pool.getconn()]
        errors: list[PoolTimeout] = []
        threads = Threads()

        def client() -> None:
            try:
                conn = pool.getconn(timeout=0.2)
            except PoolTimeout as ex:
                errors.append(ex)
            else:
                pool.putconn(conn)

        for _ in range(4):
            threads.start(client)
        threads.join()
        assert len(errors) == 4
        assert pool.get_stats()["requests_waiting"] == 0
        for conn in held:
            pool.putconn(conn)
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (2, 2)
        # Both are really available, at once.
        a, b = pool.getconn(timeout=1), pool.getconn(timeout=1)
        assert a is not b
        pool.putconn(a)
        pool.putconn(b)


def test_returns_racing_with_timeouts_lose_nothing(dsn: str) -> None:
    """Connections given back just as waiters give up go somewhere: never nowhere."""
    with ConnectionPool(dsn, min_size=2, open=True) as pool:
        pool.wait()

        def client(outcomes: list[str]) -> None:
            try:
                conn = pool.getconn(timeout=0.25)
            except PoolTimeout:
                outcomes.append("timeout")
            else:
                outcomes.append("served")
                pool.putconn(conn)

        for _ in range(5):
            held = [pool.getconn(), pool.getconn()]
            outcomes: list[str] = []
            threads = Threads()
            for _ in range(6):
                threads.start(client, outcomes)
            # Give back about when the waiters' deadlines pass.
            time.sleep(0.25)
            for conn in held:
                pool.putconn(conn)
            threads.join()
            assert len(outcomes) == 6
            stats = pool.get_stats()
            assert stats["requests_waiting"] == 0
            assert (stats["pool_size"], stats["pool_available"]) == (2, 2)


def test_keyboard_interrupt_while_waiting_loses_nothing(dsn: str) -> None:
    """Ctrl-C in a waiting main thread; the next waiter still gets served."""
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
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
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            pool.getconn(timeout=60)
        assert time.monotonic() - t0 < 60
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
