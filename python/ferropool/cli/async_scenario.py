"""The async scenario: 1 to 1,000 asyncio tasks sharing 16 connections.

A ready hook: it runs once ``ferropool.AsyncConnectionPool`` exists (built
separately), and until then the bench reports it as not run, saying why.
It expects psycopg_pool's API, as the rest of ferropool follows it:
``AsyncConnectionPool(conninfo, min_size=, max_size=, open=False, name=)``,
``await pool.open(wait=True, timeout=)``, ``await pool.close()`` and
``async with pool.connection() as conn``.

Contenders: a new connection per request (psycopg.AsyncConnection, at most
16 at once), psycopg_pool.AsyncConnectionPool and ferropool's. SQLAlchemy's
QueuePool is left out: it is thread-based, and its asyncio counterpart only
works inside an AsyncEngine. Every task runs ``select 1`` requests until the
round's deadline, on one event loop, in this thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from time import perf_counter
from typing import Any, Final

import psycopg

from .contenders import (
    FERROPOOL,
    NEW_CONNECTION,
    PSYCOPG_POOL,
    ContenderKind,
    application_name,
    configuration,
)
from .measure import Entry, ScenarioContext, alternate, alternate_steps, summarize
from .plan import Plan
from .progress import Steps
from .results import MeasurementResult, RoundResult
from .workloads import Tally

__all__ = ["CONTENDERS", "DESCRIPTION", "PEAK_CONNECTIONS", "run", "steps", "unavailable"]

CONTENDERS: Final[tuple[ContenderKind, ...]] = (NEW_CONNECTION, PSYCOPG_POOL, FERROPOOL)
TASKS: Final = (1, 10, 100, 1000)
CONNECTIONS: Final = 16
PEAK_CONNECTIONS: Final = len(CONTENDERS) * CONNECTIONS
DESCRIPTION: Final = (
    f"{', '.join(f'{n:,}' for n in TASKS)} asyncio tasks sharing {CONNECTIONS} "
    "connections, select 1 per request: psycopg_pool.AsyncConnectionPool against "
    "ferropool.AsyncConnectionPool (SQLAlchemy's QueuePool is thread-based)"
)
_FILL_TIMEOUT: Final = 60.0


def unavailable() -> str | None:
    """Why the scenario cannot run here, or None."""
    import ferropool

    if not hasattr(ferropool, "AsyncConnectionPool"):
        return "not run: this ferropool has no AsyncConnectionPool yet"
    return None


def steps(plan: Plan) -> Steps:
    return alternate_steps(len(TASKS), len(CONTENDERS), plan)


def run(ctx: ScenarioContext) -> tuple[MeasurementResult, ...]:
    loop = asyncio.new_event_loop()
    try:
        return _run(ctx, loop)
    finally:
        loop.close()


def _run(ctx: ScenarioContext, loop: asyncio.AbstractEventLoop) -> tuple[MeasurementResult, ...]:
    results = []
    # One stack per contender, so that each closes on its own account.
    stacks = {kind: AsyncExitStack() for kind in CONTENDERS}
    try:
        pools: dict[ContenderKind, Any] = {}
        for kind, stack in stacks.items():
            with ctx.meter.charge(kind):
                pools[kind] = loop.run_until_complete(
                    stack.enter_async_context(_open(kind, ctx.conninfo))
                )
        for tasks in TASKS:
            title = f"async: {tasks:,} task{'s' if tasks > 1 else ''}, select 1"
            entries = [
                Entry(kind, configuration(kind), partial(_round, loop, pool, tasks))
                for kind, pool in pools.items()
            ]
            results.append(
                MeasurementResult(
                    f"async.{tasks}",
                    title,
                    "request",
                    threads=1,
                    connections=CONNECTIONS,
                    contenders=alternate(title, entries, ctx),
                    tasks=tasks,
                )
            )
    finally:
        for kind, stack in stacks.items():
            with ctx.meter.charge(kind, closes=True):
                loop.run_until_complete(stack.aclose())
    return tuple(results)


@asynccontextmanager
async def _open(kind: str, conninfo: str) -> AsyncIterator[Any]:
    tagged = psycopg.conninfo.make_conninfo(conninfo, application_name=application_name(kind))
    if kind == NEW_CONNECTION:
        yield AsyncNewConnectionPerRequest(tagged, CONNECTIONS)
        return
    if kind == PSYCOPG_POOL:
        import psycopg_pool

        pool_class: Any = psycopg_pool.AsyncConnectionPool
    else:
        import ferropool

        pool_class = ferropool.AsyncConnectionPool
    pool = pool_class(
        tagged, min_size=CONNECTIONS, max_size=CONNECTIONS, open=False, name=f"bench-{kind}"
    )
    await pool.open(wait=True, timeout=_FILL_TIMEOUT)
    try:
        yield pool
    finally:
        await pool.close()


def _round(loop: asyncio.AbstractEventLoop, pool: Any, tasks: int, seconds: float) -> RoundResult:
    return loop.run_until_complete(_tasks(pool, tasks, perf_counter() + seconds))


async def _tasks(pool: Any, tasks: int, deadline: float) -> RoundResult:
    if isinstance(pool, AsyncNewConnectionPerRequest):
        pool.deadline = deadline
    started = perf_counter()
    tallies = await asyncio.gather(*(_requests(pool, deadline) for _ in range(tasks)))
    return summarize(list(tallies), perf_counter() - started)


async def _requests(pool: Any, deadline: float) -> Tally:
    """Requests of one ``select 1`` on a borrowed connection, each timed, until *deadline*."""
    connection: Callable[[], Any] = pool.connection
    clock = perf_counter
    latencies: list[float] = []
    record = latencies.append
    while True:
        started = clock()
        try:
            async with connection() as conn:
                cursor = await conn.execute("select 1")
                await cursor.fetchone()
        except _RoundOver:
            return Tally(len(latencies), latencies)
        finished = clock()
        record(finished - started)
        if finished >= deadline:
            return Tally(len(latencies), latencies)


class _RoundOver(Exception):
    """A task queued for a new connection when the round ended."""


class AsyncNewConnectionPerRequest:
    """No pool, for asyncio: every request opens a connection, at most *max_open* at once.

    A task still queued for one when the round ends gives up: with 1,000
    tasks, each would otherwise open a connection after the deadline,
    seconds of overshoot that the pools, whose queues drain in
    microseconds per task, do not have.
    """

    def __init__(self, conninfo: str, max_open: int) -> None:
        self._conninfo = conninfo
        self._slots = asyncio.Semaphore(max_open)
        self.deadline = float("inf")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._slots:
            if perf_counter() >= self.deadline:
                raise _RoundOver
            conn = await psycopg.AsyncConnection.connect(self._conninfo)
            # psycopg's own block: commit (or roll back on error), then close.
            async with conn:
                yield conn
