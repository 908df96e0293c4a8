"""Small tools shared by the async pools' tests.

Like helpers.py, everything here observes the pools from the outside: the
server's own view (pg_stat_activity, committed rows) or the public stats.
Nothing here may block the event loop while a pool needs it: a background
effect awaited with a blocking sleep would never happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
from psycopg import sql

from helpers import DEADLINE


async def wait_until_async(
    predicate: Callable[[], object], timeout: float = DEADLINE, what: str = ""
) -> None:
    """Poll *predicate* while the loop runs; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


async def queued(pool: Any, n: int) -> None:
    """Wait until exactly *n* requests wait in *pool*'s queue."""
    await wait_until_async(
        lambda: pool.get_stats()["requests_waiting"] == n, what=f"{n} requests waiting"
    )


async def available(pool: Any, n: int) -> None:
    """Wait until exactly *n* connections are idle in *pool*."""
    await wait_until_async(
        lambda: pool.get_stats()["pool_available"] == n, what=f"{n} connections available"
    )


async def backend_pid_async(conn: psycopg.AsyncConnection[Any]) -> int:
    """The server process behind *conn*, asked to the server (proves it works)."""
    cur = await conn.execute("select pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    pid: int = row[0]
    if not conn.autocommit:
        await conn.rollback()
    return pid


async def count_backends_async(dsn: str, application_name: str) -> int:
    """How many server connections carry *application_name* right now."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "select count(*) from pg_stat_activity where application_name = %s",
            (application_name,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def wait_backends(dsn: str, application_name: str, expected: int) -> None:
    """Wait until exactly *expected* server connections carry *application_name*."""
    deadline = time.monotonic() + DEADLINE
    while (n := await count_backends_async(dsn, application_name)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{n} server connections, expected {expected}")
        await asyncio.sleep(0.02)


async def terminate_backend_async(dsn: str, pid: int) -> None:
    """Kill one server connection, as a DBA or a failover would."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("select pg_terminate_backend(%s, 5000)", (pid,))
        assert await cur.fetchone() == (True,), f"backend {pid} was not terminated"


def create_table(dsn: str) -> sql.Identifier:
    """A fresh table, to observe commits and rollbacks from outside the pool."""
    name = sql.Identifier(f"async_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create table {} (x int)").format(name))
    return name


def drop_table(dsn: str, table: sql.Identifier) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop table {}").format(table))


async def committed_rows(dsn: str, table: sql.Identifier) -> list[int]:
    """The table's committed content, read on a connection of our own."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(sql.SQL("select x from {} order by x").format(table))
        return [r[0] for r in await cur.fetchall()]


class FreezableProxy:
    """A TCP forwarder to the server on loopback that can stop forwarding.

    While frozen, bytes already sent are held, as on a half-open connection
    (a peer gone silent without a reset): queries neither fail nor answer.
    Runs on the test's event loop; use it with ``async with``.
    """

    def __init__(self, dsn: str) -> None:
        match = re.search(r"\bport=(\d+)", dsn)
        assert match, f"no port in {dsn!r}"
        self._dsn = dsn
        self._target_port = int(match.group(1))
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def dsn(self) -> str:
        """The DSN to reach the server through this proxy."""
        return self._dsn.replace(f"port={self._target_port}", f"port={self.port}")

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    async def __aenter__(self) -> FreezableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.close()
            return
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._thawed.wait()
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.close()


@contextlib.asynccontextmanager
async def holding(pool: Any, n: int) -> AsyncIterator[list[Any]]:
    """Borrow *n* connections for the duration of the block."""
    conns = [await pool.getconn(timeout=DEADLINE) for _ in range(n)]
    try:
        yield conns
    finally:
        for conn in conns:
            await pool.putconn(conn)
