"""psycopg_pool's contract where ferropool used to drift from it.

Each test shows what a psycopg_pool user observes: wait() on a null pool,
num_workers bounding connection attempts, the log records of a bad
return, reset="discard" with prepared statements and configure's session
settings. Written once for both pools: the sync tests are generated.
"""

# async_to_sync: source

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
import pytest

from ferropool import AsyncConnectionPool, AsyncNullConnectionPool, PoolTimeout
from tests.fixtures.acompat import asleep
from tests.fixtures.fault_proxy import fault_proxy
from tests.fixtures.helpers_async import DEADLINE

if True:  # ASYNC
    pytestmark = pytest.mark.anyio

UNREACHABLE = "host=127.0.0.1 port=1 connect_timeout=1"


# ---- NullConnectionPool.wait() (issue 13.3) -------------------------------------------


async def test_null_wait_counts_its_connection(dsn: str) -> None:
    async with AsyncNullConnectionPool(dsn) as pool:
        await pool.wait(timeout=DEADLINE)
        stats = pool.get_stats()
        assert stats["connections_num"] == 1
        assert stats["pool_size"] == 0, "the test connection is not kept"


async def test_null_wait_times_out_on_a_slow_server(dsn: str) -> None:
    """A connection that completes after the timeout is not a success: the
    wait raises PoolTimeout and closes the pool, as psycopg_pool's does."""
    with fault_proxy(dsn) as proxy:
        proxy.set_latency(0.3)
        pool = AsyncNullConnectionPool(proxy.dsn(dsn), open=False)
        await pool.open()
        with pytest.raises(PoolTimeout, match=r"incomplete after 0\.1 sec"):
            await pool.wait(timeout=0.1)
        assert pool.closed


async def test_a_timeout_names_the_timeout_asked_for_even_if_queueing_began_late(
    dsn: str,
) -> None:
    """PoolTimeout says "after <timeout> sec", the timeout the request gave,
    as psycopg_pool's does, even when the thread was held up between the
    request's start and its place in the queue (preempted on a busy machine,
    a GC pause): the queue's own wait is then shorter. The hold-up is made
    here with a profile hook that sleeps as the queueing begins."""

    def held_up(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name == "_queue":
            time.sleep(0.3)

    async with AsyncConnectionPool(dsn, min_size=1, max_size=1) as pool:
        await pool.wait(timeout=DEADLINE)
        held = await pool.getconn()
        sys.setprofile(held_up)
        try:
            with pytest.raises(PoolTimeout) as raised:
                await pool.getconn(timeout=0.2)
        finally:
            sys.setprofile(None)
        assert str(raised.value) == "couldn't get a connection after 0.20 sec"
        await pool.putconn(held)
        assert pool.get_stats()["pool_available"] == 1


async def test_null_wait_logs_each_failed_attempt(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    pool = AsyncNullConnectionPool(UNREACHABLE, open=False)
    await pool.open()
    with pytest.raises(PoolTimeout):
        await pool.wait(timeout=0.5)
    attempts = [r for r in caplog.records if r.getMessage().startswith("error connecting in")]
    assert attempts, "each failed attempt is a WARNING, as the metrics docs promise"
    assert all(r.levelno == logging.WARNING for r in attempts)


# ---- num_workers bounds the connects in flight (issue 13.4) ---------------------------


class ConnectCounter:
    """Connection attempts in flight: started by the conninfo callable (called
    at each attempt), ended by configure (after connecting, slowly)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.in_flight = 0
        self.most = 0

    def conninfo(self) -> str:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        return self.dsn

    async def configure(self, conn: Any) -> None:
        await asleep(0.05)  # a slow login (SCRAM, TLS)
        self.in_flight -= 1


@pytest.mark.parametrize(
    ("options", "most"),
    [
        ({"num_workers": 1}, 1),
        ({"num_workers": 2}, 2),
        ({"num_workers": 1, "max_connecting": 3}, 3),
    ],
    ids=["one_worker", "two_workers", "max_connecting_given"],
)
async def test_num_workers_bounds_connects_in_flight(
    dsn: str, options: dict[str, int], most: int
) -> None:
    counter = ConnectCounter(dsn)
    async with AsyncConnectionPool(
        counter.conninfo, min_size=6, configure=counter.configure, **options
    ) as pool:
        assert pool.num_workers == options["num_workers"]
        await pool.wait(timeout=DEADLINE)
    assert counter.most == most


# ---- log records of a bad return (issue 13.5) -----------------------------------------


class Emitted(logging.Handler):
    """WARNING records and above as a handler writes them: formatted when
    emitted (a record's arguments may change after, a connection's status
    does)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))

    @contextmanager
    def capturing(self, logger: str) -> Iterator[None]:
        target = logging.getLogger(logger)
        target.addHandler(self)
        try:
            yield
        finally:
            target.removeHandler(self)

    def pop(self) -> list[tuple[int, str]]:
        lines, self.lines = self.lines, []
        return lines


