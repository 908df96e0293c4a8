"""The async pools' public surface and behaviour, as a psycopg_pool user sees it.

Defaults and signatures are compared with psycopg_pool's own async classes,
attribute by attribute; the open/close rules and their warnings, callbacks
given as coroutines or plain callables, borrowing, timeouts, the FIFO
queue, and the maintenance methods follow. Everything runs against a real
server; background effects are awaited with generous deadlines.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import psycopg_pool
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool.base import BasePool

from ferropool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    ConnectionPool,
    NullConnectionPool,
    PoolClosed,
    PoolTimeout,
    TooManyRequests,
)
from ferropool.embedded import free_port
from tests.fixtures.async_helpers import (
    available,
    backend_pid_async,
    committed_rows,
    create_table,
    drop_table,
    holding,
    queued,
    terminate_backend_async,
    wait_backends,
    wait_until_async,
)
from tests.fixtures.helpers import DEADLINE

pytestmark = pytest.mark.anyio

PAIRS = [
    pytest.param(AsyncConnectionPool, psycopg_pool.AsyncConnectionPool, id="AsyncConnectionPool"),
    pytest.param(
        AsyncNullConnectionPool, psycopg_pool.AsyncNullConnectionPool, id="AsyncNullConnectionPool"
    ),
]


@pytest.fixture
def table(dsn: str) -> Iterator[sql.Identifier]:
    name = create_table(dsn)
    yield name
    drop_table(dsn, name)


def unreachable_conninfo() -> str:
    # Nothing listens there: connections are refused at once.
    return f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres connect_timeout=2"


# ---- defaults and signatures ------------------------------------------------

POOL_ATTRIBUTES = [
    "conninfo",
    "kwargs",
    "connection_class",
    "min_size",
    "max_size",
    "close_returns",
    "timeout",
    "max_waiting",
    "max_lifetime",
    "max_idle",
    "reconnect_timeout",
    "num_workers",
    "closed",
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
@pytest.mark.parametrize(
    "args",
    [
        {},
        {"max_size": 6},
        {"name": "mine", "timeout": 2.5, "max_waiting": 7, "kwargs": {"autocommit": True}},
        {"max_lifetime": 10.0, "max_idle": 5.0, "reconnect_timeout": 1.0, "num_workers": 1},
    ],
    ids=["defaults", "max_size", "misc", "lifetimes"],
)
def test_constructor_matches_psycopg_pool(
    dsn: str, ours: type[Any], theirs: type[Any], args: dict[str, Any]
) -> None:
    a = ours(dsn, open=False, **args)
    b = theirs(dsn, open=False, **args)
    for attr in POOL_ATTRIBUTES:
        assert getattr(a, attr) == getattr(b, attr), attr
    assert a.connection_class is psycopg.AsyncConnection
    if "name" in args:
        assert a.name == b.name
    for key in ("pool_min", "pool_max"):
        assert a.get_stats()[key] == b.get_stats()[key], key


METHODS = [
    "__init__",
    "open",
    "close",
    "wait",
    "getconn",
    "putconn",
    "connection",
    "resize",
    "check",
    "drain",
    "get_stats",
    "pop_stats",
    "check_connection",
    "reconnect_failed",
    "__aenter__",
    "__aexit__",
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_signatures_match_psycopg_pool(ours: type[Any], theirs: type[Any], method: str) -> None:
    """Same parameter names, kinds and defaults, and awaitable where theirs is.

    As for the sync pools, ferropool's own options may follow psycopg_pool's,
    keyword-only and with defaults, so no psycopg_pool call changes meaning."""

    def shape(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    mine, reference = getattr(ours, method), getattr(theirs, method)
    assert shape(mine)[: len(shape(reference))] == shape(reference)
    for name, kind, default in shape(mine)[len(shape(reference)) :]:
        assert kind is inspect.Parameter.KEYWORD_ONLY, name
        assert default is not inspect.Parameter.empty, name
    assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(reference)


def test_constructors_match_the_sync_pools() -> None:
    """Same options as the sync pools, ferropool's own included."""
    pairs = [(AsyncConnectionPool, ConnectionPool), (AsyncNullConnectionPool, NullConnectionPool)]
    for async_cls, sync_cls in pairs:
        mine = inspect.signature(async_cls.__init__).parameters
        sync = inspect.signature(sync_cls.__init__).parameters
        assert [(p.name, p.kind) for p in mine.values()] == [
            (p.name, p.kind) for p in sync.values()
        ]
        for name, param in mine.items():
            if name != "connection_class":  # AsyncConnection, Connection
                assert param.default == sync[name].default, name


