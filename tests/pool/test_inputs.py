"""Arguments psycopg_pool takes that ferropool refused or choked on.

- A subscripted connection class, ``psycopg.Connection[DictRow]`` with
  ``kwargs={"row_factory": dict_row}``, as psycopg's docs show: accepted by
  every pool, sync and async, and its rows are dicts.
- ``math.inf`` seconds mean "never": a request with ``timeout=inf`` waits
  as long as it takes, ``max_lifetime=inf`` never expires a connection, and
  every duration reads back as given. NaN and negative values are still
  refused, naming the parameter.
- A ``name`` that is not valid text (a lone surrogate, as a bytes name
  decoded with ``surrogateescape`` gives): refused naming ``name``, where it
  raised a bare UnicodeEncodeError.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import typing
from typing import Any

import psycopg
import pytest
from psycopg.rows import DictRow, dict_row

from ferropool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    ConnectionPool,
    NullConnectionPool,
)
from ferropool.adapters.dbapi import Pool as DbapiPool
from tests.fixtures.helpers import DEADLINE, backend_pid, wait_until
from tests.fixtures.helpers_async import queued

INF = math.inf
SYNC_POOLS = [ConnectionPool, NullConnectionPool]
ASYNC_POOLS = [AsyncConnectionPool, AsyncNullConnectionPool]


# ---- subscripted connection classes ---------------------------------------------


@pytest.mark.parametrize("cls", SYNC_POOLS)
def test_subscripted_connection_class_gives_dict_rows(dsn: str, cls: Any) -> None:
    with cls(
        dsn,
        connection_class=psycopg.Connection[DictRow],
        kwargs={"row_factory": dict_row},
        open=True,
    ) as pool:
        # Kept as given, as psycopg_pool keeps it.
        assert pool.connection_class == psycopg.Connection[DictRow]
        with pool.connection(timeout=DEADLINE) as conn:
            assert type(conn) is psycopg.Connection
            assert conn.execute("select 1 as x").fetchone() == {"x": 1}


@pytest.mark.anyio
@pytest.mark.parametrize("cls", ASYNC_POOLS)
async def test_subscripted_async_connection_class_gives_dict_rows(dsn: str, cls: Any) -> None:
    async with cls(
        dsn,
        connection_class=psycopg.AsyncConnection[DictRow],
        kwargs={"row_factory": dict_row},
    ) as pool:
        assert pool.connection_class == psycopg.AsyncConnection[DictRow]
        async with pool.connection(timeout=DEADLINE) as conn:
            assert type(conn) is psycopg.AsyncConnection
            cur = await conn.execute("select 1 as x")
            assert await cur.fetchone() == {"x": 1}


class NoConnect:
    pass


@pytest.mark.parametrize(
    "value",
    [
        list[int],
        dict[str, Any],
        typing.List[int],  # noqa: UP006 - typing's alias, a different type
        typing.Optional[psycopg.Connection[DictRow]],  # noqa: UP045
        typing.Union[psycopg.Connection[Any], int],  # noqa: UP007
        dict_row,  # callable, but not a class
        NoConnect,
        int,
        "psycopg.Connection",
    ],
    ids=lambda v: repr(v)[:40],
)
def test_connection_class_refuses_what_cannot_connect(dsn: str, value: object) -> None:
    with pytest.raises(TypeError) as info:
        ConnectionPool(dsn, connection_class=value, open=False)  # type: ignore[call-overload,arg-type]
    assert "connection_class" in str(info.value)
    assert repr(value) in str(info.value)


# ---- names ----------------------------------------------------------------------


def _constructors(dsn: str) -> list[Any]:
    return [
        lambda name: ConnectionPool(dsn, name=name, open=False),
        lambda name: NullConnectionPool(dsn, name=name, open=False),
        lambda name: AsyncConnectionPool(dsn, name=name, open=False),
        lambda name: AsyncNullConnectionPool(dsn, name=name, open=False),
        lambda name: DbapiPool(lambda: psycopg.connect(dsn), name=name, open=False),
    ]


@pytest.mark.parametrize("name", ["\ud800", "orders-\udcff", "\udfff\ud800"])
def test_a_name_that_is_not_text_is_refused_naming_it(dsn: str, name: str) -> None:
    for make in _constructors(dsn):
        with pytest.raises(ValueError) as info:
            make(name)
        message = str(info.value)
        assert message.startswith("name "), message
        assert repr(name) in message, message


@pytest.mark.parametrize("name", ["é-ü-漢字", "🐘 pool", "a b\tc", ""])
def test_any_text_is_a_name(dsn: str, name: str) -> None:
    with ConnectionPool(dsn, name=name, min_size=1, open=True) as pool:
        if name:
            assert pool.name == name
        with pool.connection(timeout=DEADLINE) as conn:
            conn.execute("select 1")


# ---- infinity means never -------------------------------------------------------

DURATIONS = ("timeout", "max_lifetime", "max_idle", "reconnect_timeout")
OPTIONAL_DURATIONS = ("liveness_bypass", "keepalive_interval", "leak_timeout")


def test_infinite_durations_read_back_as_given(dsn: str) -> None:
    everything = dict.fromkeys(DURATIONS + OPTIONAL_DURATIONS, INF)
    for cls in (*SYNC_POOLS, *ASYNC_POOLS):
        pool = cls(dsn, open=False, **everything)
        assert {k: getattr(pool, k) for k in everything} == everything, cls.__name__
    pool = ConnectionPool(dsn, open=False)
    for attr in ("max_lifetime", "max_idle", "reconnect_timeout", "liveness_bypass"):
        setattr(pool, attr, INF)
        assert getattr(pool, attr) == INF, attr
    pool.keepalive_interval = INF
    assert pool.keepalive_interval == INF
    # Finite again afterwards: nothing sticks.
    pool.max_lifetime = 12.5
    assert pool.max_lifetime == 12.5


@pytest.mark.parametrize("value", [math.nan, -math.inf, -1.0])
@pytest.mark.parametrize("param", DURATIONS + OPTIONAL_DURATIONS)
def test_nan_and_negative_durations_are_refused_naming_them(
    dsn: str, param: str, value: float
) -> None:
    for cls in (*SYNC_POOLS, *ASYNC_POOLS):
        with pytest.raises(ValueError) as info:
            cls(dsn, open=False, **{param: value})
        assert param in str(info.value)
        assert str(value) in str(info.value)


@pytest.mark.parametrize("cls", SYNC_POOLS)
def test_infinite_timeout_waits_until_served(dsn: str, cls: Any) -> None:
    sizes = {} if cls is NullConnectionPool else {"min_size": 1}
    with cls(dsn, max_size=1, timeout=INF, open=True, **sizes) as pool:
        held = pool.getconn()
        served: list[int] = []

        def request() -> None:
            with pool.connection() as conn:
                served.append(conn.execute("select 1").fetchone()[0])

        t = threading.Thread(target=request)
        t.start()
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="the request queued")
        pool.putconn(held)
        t.join(DEADLINE)
        assert served == [1]
        with pool.connection(timeout=INF) as conn:
            conn.execute("select 1")


@pytest.mark.anyio
@pytest.mark.parametrize("cls", ASYNC_POOLS)
async def test_infinite_timeout_waits_until_served_async(dsn: str, cls: Any) -> None:
    sizes = {} if cls is AsyncNullConnectionPool else {"min_size": 1}
    async with cls(dsn, max_size=1, timeout=INF, **sizes) as pool:
        held = await pool.getconn()

        async def request() -> Any:
            async with pool.connection() as conn:
                return await (await conn.execute("select 1")).fetchone()

        task = asyncio.create_task(request())
        await queued(pool, 1)
        await pool.putconn(held)
        assert await asyncio.wait_for(task, DEADLINE) == (1,)
        async with pool.connection(timeout=INF) as conn:
            await conn.execute("select 1")


def test_open_wait_and_close_with_no_time_limit(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=2, open=False)
    pool.open(wait=True, timeout=INF)
    assert pool.get_stats()["pool_available"] == 2
    pool.wait(timeout=INF)
    pool.close(timeout=INF)
    assert pool.closed


@pytest.mark.anyio
async def test_open_wait_and_close_with_no_time_limit_async(dsn: str) -> None:
    pool = AsyncConnectionPool(dsn, min_size=2, open=False)
    await pool.open(wait=True, timeout=INF)
    assert pool.get_stats()["pool_available"] == 2
    await pool.wait(timeout=INF)
    await pool.close(timeout=INF)
    assert pool.closed


def test_infinite_max_lifetime_never_expires_a_connection(dsn: str) -> None:
    """The sweep runs often (keepalive pings every 20 ms), yet the one
    connection is the same backend throughout, never retired; with a finite
    lifetime as short, it is replaced."""

    def backends(max_lifetime: float) -> tuple[set[int], dict[str, int]]:
        pids: set[int] = set()
        with ConnectionPool(
            dsn,
            min_size=1,
            max_lifetime=max_lifetime,
            keepalive_interval=0.02,
            open=True,
        ) as pool:
            pool.wait(timeout=DEADLINE)
            for _ in range(20):
                with pool.connection(timeout=DEADLINE) as conn:
                    pids.add(backend_pid(conn))
                time.sleep(0.03)
            return pids, pool.get_stats()

    pids, stats = backends(INF)
    assert len(pids) == 1
    assert stats["connections_num"] == 1
    assert stats["connections_retired"] == 0
    assert stats["keepalive_pings"] > 0, "the sweep ran"
    # The control: the same use with a 0.1 s lifetime replaces the connection.
    pids, stats = backends(0.1)
    assert len(pids) > 1
    assert stats["connections_retired"] > 0