@pytest.mark.parametrize("state", ["INTRANS", "INERROR", "BAD"])
async def test_a_bad_return_is_logged_as_psycopg_pool_logs_it(dsn: str, state: str) -> None:
    """The same level, the same words, and the connection with its status."""
    emitted = Emitted()
    pools = [
        AsyncConnectionPool(dsn, min_size=1, open=False),
        psycopg_pool.AsyncConnectionPool(dsn, min_size=1, open=False),
    ]
    records = []
    for pool, logger in zip(pools, ["ferropool", "psycopg.pool"], strict=True):
        async with pool:
            conn = await pool.getconn(timeout=DEADLINE)
            if state == "INTRANS":
                await conn.execute("select 1")
            elif state == "INERROR":
                with pytest.raises(psycopg.errors.DivisionByZero):
                    await conn.execute("select 1/0")
            else:
                await conn.close()
            with emitted.capturing(logger):
                await pool.putconn(conn)
            [(level, message)] = emitted.pop()
            records.append((level, message.split(" at 0x")[0]))
    ours, theirs = records
    assert ours == theirs
    assert f"[{state}]" in ours[1]


# ---- reset="discard" (issue 14.1) --------------------------------------------------------


async def test_discard_reset_keeps_prepared_statements_working(dsn: str) -> None:
    """psycopg prepares a query run prepare_threshold times; DISCARD ALL drops
    it on the server: the pool keeps psycopg's cache in step."""
    async with AsyncConnectionPool(dsn, min_size=2, reset="discard") as pool:
        for i in range(300):
            async with pool.connection(timeout=DEADLINE) as conn:
                for query in ("select %s::int", "select %s::int + 1"):
                    cur = await conn.execute(query, [i])
                    assert (await cur.fetchone()) is not None
        stats = pool.get_stats()
    assert stats["returns_bad"] == 0
    assert stats["connections_num"] == 2, "no borrow cost a reconnect"


async def test_discard_reset_keeps_configured_session_settings(dsn: str) -> None:
    async def configure(conn: Any) -> None:
        await conn.execute("set statement_timeout = '5s'")
        await conn.execute("set search_path = pg_catalog, public")
        await conn.commit()

    async with AsyncConnectionPool(
        dsn, min_size=1, max_size=1, reset="discard", configure=configure
    ) as pool:
        for _ in range(3):
            async with pool.connection(timeout=DEADLINE) as conn:
                await conn.execute("set statement_timeout = '1s'")  # the borrower's own
                await conn.execute("create temp table t (x int)")  # dropped by the reset
        async with pool.connection(timeout=DEADLINE) as conn:
            cur = await conn.execute("show statement_timeout")
            assert await cur.fetchone() == ("5s",)
            cur = await conn.execute("show search_path")
            assert await cur.fetchone() == ("pg_catalog, public",)
            cur = await conn.execute("select count(*) from pg_tables where tablename = 't'")
            assert await cur.fetchone() == (0,)
