"""psycopg2 code moved to ferropool: change the import, keep the code.

Run it:  FERROPOOL_DSN="dbname=app" python psycopg2_app.py

Docs: docs/migrating-from-psycopg2.md. Tested by tests/docs/test_examples.py.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg2

# from psycopg2.pool import ThreadedConnectionPool
from ferropool.adapters.dbapi import Pool
from ferropool.adapters.psycopg2 import ThreadedConnectionPool


def with_psycopg2_api(dsn: str) -> int:
    """psycopg2's pool API, unchanged."""
    pool = ThreadedConnectionPool(1, 4, dsn)
    try:
        conn = pool.getconn()
        try:
            with conn.cursor() as cur:
                cur.execute("select 20 + 1")
                (n,) = cur.fetchone()  # type: ignore[misc]
            conn.commit()
        finally:
            pool.putconn(conn)
        return int(n)
    finally:
        pool.closeall()


def with_dbapi_pool(dsn: str) -> Any:
    """Any DB-API driver behind ferropool's own API (here psycopg2)."""
    with Pool(lambda: psycopg2.connect(dsn), min_size=1, max_size=4, name="dbapi") as pool:
        with pool.connection() as conn:
            cur = conn.cursor()
            cur.execute("select 2 * 21")
            (n,) = cur.fetchone()
        return n, pool.get_stats()["requests_num"]


if __name__ == "__main__":
    dsn = os.environ["FERROPOOL_DSN"]
    print(with_psycopg2_api(dsn), with_dbapi_pool(dsn))
