"""Maintenance workers: the core's actions carried out off the request path.

The core decides (open a connection on this ticket, close that one, ping
this one, report that lease); ``num_workers`` workers do the driver work.
In the sync pools each worker is a thread that waits for the core's next
action with the GIL released. In the async pools the workers are tasks on
an event loop, fed by one dispatcher thread that waits for the core; when
that loop ends (``asyncio.run()`` per job, a loop per test) the actions it
had not run are kept, and the workers start again on the next loop that
uses the pool.

Workers hold the runner only weakly, so a pool dropped without close() is
still collected (its connections are then closed here). A worker must
never die of an exception, whatever a callback raises: a dead worker would
silently stop the pool refilling.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .._core import Action, ActionKind
from .acompat import AWorker, ajoin, aspawn, spawn

if TYPE_CHECKING:
    from .runner_async import AsyncRunner

logger = logging.getLogger("ferropool")


# How long a wait for the core's next action lasts before looking whether
# the pool still exists (one dropped without close()).
IDLE_POLL = 5.0


class AsyncWorkers:
    """The maintenance workers of one pool."""

    def __init__(self, runner: AsyncRunner[Any]) -> None:
        self._runner_ref = weakref.ref(runner)
        self._core = runner.core
        self._driver = runner.driver
        self._name = runner.name
        self._count = runner.settings.workers
        self._workers: list[AWorker] = []
        if True:  # ASYNC
            # Actions taken from the core, for the worker tasks; a deque so
            # that those a closed loop never ran are still here.
            self._pending: collections.deque[Action | None] = collections.deque()
            self._lock = threading.Lock()
            self._loop: asyncio.AbstractEventLoop | None = None
            self._wakeup = asyncio.Event()
            self._dispatcher: threading.Thread | None = None

    def start(self) -> None:
        """Start the workers (the async ones on the running loop), unless
        they run already."""
        if not self._count or self.running:
            return
        if True:  # ASYNC
            with self._lock:
                self._loop = asyncio.get_running_loop()
                self._wakeup = asyncio.Event()
            if self._dispatcher is None or not self._dispatcher.is_alive():
                self._dispatcher = spawn(self._dispatch, (), f"{self._name}-dispatcher")
        self._workers = [
            aspawn(self._work, (), f"{self._name}-worker-{i}") for i in range(self._count)
        ]

    @property
    def running(self) -> bool:
        """Whether the workers were started (and, async, their loop lives)."""
        if True:  # ASYNC
            loop = self._loop
            return bool(self._workers) and loop is not None and not loop.is_closed()
        else:
            return bool(self._workers)

    def ensure_running(self) -> None:
        """Restart the workers on the running loop if theirs has ended."""
        if True:  # ASYNC
            if not self._count or not self._core.is_open or self.running:
                return
            self.start()
            if self._pending:
                self._wakeup.set()

    async def join(self, timeout: float) -> None:
        """Wait up to *timeout* seconds for the workers to end (after the core
        was closed, which sends them a stop)."""
        workers, self._workers = self._workers, []
        if True:  # ASYNC
            loop = self._loop
            if loop is None or loop.is_closed() or loop is not asyncio.get_running_loop():
                return  # their loop is gone, or not ours to wait on
        await ajoin(workers, timeout, self._name)

    # ---- the workers ------------------------------------------------------------

    async def _next(self) -> Action | None:
        """The next action to carry out; None: stop."""
        if True:  # ASYNC
            while True:
                if self._pending:
                    return self._pending.popleft()
                self._wakeup.clear()
                if not self._pending:
                    await self._wakeup.wait()
        else:
            while True:
                try:
                    action = self._core.next_action(IDLE_POLL)
                except BaseException as ex:  # the interpreter is shutting down
                    logger.debug("worker stopping: %s", ex.__class__.__name__)
                    return None
                if action is not None:
                    return None if action.kind == ActionKind.STOP else action
                if self._runner_ref() is None:
                    self._abandon()

    async def _work(self) -> None:
        while (action := await self._next()) is not None:
            runner = self._runner_ref()
            try:
                await self._carry_out(runner, action)
            except asyncio.CancelledError:
                raise
            except BaseException as ex:
                # Anything a callback raises, SystemExit included: log it
                # and keep the worker, or the pool would stop refilling.
                logger.warning(
                    "maintenance action failed in pool %r: %s: %s",
                    self._name,
                    ex.__class__.__name__,
                    runner.describe(ex) if runner is not None else ex.__class__.__name__,
                )
            del runner

    if True:  # ASYNC

        def _dispatch(self) -> None:
            """The dispatcher thread: the core's actions, posted to the loop."""
            while True:
                try:
                    action = self._core.next_action(IDLE_POLL)
                except BaseException as ex:  # the interpreter is shutting down
                    logger.debug("dispatcher stopping: %s", ex.__class__.__name__)
                    return
                if action is None:
                    if self._runner_ref() is None:
                        self._abandon()  # the core's stop follows
                    continue
                if action.kind == ActionKind.STOP:
                    for _ in range(self._count):
                        self._post(None)
                    return
                self._post(action)

        def _post(self, item: Action | None) -> None:
            self._pending.append(item)
            with self._lock:
                loop, wakeup = self._loop, self._wakeup
            if loop is None:
                return
            # A closed loop: the next loop that uses the pool runs the action.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wakeup.set)

    async def _carry_out(self, runner: AsyncRunner[Any] | None, action: Action) -> None:
        """One maintenance action; for a pool that is gone, only cleanup."""
        kind, ticket = action.kind, action.ticket
        if kind == ActionKind.CLOSE:
            if runner is not None:
                await runner.close_connection(action.conn, action.reason or "")
            else:
                await self._driver.close(action.conn)
        elif runner is None:
            if kind == ActionKind.CREATE and ticket is not None:
                # Nobody will open it: give the reserved capacity back.
                self._core.connect_failed(ticket, "the pool was garbage-collected")
            self._abandon()
        elif kind == ActionKind.CREATE and ticket is not None:
            await runner.open_connection(ticket)
        elif kind == ActionKind.VALIDATE and ticket is not None:
            await runner.validate(ticket)
        elif kind == ActionKind.LEAK and action.leak is not None:
            await runner.on_leak(action.leak.key, action.leak.held, action.leak.first)

    def _abandon(self) -> None:
        """The pool was dropped without close(): close what the core holds."""
        for conn in self._core.close():
            self._driver.abort(conn)
