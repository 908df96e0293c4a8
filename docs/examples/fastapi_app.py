"""FastAPI on ferropool: an AsyncConnectionPool opened by the app's lifespan.

Run it:  FERROPOOL_DSN="dbname=app" uvicorn fastapi_app:app

Docs: docs/guides/fastapi.md. Tested by tests/docs/test_examples.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg import AsyncConnection

from ferropool import AsyncConnectionPool, PoolTimeout


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Opened on the server's event loop, closed when the server stops.
    async with AsyncConnectionPool(
        os.environ["FERROPOOL_DSN"], min_size=2, max_size=10, timeout=5.0, name="fastapi"
    ) as pool:
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    """A dependency lending a connection for the request: committed if the
    handler returns, rolled back if it raises, then given back."""
    async with request.app.state.pool.connection() as conn:
        yield conn


Conn = Annotated[AsyncConnection[Any], Depends(connection)]


@app.get("/double/{n}")
async def double(n: int, conn: Conn) -> dict[str, int]:
    cur = await conn.execute("select %s::int * 2", (n,))
    row = await cur.fetchone()
    assert row is not None
    return {"n": n, "double": row[0]}


@app.get("/stats")
async def stats(request: Request) -> dict[str, int]:
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    return pool.get_stats()


@app.exception_handler(PoolTimeout)
async def busy(request: Request, exc: PoolTimeout) -> JSONResponse:
    return JSONResponse({"error": "database busy, try again"}, status_code=503)
