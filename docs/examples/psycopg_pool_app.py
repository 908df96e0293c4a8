"""Code written for psycopg_pool, on ferropool: only the import changes.

Run it:  FERROPOOL_DSN="dbname=app" python psycopg_pool_app.py

Docs: docs/migrating-from-psycopg-pool.md. Tested by tests/docs/test_examples.py.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

# from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from ferropool import AsyncConnectionPool, ConnectionPool, PoolTimeout


def sync_part(dsn: str) -> dict[str, int]:
    with ConnectionPool(
        dsn, min_size=2, max_size=4, check=ConnectionPool.check_connection, open=True
    ) as pool:
        pool.wait()
        with pool.connection() as conn:
            conn.execute("create table if not exists psycopg_pool_example (x int)")
            conn.execute("insert into psycopg_pool_example values (1)")  # committed on exit
        conn = pool.getconn()
        try:
            conn.execute("select 1")
        finally:
            pool.putconn(conn)  # rolled back: it was left in a transaction
        held = [pool.getconn() for _ in range(4)]
        try:
            pool.getconn(timeout=0.1)
        except PoolTimeout:
            pass  # every connection is lent: psycopg_pool's exception, after 0.1 s
        finally:
            for c in held:
                pool.putconn(c)
        return pool.get_stats()


async def async_part(dsn: str) -> Any:
    async with (
        AsyncConnectionPool(dsn, min_size=1, max_size=2) as pool,
        pool.connection() as conn,
    ):
        cur = await conn.execute("select 40 + 2")
        return (await cur.fetchone())[0]  # type: ignore[index]


if __name__ == "__main__":
    dsn = os.environ["FERROPOOL_DSN"]
    print(sync_part(dsn), asyncio.run(async_part(dsn)))
