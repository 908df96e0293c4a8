"""Read/write routing against a real primary and streaming hot standby.

The ``replica_set`` fixture starts a primary with replication enabled and a
standby cloned from it with pg_basebackup -R, streaming. Which server served
a request is asked to the server itself (``pg_is_in_recovery()`` is true
only on the standby); health is read from ``get_stats()`` as a user would.
Tests that stop the standby start it again before they end.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors as e

from ferropool import AsyncRoutingPool, RoutingPool
from tests.fixtures.fleet import ReplicaSet
from tests.fixtures.helpers import DEADLINE, Threads, wait_until

_tables = itertools.count()


def on_standby(conn: Any) -> bool:
    """Whether *conn* is served by the standby (asked to the server)."""
    row = conn.execute("select pg_is_in_recovery()").fetchone()
    assert row is not None
    return bool(row[0])


def read(pool: RoutingPool) -> bool:
    """One read; True if the standby served it."""
    with pool.connection(readonly=True) as conn:
        return on_standby(conn)


def reader_stats(pool: RoutingPool, i: int = 0) -> dict[str, int]:
    stats: dict[str, int] = pool.get_stats()["readers"][i]
    return stats


@pytest.fixture
def replicas(replica_set: ReplicaSet) -> Iterator[ReplicaSet]:
    """The replica set, with the standby running again after the test."""
    try:
        yield replica_set
    finally:
        replica_set.standby.start()


@pytest.fixture
def pool(replicas: ReplicaSet) -> Iterator[RoutingPool]:
    with RoutingPool(
        replicas.primary.dsn, [replicas.standby.dsn], min_size=2, open=True
    ) as routing:
        yield routing


# ---- routing -----------------------------------------------------------------


def test_reads_go_to_the_reader_and_writes_to_the_writer(pool: RoutingPool) -> None:
    with pool.connection() as conn:
        assert not on_standby(conn)
    assert all(read(pool) for _ in range(10))
    stats = pool.get_stats()
    assert stats["readers"][0]["reads"] == 10
    assert stats["readers"][0]["healthy"] == 1
    assert stats["writer"]["reads_fallback"] == 0
    assert stats["writer"]["requests_num"] == 1
    popped = pool.pop_stats()
    assert popped["readers"][0]["reads"] == 10
    assert pool.get_stats()["readers"][0]["reads"] == 0


def test_getconn_and_putconn_route_too(pool: RoutingPool) -> None:
    conn = pool.getconn(readonly=True)
    try:
        assert on_standby(conn)
    finally:
        pool.putconn(conn)
    conn = pool.getconn()
    try:
        assert not on_standby(conn)
    finally:
        pool.putconn(conn)
    with (
        psycopg.connect(pool.writer.conninfo) as stranger,  # type: ignore[arg-type]
        pytest.raises(ValueError, match="doesn't come from any of its members"),
    ):
        pool.putconn(stranger)


def test_a_row_written_becomes_visible_through_a_reader(pool: RoutingPool) -> None:
    table = f"routing_t{next(_tables)}"
    with pool.connection() as conn:
        conn.execute(f"create table {table} (id int primary key, note text)")
        conn.execute(f"insert into {table} values (1, 'written on the primary')")

    def replicated() -> bool:
        with pool.connection(readonly=True) as conn:
            assert on_standby(conn)
            if conn.execute("select to_regclass(%s)", (table,)).fetchone() == (None,):
                return False
            return conn.execute(f"select note from {table} where id = 1").fetchone() is not None

    wait_until(replicated, what="the row to reach the standby")
    with pool.connection(readonly=True) as conn:
        row = conn.execute(f"select note from {table} where id = 1").fetchone()
    assert row == ("written on the primary",)


def test_writes_through_a_reader_fail_clearly(pool: RoutingPool) -> None:
    with pool.connection() as conn:
        conn.execute("create table if not exists routing_w (id int)")
    wait_until(lambda: reader_can_see(pool, "routing_w"), what="the table to reach the standby")
    with (
        pytest.raises(e.ReadOnlySqlTransaction, match="read-only transaction"),
        pool.connection(readonly=True) as conn,
    ):
        conn.execute("insert into routing_w values (1)")
    # A refused write is the caller's error, not the reader's: it stays up.
    assert reader_stats(pool)["healthy"] == 1
    assert read(pool)


def reader_can_see(pool: RoutingPool, table: str) -> bool:
    with pool.connection(readonly=True) as conn:
        return bool(conn.execute("select to_regclass(%s)", (table,)).fetchone() != (None,))


def test_reader_sessions_are_read_only_on_a_writable_server(replicas: ReplicaSet) -> None:
    """The primary as a reader: its reader sessions still refuse writes,
    in transactions and in autocommit."""
    dsn = replicas.primary.dsn
    with RoutingPool(dsn, [dsn], min_size=1, open=True) as pool:
        with pool.connection() as conn:
            conn.execute("create table if not exists routing_ro (id int)")
            assert conn.execute("show default_transaction_read_only").fetchone() == ("off",)
        with pool.connection(readonly=True) as conn:
            assert not on_standby(conn)
            assert conn.read_only is True
            assert conn.execute("show default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(e.ReadOnlySqlTransaction), pool.connection(readonly=True) as conn:
            conn.execute("insert into routing_ro values (1)")
        conn = pool.getconn(readonly=True)
        try:
            conn.autocommit = True
            with pytest.raises(e.ReadOnlySqlTransaction):
                conn.execute("insert into routing_ro values (2)")
        finally:
            conn.autocommit = False
            pool.putconn(conn)
        with pool.connection() as conn:
            conn.execute("insert into routing_ro values (3)")
            assert conn.execute("select count(*) from routing_ro").fetchone() == (1,)
            conn.execute("drop table routing_ro")


def test_reads_spread_round_robin_over_healthy_readers(replicas: ReplicaSet) -> None:
    """Two readers (the standby, and the primary as a second one): reads alternate."""
    readers = [replicas.standby.dsn, replicas.primary.dsn]
    with RoutingPool(replicas.primary.dsn, readers, min_size=1, open=True) as pool:
        served = [read(pool) for _ in range(20)]
        stats = pool.get_stats()
    assert Counter(served) == {True: 10, False: 10}
    assert all(a != b for a, b in itertools.pairwise(served))
    assert [r["reads"] for r in stats["readers"]] == [10, 10]


def test_with_no_reader_reads_use_the_writer(replicas: ReplicaSet) -> None:
    with RoutingPool(replicas.primary.dsn, [], min_size=1, open=True) as pool:
        assert not any(read(pool) for _ in range(5))
        stats = pool.get_stats()
        assert stats["readers"] == []
        assert stats["writer"] == {**pool.writer.get_stats(), "reads_fallback": 5}


# ---- a reader going away ---------------------------------------------------------


def test_stopping_the_standby_sends_reads_to_the_writer(
    pool: RoutingPool, replicas: ReplicaSet
) -> None:
    """The first read after the standby stops finds it down (within
    reader_timeout) and is served by the writer; later reads skip the
    reader without trying it; none fails. Once the standby is back, its
    pool reconnects by itself and reads return to it."""
    assert all(read(pool) for _ in range(5))
    replicas.standby.stop()

    started = time.monotonic()
    assert read(pool) is False  # served, by the primary
    first_read = time.monotonic() - started
    stats = reader_stats(pool)
    assert stats["healthy"] == 0
    assert stats["marked_down"] == 1
    # Generous: reader_timeout is 0.25 s; this only catches a read that
    # waited for its whole timeout (30 s) on the dead reader.
    assert first_read < pool.reader_timeout + 5

    tried = reader_stats(pool)["requests_num"]
    assert not any(read(pool) for _ in range(50))
    after = pool.get_stats()
    assert after["readers"][0]["requests_num"] == tried  # not even tried
    assert after["writer"]["reads_fallback"] == 51

    replicas.standby.start()
    wait_until(lambda: reader_stats(pool)["healthy"] == 1, what="the reader to be up again")
    assert read(pool) is True
    assert reader_stats(pool)["marked_down"] == 1


def test_a_reader_that_does_not_reconnect_by_itself_is_retried_by_a_read(
    replicas: ReplicaSet,
) -> None:
    """A reader pool with min_size=0 keeps no connection open, so nothing
    reconnects it in the background: one read per reader_retry tries it."""
    with RoutingPool(
        replicas.primary.dsn,
        [replicas.standby.dsn],
        min_size=1,
        reader_options={"min_size": 0, "max_size": 2},
        reader_retry=0.5,
        open=True,
    ) as pool:
        assert read(pool)
        replicas.standby.stop()
        assert not read(pool)
        assert reader_stats(pool)["healthy"] == 0
        replicas.standby.start()
        wait_until(lambda: read(pool), what="a read retrying the reader")
        stats = reader_stats(pool)
    assert stats["healthy"] == 1
    assert stats["marked_down"] == 1


def test_standby_stopping_under_load_fails_only_reads_in_flight(
    pool: RoutingPool, replicas: ReplicaSet, request: pytest.FixtureRequest
) -> None:
    """4 threads read in a loop while the standby stops: at most the read
    each had in flight fails; every thread then keeps being served."""
    threads_n = 4
    stopped = threading.Event()
    done = threading.Event()
    lock = threading.Lock()
    failures: list[str] = []
    served_after: Counter[int] = Counter()

    def reader(n: int) -> None:
        for _ in range(50_000):  # bounded, whatever happens
            if done.is_set():
                return
            after = stopped.is_set()
            try:
                read(pool)
            except psycopg.OperationalError as ex:
                with lock:
                    failures.append(f"{type(ex).__name__}: {ex}")
                continue
            if after:
                with lock:
                    served_after[n] += 1

    threads = Threads()
    for n in range(threads_n):
        threads.start(reader, n)
    try:
        wait_until(lambda: reader_stats(pool)["reads"] >= 100, what="reads on the standby")
        replicas.standby.stop()
        stopped.set()
        wait_until(
            lambda: len(served_after) == threads_n and min(served_after.values()) >= 20,
            what=f"every thread served after the stop ({dict(served_after)})",
        )
    finally:
        done.set()
        threads.join(DEADLINE)
    request.node.user_properties.append(("failed_reads_in_flight", len(failures)))
    # After the first failure the reader is down for every thread, so a
    # thread can lose at most the read it had in flight.
    assert len(failures) <= threads_n, failures
    assert reader_stats(pool)["healthy"] == 0


# ---- arguments -----------------------------------------------------------------------


def test_arguments_are_checked(dsn: str) -> None:
    with pytest.raises(ValueError, match="reader_timeout must be greater than 0"):
        RoutingPool(dsn, [dsn], reader_timeout=0)
    with pytest.raises(TypeError, match="readers must be a list"):
        RoutingPool(dsn, dsn)
    with pytest.raises(TypeError, match="open is a RoutingPool argument"):
        RoutingPool(dsn, [dsn], reader_options={"open": True})
    with pytest.raises(ValueError, match="max_size"):
        RoutingPool(dsn, [dsn], min_size=4, max_size=2)
    pool = RoutingPool(dsn, [dsn, dsn], name="app", min_size=1)
    assert pool.closed
    assert pool.writer.name == "app-writer"
    assert [r.name for r in pool.readers] == ["app-reader-0", "app-reader-1"]
    # Readers poll their socket at every checkout unless told otherwise.
    assert [r.liveness_bypass for r in pool.readers] == [0.0, 0.0]
    assert pool.writer.liveness_bypass == 0.5
    mine = RoutingPool(dsn, [dsn], min_size=1, reader_options={"liveness_bypass": 2.0})
    assert mine.readers[0].liveness_bypass == 2.0


# ---- asyncio ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_routing(replicas: ReplicaSet) -> None:
    """The same routing on AsyncConnectionPool members: reads on the
    standby, read-only reader sessions, writes on the primary, and reads on
    the writer while the standby is stopped."""

    async def served_by_standby(conn: Any) -> bool:
        cur = await conn.execute("select pg_is_in_recovery()")
        row = await cur.fetchone()
        return bool(row[0])

    async with AsyncRoutingPool(replicas.primary.dsn, [replicas.standby.dsn], min_size=2) as pool:
        async with pool.connection() as conn:
            assert not await served_by_standby(conn)
        for _ in range(5):
            async with pool.connection(readonly=True) as conn:
                assert await served_by_standby(conn)
                assert conn.read_only is True
        with pytest.raises(e.ReadOnlySqlTransaction):
            async with pool.connection(readonly=True) as conn:
                await conn.execute("create table routing_async (id int)")
        conn = await pool.getconn(readonly=True)
        try:
            assert await served_by_standby(conn)
        finally:
            await pool.putconn(conn)

        replicas.standby.stop()
        for _ in range(10):
            async with pool.connection(readonly=True) as conn:
                assert not await served_by_standby(conn)
        stats = pool.get_stats()
        assert stats["readers"][0]["healthy"] == 0
        assert stats["readers"][0]["reads"] == 7  # 5, the refused write, getconn
        assert stats["writer"]["reads_fallback"] == 10
