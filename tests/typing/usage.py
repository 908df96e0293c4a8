"""Typed use of the four pools, as psycopg's docs write it: checked by mypy --strict.

tests/typing/test_usage.py runs ``mypy --strict`` on this file (and runs the
functions against a real server, so the examples stay true). Each assertion
is an ``assert_type``: mypy fails the file if a pool, a connection or a row
is not exactly the type a psycopg_pool user gets.

The null pools are in functions of their own, ``null_pool_usage`` and
``async_null_pool_usage``: ``NullConnectionPool(...)`` and
``AsyncNullConnectionPool(...)`` were once ``Any`` to mypy, and
test_usage.py checks them apart.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.rows import DictRow, TupleRow, dict_row
from typing_extensions import assert_type

from ferropool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    ConnectionPool,
    NullConnectionPool,
)


def configure(conn: Connection[DictRow]) -> None:
    conn.execute("set application_name = 'typed'")
    conn.commit()


async def aconfigure(conn: AsyncConnection[DictRow]) -> None:
    await conn.execute("set application_name = 'typed'")
    await conn.commit()


def pool_usage(dsn: str) -> list[DictRow]:
    rows: list[DictRow] = []
    with ConnectionPool(
        dsn,
        connection_class=Connection[DictRow],
        kwargs={"row_factory": dict_row},
        configure=configure,
        min_size=1,
        open=False,
    ) as pool:
        assert_type(pool, ConnectionPool[Connection[DictRow]])
        with pool.connection() as conn:
            assert_type(conn, Connection[DictRow])
            row = conn.execute("select 1 as x").fetchone()
            assert_type(row, "DictRow | None")
            assert row is not None
            rows.append(row)
        conn = pool.getconn()
        assert_type(conn, Connection[DictRow])
        pool.putconn(conn)

    # Without connection_class: psycopg_pool's default, tuple rows.
    with ConnectionPool(dsn, min_size=1, open=False) as plain:
        assert_type(plain, ConnectionPool[Connection[TupleRow]])
        with plain.connection() as tconn:
            assert_type(tconn.execute("select 1").fetchone(), "TupleRow | None")
    return rows


async def async_pool_usage(dsn: str) -> list[DictRow]:
    rows: list[DictRow] = []
    async with AsyncConnectionPool(
        dsn,
        connection_class=AsyncConnection[DictRow],
        kwargs={"row_factory": dict_row},
        configure=aconfigure,
        min_size=1,
        open=False,
    ) as pool:
        assert_type(pool, AsyncConnectionPool[AsyncConnection[DictRow]])
        async with pool.connection() as conn:
            assert_type(conn, AsyncConnection[DictRow])
            cur = await conn.execute("select 1 as x")
            row = await cur.fetchone()
            assert_type(row, "DictRow | None")
            assert row is not None
            rows.append(row)
        conn = await pool.getconn()
        assert_type(conn, AsyncConnection[DictRow])
        await pool.putconn(conn)

    async with AsyncConnectionPool(dsn, min_size=1, open=False) as plain:
        assert_type(plain, AsyncConnectionPool[AsyncConnection[TupleRow]])
    return rows


# ---- null pools: still Any to mypy (see the module docstring) --------------------------


def null_pool_usage(dsn: str) -> list[Any]:
    rows: list[Any] = []
    with NullConnectionPool(
        dsn,
        connection_class=Connection[DictRow],
        kwargs={"row_factory": dict_row},
        open=False,
    ) as pool:
        assert_type(pool, NullConnectionPool[Connection[DictRow]])
        with pool.connection() as conn:
            assert_type(conn, Connection[DictRow])
            row = conn.execute("select 1 as x").fetchone()
            assert_type(row, "DictRow | None")
            rows.append(row)
    with NullConnectionPool(dsn, open=False) as plain:
        assert_type(plain, NullConnectionPool[Connection[TupleRow]])
    return rows


async def async_null_pool_usage(dsn: str) -> list[Any]:
    rows: list[Any] = []
    async with AsyncNullConnectionPool(
        dsn,
        connection_class=AsyncConnection[DictRow],
        kwargs={"row_factory": dict_row},
        open=False,
    ) as pool:
        assert_type(pool, AsyncNullConnectionPool[AsyncConnection[DictRow]])
        async with pool.connection() as conn:
            assert_type(conn, AsyncConnection[DictRow])
            cur = await conn.execute("select 1 as x")
            row = await cur.fetchone()
            assert_type(row, "DictRow | None")
            rows.append(row)
    async with AsyncNullConnectionPool(dsn, open=False) as plain:
        assert_type(plain, AsyncNullConnectionPool[AsyncConnection[TupleRow]])
    return rows
