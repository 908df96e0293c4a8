# Generated from workers_async.py by tools/async_to_sync.py: do not edit.
# Change the async source and run `python tools/async_to_sync.py`.
"""Maintenance workers: the core's actions carried out off the request path.

The core decides (open a connection on this ticket, close that one, ping
this one, report that lease); ``num_workers`` workers do the driver work.
In the sync pools each worker is a thread that waits for the core's next
action with the GIL released. In the pools the workers are tasks on
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
import logging
import weakref
from typing import TYPE_CHECKING, Any

from .._core import Action, ActionKind
from .acompat import Worker, join, spawn

if TYPE_CHECKING:
    from .runner import Runner

logger = logging.getLogger("ferropool")


# How long a wait for the core's next action lasts before looking whether
# the pool still exists (one dropped without close()).
IDLE_POLL = 5.0


class Workers:
    """The maintenance workers of one pool."""

    def __init__(self, runner: Runner[Any]) -> None:
        self._runner_ref = weakref.ref(runner)
        self._core = runner.core
        self._driver = runner.driver
        self._name = runner.name
        self._count = runner.settings.workers
        self._workers: list[Worker] = []

    def start(self) -> None:
        """Start the workers (the async ones on the running loop), unless
        they run already."""
        if not self._count or self.running:
            return
        self._workers = [
            spawn(self._work, (), f"{self._name}-worker-{i}") for i in range(self._count)
        ]

    @property
    def running(self) -> bool:
        """Whether the workers were started (and, async, their loop lives)."""
        return bool(self._workers)

    def ensure_running(self) -> None:
        """Restart the workers on the running loop if theirs has ended."""

    def join(self, timeout: float) -> None:
        """Wait up to *timeout* seconds for the workers to end (after the core
        was closed, which sends them a stop)."""
        workers, self._workers = self._workers, []
        join(workers, timeout, self._name)

    # ---- the workers ------------------------------------------------------------

    def _next(self) -> Action | None:
        """The next action to carry out; None: stop."""
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

    def _work(self) -> None:
        while (action := self._next()) is not None:
            runner = self._runner_ref()
            try:
                self._carry_out(runner, action)
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

    def _carry_out(self, runner: Runner[Any] | None, action: Action) -> None:
        """One maintenance action; for a pool that is gone, only cleanup."""
        kind, ticket = action.kind, action.ticket
        if kind == ActionKind.CLOSE:
            if runner is not None:
                runner.close_connection(action.conn, action.reason or "")
            else:
                self._driver.close(action.conn)
        elif runner is None:
            if kind == ActionKind.CREATE and ticket is not None:
                # Nobody will open it: give the reserved capacity back.
                self._core.connect_failed(ticket, "the pool was garbage-collected")
            self._abandon()
        elif kind == ActionKind.CREATE and ticket is not None:
            runner.open_connection(ticket)
        elif kind == ActionKind.VALIDATE and ticket is not None:
            runner.validate(ticket)
        elif kind == ActionKind.LEAK and action.leak is not None:
            runner.on_leak(action.leak.key, action.leak.held, action.leak.first)

    def _abandon(self) -> None:
        """The pool was dropped without close(): close what the core holds."""
        for conn in self._core.close():
            self._driver.abort(conn)