# Every key psycopg_pool can report: its counters and its measures.
PSYCOPG_POOL_STATS_KEYS = {
    value
    for key, value in vars(BasePool).items()
    if key.startswith("_") and key[1:].isupper() and isinstance(value, str)
}


async def test_stats_keys_match_psycopg_pool(dsn: str) -> None:
    """psycopg_pool's keys first; ferropool's own after them, the same as
    the sync pools' (one core behind both)."""
    assert len(PSYCOPG_POOL_STATS_KEYS) == 15
    expected = list(ConnectionPool(dsn, open=False).get_stats())
    assert set(expected[:15]) == PSYCOPG_POOL_STATS_KEYS
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        assert list(pool.get_stats()) == expected
        async with pool.connection():
            pass
        assert list(pool.get_stats()) == expected
        assert list(pool.pop_stats()) == expected
        assert pool.get_stats()["requests_num"] == 0
    async with AsyncNullConnectionPool(dsn) as null:
        async with null.connection():
            pass
        assert list(null.get_stats()) == expected


# ---- opening and closing ----------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
async def test_open_in_constructor_warns_like_psycopg_pool(
    dsn: str, ours: type[Any], theirs: type[Any]
) -> None:
    with pytest.warns(RuntimeWarning) as reference:
        pool = theirs(dsn, open=True)
    await pool.close()
    with pytest.warns(RuntimeWarning, match="in the constructor is deprecated") as record:
        pool = ours(dsn, open=True)
    try:
        assert [str(w.message) for w in record] == [str(w.message) for w in reference]
        assert not pool.closed
        async with pool.connection() as conn:
            await conn.execute("select 1")
    finally:
        await pool.close()


@pytest.mark.parametrize("cls", [AsyncConnectionPool, AsyncNullConnectionPool])
async def test_constructor_warning_points_at_the_caller(dsn: str, cls: type[Any]) -> None:
    """The warning names the line to change, not a line inside ferropool."""
    with pytest.warns(RuntimeWarning, match="in the constructor") as record:
        pool = cls(dsn, min_size=0, max_size=1, open=True)
    await pool.close()
    assert [(w.filename, w.lineno) for w in record] == [(__file__, record[0].lineno)]
    assert record[0].filename == __file__, f"points at {record[0].filename}"


@pytest.mark.parametrize("cls", [AsyncConnectionPool, psycopg_pool.AsyncConnectionPool])
async def test_implicit_open_warns_at_first_use(dsn: str, cls: type[Any]) -> None:
    """open=None opens the pool without a word; the first getconn() warns, once."""
    pool = cls(dsn, min_size=1)  # a warning here would fail the test
    try:
        assert not pool.closed
        with pytest.warns(RuntimeWarning, match="await pool.open()"):
            conn = await pool.getconn()
        await pool.putconn(conn)
        async with pool.connection():
            pass  # no second warning (warnings are errors here)
    finally:
        await pool.close()


async def test_implicit_open_warns_at_wait(dsn: str) -> None:
    pool = AsyncConnectionPool(dsn, min_size=1)
    try:
        with pytest.warns(RuntimeWarning, match="in the constructor is deprecated"):
            await pool.wait()
    finally:
        await pool.close()


