"""Maintenance for the async pools: the core's actions as tasks on the loop.

One thread waits for the core's next action (the core keeps the timers:
retries, idle sweeps) with the GIL released, and hands each action to the
pool's event loop, where ``num_workers`` tasks open and close connections
with the async driver. The thread holds the pool only weakly and never runs
driver code itself; the tasks never block the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from . import _core
from ._core import Action, ActionKind

if TYPE_CHECKING:
    from .pool_async import AsyncConnectionPool

logger = logging.getLogger("ferropool")

# How long the dispatcher waits for an action before looking whether its
# pool still exists.
_IDLE_POLL = 5.0


async def close_quietly_async(conn: Any) -> None:
    """Close an async connection the pool no longer counts."""
    try:
        conn._pool = None
        await conn.close()
    except BaseException as ex:
        # Closing must finish even if this task is being cancelled: the
        # socket is released synchronously.
        logger.warning("error closing connection: %s", ex.__class__.__name__)
        with contextlib.suppress(Exception):
            conn.pgconn.finish()
        if not isinstance(ex, Exception):
            raise


class AsyncWorkers:
    """The dispatcher thread and the worker tasks of one async pool."""

    def __init__(self, core: _core.Core, pool: AsyncConnectionPool[Any], count: int) -> None:
        self._core = core
        self._pool_ref = weakref.ref(pool)
        self._name = pool.name
        self._count = count
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._count:
            return
        queue: asyncio.Queue[Action | None] = asyncio.Queue()
        self._tasks = [
            loop.create_task(_work(queue, self._pool_ref), name=f"{self._name}-worker-{i}")
            for i in range(self._count)
        ]
        self._thread = threading.Thread(
            target=_dispatch,
            args=(self._core, loop, queue, self._count, self._pool_ref),
            name=f"{self._name}-dispatcher",
            daemon=True,
        )
        self._thread.start()

    async def join(self, timeout: float) -> None:
        """Wait for the tasks to finish after the core was closed."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            logger.warning(
                "couldn't stop task %s in pool %r within %s seconds",
                t.get_name(),
                self._name,
                timeout,
            )
            t.cancel()


def _dispatch(
    core: _core.Core,
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[Action | None],
    workers: int,
    pool_ref: weakref.ref[AsyncConnectionPool[Any]],
) -> None:
    def post(item: Action | None) -> bool:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody will run tasks
            return False
        return True

    while True:
        try:
            action = core.next_action(_IDLE_POLL)
        except BaseException as ex:  # interpreter shutting down
            logger.debug("dispatcher stopping: %s", ex.__class__.__name__)
            return
        if action is None:
            if pool_ref() is None or loop.is_closed():
                abandon(core)
                return
            continue
        if action.kind == ActionKind.STOP:
            for _ in range(workers):
                post(None)
            return
        if not post(action):
            abandon(core)
            return


def abandon(core: _core.Core) -> None:
    """The pool or its loop is gone: release every socket without the loop."""
    for conn in core.close():
        with contextlib.suppress(Exception):
            conn.pgconn.finish()


async def _work(
    queue: asyncio.Queue[Action | None],
    pool_ref: weakref.ref[AsyncConnectionPool[Any]],
) -> None:
    while True:
        action = await queue.get()
        if action is None:
            return
        kind, ticket, leak = action.kind, action.ticket, action.leak
        try:
            pool = pool_ref()
            if kind == ActionKind.CLOSE:
                if pool is not None:
                    await pool._close(action.conn, action.reason or "")
                else:
                    await close_quietly_async(action.conn)
            elif pool is None:
                pass
            elif kind == ActionKind.CREATE and ticket is not None:
                await pool._open_connection(ticket)
            elif kind == ActionKind.VALIDATE and ticket is not None:
                await pool._validate(ticket)
            elif kind == ActionKind.LEAK and leak is not None:
                await pool._on_leak(leak.key, leak.held, leak.first)
            del pool
        except Exception as ex:
            logger.warning("maintenance action failed: %s", ex.__class__.__name__)