async def test_async_with_on_implicitly_opened_pool_does_not_warn(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool, pool.connection() as conn:
        await conn.execute("select 1")
    async with AsyncNullConnectionPool(dsn) as null, null.connection() as conn:
        await conn.execute("select 1")


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
def test_open_without_running_loop_raises(dsn: str, ours: type[Any], theirs: type[Any]) -> None:
    for cls in (theirs, ours):
        with pytest.raises(RuntimeError, match="open with no running loop"):
            cls(dsn)
        with (
            pytest.warns(RuntimeWarning, match="in the constructor"),
            pytest.raises(RuntimeError, match="open with no running loop"),
        ):
            cls(dsn, open=True)
        # open=False needs no loop: the pool is opened later, in one.
        pool = cls(dsn, open=False)
        assert pool.closed


def test_pool_made_outside_a_loop_opens_in_one(dsn: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=1, open=False)

    async def use() -> object:
        async with pool, pool.connection() as conn:
            cur = await conn.execute("select 1")
            return await cur.fetchone()

    assert asyncio.run(use()) == (1,)
    assert pool.closed


async def test_async_with_opens_and_closes(dsn: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=1, open=False)
    assert pool.closed
    async with pool as entered:
        assert entered is pool
        assert not pool.closed
        await pool.open()  # already open: nothing happens
        async with pool.connection() as conn:
            cur = await conn.execute("select 1")
            assert await cur.fetchone() == (1,)
    assert pool.closed
    with pytest.raises(PoolClosed, match="closed"):
        await pool.getconn()


async def test_async_with_closes_on_error(dsn: str) -> None:
    with pytest.raises(ZeroDivisionError):
        async with AsyncConnectionPool(dsn, min_size=1, open=False) as pool:
            1 / 0  # noqa: B018
    assert pool.closed


async def test_not_open_pool_refuses_getconn(dsn: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, open=False)
    with pytest.raises(PoolClosed, match="not open"):
        await pool.getconn()
    with pytest.raises(PoolClosed):
        async with pool.connection():
            pass


async def test_open_wait_fills_min_size(dsn: str, app_name: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=3, open=False, kwargs={"application_name": app_name}
    )
    await pool.open(wait=True, timeout=DEADLINE)
    try:
        stats = pool.get_stats()
        assert stats["pool_available"] == stats["pool_size"] == 3
        await wait_backends(dsn, app_name, 3)
    finally:
        await pool.close()
    await wait_backends(dsn, app_name, 0)


async def test_closed_pool_cannot_reopen(dsn: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=1, open=False)
    await pool.open(wait=True)
    await pool.close()
    await pool.close()  # closing again is harmless
    with pytest.raises(PoolClosed):
        await pool.open()
    for use in (pool.getconn, pool.wait, pool.check):
        with pytest.raises(PoolClosed):
            await use()
    assert pool.get_stats()["pool_size"] == 0


async def test_connection_lent_at_close_is_closed_on_return(dsn: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, min_size=1, open=False)
    await pool.open()
    conn = await pool.getconn()
    await pool.close()
    # Still usable by its borrower until given back, as in psycopg_pool.
    cur = await conn.execute("select 1")
    assert await cur.fetchone() == (1,)
    await conn.rollback()
    await pool.putconn(conn)
    assert conn.closed


async def test_concurrent_open_opens_once(dsn: str, app_name: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=2, open=False, kwargs={"application_name": app_name}
    )
    try:
        await asyncio.gather(*(pool.open(wait=True, timeout=DEADLINE) for _ in range(4)))
        stats = pool.get_stats()
        assert stats["pool_size"] == 2
        assert stats["connections_num"] == 2
    finally:
        await pool.close()


# ---- wait() ---------------------------------------------------------------------


async def test_wait_names_last_connection_error() -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        unreachable_conninfo(), min_size=1, open=False
    )
    await pool.open()
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout, match="Connection refused") as info:
        await pool.wait(timeout=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert "0.5" in str(info.value)
    assert pool.closed, "wait() closes a pool that did not fill"


async def test_wait_keeps_the_loop_running(dsn: str) -> None:
    """Other tasks run while wait() waits for the pool to fill."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        async with AsyncConnectionPool(dsn, min_size=4, open=False) as pool:
            await pool.wait(timeout=DEADLINE)
    finally:
        task.cancel()
    assert ticks > 0


def test_pools_waiting_together_do_not_starve_the_loop(dsn: str) -> None:
    """Several pools opened with wait=True at once, as an app with a few
    databases does at start-up, all become ready.

    The loop's default executor is what psycopg uses to resolve host names:
    a wait() that parked there would keep connections from being opened.
    A small executor makes the limit the same on any machine.
    """

    async def main(dsn: str) -> list[dict[str, int]]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
        pools = [AsyncConnectionPool(dsn, min_size=1, open=False) for _ in range(3)]
        try:
            await asyncio.gather(*(p.open(wait=True, timeout=DEADLINE) for p in pools))
            return [p.get_stats() for p in pools]
        finally:
            for p in pools:
                await p.close()

    # By name, so that connecting needs the resolver.
    stats = asyncio.run(main(dsn.replace("host=127.0.0.1", "host=localhost")))
    assert [s["pool_available"] for s in stats] == [1, 1, 1]


# ---- callbacks: coroutines or plain callables ------------------------------


async def test_callbacks_may_be_coroutines(dsn: str, app_name: str) -> None:
    calls: list[str] = []

    async def conninfo() -> str:
        calls.append("conninfo")
        return dsn

    async def kwargs() -> dict[str, Any]:
        calls.append("kwargs")
        return {"application_name": app_name}

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        calls.append("configure")
        await conn.execute("set statement_timeout = '7s'")
        await conn.commit()

    async def check(conn: psycopg.AsyncConnection[Any]) -> None:
        calls.append("check")
        await AsyncConnectionPool.check_connection(conn)

    async def reset(conn: psycopg.AsyncConnection[Any]) -> None:
        calls.append("reset")
        await conn.execute("reset search_path")
        await conn.commit()

    async with AsyncConnectionPool(
        conninfo, kwargs=kwargs, configure=configure, check=check, reset=reset, min_size=1
    ) as pool:
        await pool.wait(timeout=DEADLINE)
        for _ in range(2):
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "select current_setting('application_name'),"
                    " current_setting('statement_timeout'),"
                    " current_setting('search_path')"
                )
                assert await cur.fetchone() == (app_name, "7s", '"$user", public')
                await conn.execute("set search_path to pg_catalog")
        assert calls == ["conninfo", "kwargs", "configure"] + ["check", "reset"] * 2


async def test_conninfo_and_kwargs_may_be_plain_callables(dsn: str, app_name: str) -> None:
    calls: list[str] = []

    def conninfo() -> str:
        calls.append("conninfo")
        return dsn

    def kwargs() -> dict[str, Any]:
        calls.append("kwargs")
        return {"application_name": app_name}

    async with AsyncConnectionPool(conninfo, kwargs=kwargs, min_size=2) as pool:
        await pool.wait(timeout=DEADLINE)
        await wait_backends(dsn, app_name, 2)
    # Evaluated at each connect.
    assert calls == ["conninfo", "kwargs"] * 2


async def test_configure_runs_on_the_pools_loop(dsn: str) -> None:
    """Maintenance runs as tasks on the pool's loop, not in another thread."""
    seen: list[tuple[asyncio.AbstractEventLoop, int]] = []

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        seen.append((asyncio.get_running_loop(), threading.get_ident()))

    async with AsyncConnectionPool(dsn, min_size=2, configure=configure) as pool:
        await pool.wait(timeout=DEADLINE)
    here = (asyncio.get_running_loop(), threading.get_ident())
    assert seen == [here, here]


@pytest.mark.parametrize("kind", ["coroutine", "plain"])
async def test_reconnect_failed_called_after_reconnect_timeout(kind: str) -> None:
    calls: list[Any] = []

    async def coroutine(pool: AsyncConnectionPool[Any]) -> None:
        calls.append(pool)

    def plain(pool: AsyncConnectionPool[Any]) -> None:
        calls.append(pool)

    async with AsyncConnectionPool(
        unreachable_conninfo(),
        min_size=1,
        reconnect_timeout=0.3,
        reconnect_failed=coroutine if kind == "coroutine" else plain,
        open=False,
    ) as pool:
        t0 = time.monotonic()
        await wait_until_async(lambda: calls, what="reconnect_failed called")
        assert time.monotonic() - t0 >= 0.3
        assert calls[0] is pool
        assert pool.get_stats()["connections_errors"] > 0


async def test_configure_leaving_transaction_open_discards_connection(dsn: str) -> None:
    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("select 1")  # opens a transaction, never closed

    async with AsyncConnectionPool(dsn, min_size=1, configure=configure) as pool:
        with pytest.raises(PoolTimeout, match="configure"):
            await pool.getconn(timeout=0.5)
        assert pool.get_stats()["pool_available"] == 0


async def test_failing_reset_discards_connection(dsn: str) -> None:
    async def reset(conn: psycopg.AsyncConnection[Any]) -> None:
        raise RuntimeError("reset failed")

    async with AsyncConnectionPool(dsn, min_size=1, reset=reset) as pool:
        conn = await pool.getconn()
        await pool.putconn(conn)
        assert conn.closed
        async with pool.connection(timeout=DEADLINE) as fresh:
            assert fresh is not conn


# ---- borrowing --------------------------------------------------------------


async def test_connection_commits_on_success(dsn: str, table: sql.Identifier) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        async with pool.connection() as conn:
            await conn.execute(sql.SQL("insert into {} values (1)").format(table))
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert await committed_rows(dsn, table) == [1]


async def test_connection_rolls_back_on_exception(dsn: str, table: sql.Identifier) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        with pytest.raises(ZeroDivisionError):
            async with pool.connection() as conn:
                await conn.execute(sql.SQL("insert into {} values (1)").format(table))
                1 / 0  # noqa: B018
        assert await committed_rows(dsn, table) == []
        async with pool.connection() as again:
            assert again is conn, "the connection went back to the pool"
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (1, 1)


async def test_getconn_putconn(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=2) as pool:
        await pool.wait()
        conn = await pool.getconn()
        assert isinstance(conn, psycopg.AsyncConnection)
        cur = await conn.execute("select 1")
        assert await cur.fetchone() == (1,)
        await conn.rollback()
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (2, 1)
        await pool.putconn(conn)
        stats = pool.get_stats()
        assert (stats["pool_size"], stats["pool_available"]) == (2, 2)
        assert stats["requests_num"] == 1
        assert not conn.closed


async def test_async_with_conn_inside_connection_does_not_close(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        async with pool.connection() as conn, conn:
            await conn.execute("select 1")
        assert not conn.closed
        async with pool.connection() as again:
            assert again is conn


async def test_returned_in_transaction_is_rolled_back(dsn: str, table: sql.Identifier) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        conn = await pool.getconn()
        await conn.execute(sql.SQL("insert into {} values (1)").format(table))
        await pool.putconn(conn)
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert await committed_rows(dsn, table) == []
        async with pool.connection() as again:
            assert again is conn


async def test_putconn_refusals_change_nothing(dsn: str) -> None:
    async with (
        AsyncConnectionPool(dsn, min_size=1, name="a") as a,
        AsyncConnectionPool(dsn, min_size=1, name="b") as b,
    ):
        conn = await a.getconn()
        with pytest.raises(ValueError, match="'a'"):
            await b.putconn(conn)
        await a.putconn(conn)
        with pytest.raises(ValueError, match="already returned"):
            await a.putconn(conn)
        for pool in (a, b):
            await available(pool, 1)
            assert pool.get_stats()["pool_size"] == 1


async def test_broken_connection_returned_is_replaced(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        conn = await pool.getconn()
        pid = await backend_pid_async(conn)
        await terminate_backend_async(dsn, pid)
        with pytest.raises(psycopg.OperationalError):
            await conn.execute("select 1")
        await pool.putconn(conn)
        assert pool.get_stats()["returns_bad"] == 1
        async with pool.connection(timeout=DEADLINE) as fresh:
            assert await backend_pid_async(fresh) != pid


# ---- timeouts, the queue ------------------------------------------------------


async def test_timeout_raises_pool_timeout_no_sooner(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, timeout=0.3) as pool, holding(pool, 1):
        for timeout in (None, 0.2):
            t0 = time.monotonic()
            with pytest.raises(PoolTimeout):
                await pool.getconn(timeout=timeout)
            assert time.monotonic() - t0 >= (timeout or 0.3)
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout):
            async with pool.connection(timeout=0.2):
                pass
        assert time.monotonic() - t0 >= 0.2
        stats = pool.get_stats()
        assert stats["requests_errors"] == 3
        assert stats["requests_waiting"] == 0


async def test_getconn_timeout_names_last_connection_error() -> None:
    async with AsyncConnectionPool(unreachable_conninfo(), min_size=1, open=False) as pool:
        with pytest.raises(PoolTimeout, match="Connection refused"):
            await pool.getconn(timeout=0.5)
        assert pool.get_stats()["connections_errors"] > 0


async def test_waiters_served_in_fifo_order(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=2) as pool:
        await pool.wait()
        served: list[int] = []

        async def client(i: int) -> None:
            async with pool.connection(timeout=DEADLINE):
                served.append(i)

        async with holding(pool, 2):
            tasks = []
            for i in range(10):
                tasks.append(asyncio.create_task(client(i)))
                await queued(pool, i + 1)
            # A newcomer while others wait queues behind them.
            tasks.append(asyncio.create_task(client(10)))
            await queued(pool, 11)
        await asyncio.gather(*tasks)
        assert served == list(range(11))


async def test_new_connection_goes_to_oldest_waiter(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=0, max_size=1) as pool:
        served: list[int] = []

        async def client(i: int) -> None:
            async with pool.connection(timeout=DEADLINE):
                served.append(i)

        tasks = [asyncio.create_task(client(i)) for i in range(5)]
        await asyncio.gather(*tasks)
        assert served == list(range(5))
        assert pool.get_stats()["connections_num"] == 1


async def test_max_waiting(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, max_waiting=2) as pool:
        async with holding(pool, 1):
            waiters = [asyncio.create_task(pool.getconn(timeout=DEADLINE)) for _ in range(2)]
            await wait_until_async(lambda: pool.get_stats()["requests_waiting"] == 2)
            t0 = time.monotonic()
            with pytest.raises(TooManyRequests, match="2 requests waiting"):
                await pool.getconn(timeout=DEADLINE)
            assert time.monotonic() - t0 < DEADLINE, "refused at once, not after waiting"
        for waiter in waiters:
            await pool.putconn(await waiter)
        stats = pool.get_stats()
        assert stats["requests_errors"] == 1
        assert (stats["pool_available"], stats["requests_waiting"]) == (1, 0)


async def test_waiting_does_not_block_the_loop(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1) as pool:
        held = await pool.getconn()
        waiter = asyncio.create_task(pool.getconn(timeout=DEADLINE))
        await queued(pool, 1)
        await asyncio.sleep(0.05)  # the loop runs other tasks meanwhile
        assert not waiter.done()
        await pool.putconn(held)
        assert await waiter is held
        await pool.putconn(held)


# ---- lifetime, drain, resize, check ------------------------------------------


async def test_expired_connection_is_never_handed_out(dsn: str) -> None:
    max_lifetime = 0.3
    async with AsyncConnectionPool(dsn, min_size=2, max_lifetime=max_lifetime) as pool:
        await pool.wait()
        # Upper bound of each connection's creation time: when first seen.
        first_seen: dict[int, float] = {}
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            asked_at = time.monotonic()
            async with pool.connection(timeout=DEADLINE) as conn:
                pid = await backend_pid_async(conn)
                born_by = first_seen.setdefault(pid, time.monotonic())
                assert asked_at - born_by < max_lifetime, f"pid {pid} handed out expired"
            await asyncio.sleep(0.02)
        assert len(first_seen) >= 3, "connections were renewed"


async def test_expiry_checked_at_return(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, max_lifetime=0.3) as pool:
        conn = await pool.getconn()
        pid = await backend_pid_async(conn)
        await asyncio.sleep(0.6)
        await pool.putconn(conn)
        assert conn.closed, "closed on the way back, never parked in the pool"
        async with pool.connection(timeout=DEADLINE) as fresh:
            assert await backend_pid_async(fresh) != pid


async def test_drain_replaces_every_connection(dsn: str, app_name: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=3, kwargs={"application_name": app_name}) as pool:
        await pool.wait()
        conns = [await pool.getconn() for _ in range(3)]
        old = {await backend_pid_async(c) for c in conns}
        in_use, idle = conns[0], conns[1:]
        for conn in idle:
            await pool.putconn(conn)

        await pool.drain()
        assert all(c.closed for c in idle)
        assert not in_use.closed, "a lent connection is left to its borrower"
        await wait_until_async(lambda: pool.get_stats()["pool_available"] == 2, what="refill")
        await pool.putconn(in_use)
        assert in_use.closed, "replaced when returned"
        await wait_until_async(lambda: pool.get_stats()["pool_available"] == 3, what="refill")
        async with holding(pool, 3) as fresh:
            assert {await backend_pid_async(c) for c in fresh}.isdisjoint(old)
        await wait_backends(dsn, app_name, 3)


async def test_resize_up_and_down(dsn: str, app_name: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=1, kwargs={"application_name": app_name}) as pool:
        await pool.wait()
        await pool.resize(3, 5)
        assert (pool.min_size, pool.max_size) == (3, 5)
        stats = pool.get_stats()
        assert (stats["pool_min"], stats["pool_max"]) == (3, 5)
        await wait_until_async(lambda: pool.get_stats()["pool_available"] == 3, what="grown")
        await wait_backends(dsn, app_name, 3)
        await pool.resize(1)
        assert (pool.min_size, pool.max_size) == (1, 1)
        await wait_backends(dsn, app_name, 1)
        with pytest.raises(ValueError, match="max_size"):
            await pool.resize(2, 1)
        assert (pool.min_size, pool.max_size) == (1, 1)


async def test_check_replaces_terminated_connection(dsn: str) -> None:
    """pg_terminate_backend sends 57P01, as a server shutdown does: as the
    sync pool, check() retires every connection opened before it."""
    async with AsyncConnectionPool(dsn, min_size=2) as pool:
        await pool.wait()
        async with holding(pool, 2) as conns:
            old = {await backend_pid_async(c) for c in conns}
        await terminate_backend_async(dsn, next(iter(old)))
        await pool.check()
        assert pool.get_stats()["connections_lost"] == 1
        await wait_until_async(lambda: pool.get_stats()["pool_available"] == 2, what="refill")
        async with holding(pool, 2) as conns:
            pids = {await backend_pid_async(c) for c in conns}
        assert not pids & old, "every connection opened before 57P01 is replaced"
        assert pool.get_stats()["pool_size"] == 2


async def test_check_callback_discards_broken_connection_at_checkout(dsn: str) -> None:
    async with AsyncConnectionPool(
        dsn, min_size=1, check=AsyncConnectionPool.check_connection
    ) as pool:
        async with pool.connection() as conn:
            pid = await backend_pid_async(conn)
        await terminate_backend_async(dsn, pid)
        async with pool.connection(timeout=DEADLINE) as conn:
            assert await backend_pid_async(conn) != pid
        assert pool.get_stats()["connections_lost"] == 1
