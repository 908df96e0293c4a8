"""Worker threads that carry out the core's maintenance actions.

The core decides (open a connection on this ticket, close that one); these
threads do the driver work, with the GIL released while they wait for the
next action. They hold the pool only through a weak reference, so a pool
dropped without close() is still garbage-collected, and they must never let
an exception escape: a dead worker would silently stop the pool refilling.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from . import _core
from ._core import ActionKind

if TYPE_CHECKING:
    from .pool import ConnectionPool

logger = logging.getLogger("ferropool")

# How long a worker waits for an action before looking whether its pool
# still exists (a pool garbage-collected without close()).
_IDLE_POLL = 5.0


def close_quietly(conn: Any) -> None:
    """Close a connection the pool no longer counts, logging any failure."""
    try:
        with contextlib.suppress(AttributeError):  # DB-API objects without __dict__
            conn._pool = None
        conn.close()
    except Exception as ex:
        logger.warning("error closing connection: %s", ex.__class__.__name__)


def abandon(core: _core.Core) -> None:
    """The pool is gone: close the core and every connection it still held."""
    for conn in core.close():
        close_quietly(conn)


class Workers:
    """The pool's maintenance threads."""

    def __init__(self, core: _core.Core, pool: ConnectionPool[Any], count: int) -> None:
        self._core = core
        self._pool_ref = weakref.ref(pool)
        self._name = pool.name
        self._count = count
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self._count):
            t = threading.Thread(
                target=_run,
                args=(self._core, self._pool_ref),
                name=f"{self._name}-worker-{i}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def join(self, timeout: float) -> None:
        """Wait for the workers to finish after the core was closed."""
        threads, self._threads = self._threads, []
        me = threading.current_thread()
        for t in threads:
            if t is me:
                continue
            t.join(min(timeout, threading.TIMEOUT_MAX))
            if t.is_alive():
                logger.warning(
                    "couldn't stop thread %s in pool %r within %s seconds",
                    t.name,
                    self._name,
                    timeout,
                )


def _run(core: _core.Core, pool_ref: weakref.ref[ConnectionPool[Any]]) -> None:
    while True:
        try:
            action = core.next_action(_IDLE_POLL)
        except BaseException as ex:  # interpreter shutting down
            logger.debug("worker stopping: %s", ex.__class__.__name__)
            return
        if action is None:
            if pool_ref() is None:
                abandon(core)
            continue
        kind, ticket, leak = action.kind, action.ticket, action.leak
        if kind == ActionKind.STOP:
            return
        try:
            pool = pool_ref()
            if kind == ActionKind.CLOSE:
                if pool is not None:
                    pool._close(action.conn, action.reason or "")
                else:
                    close_quietly(action.conn)
            elif pool is None:
                if ticket is not None and kind == ActionKind.CREATE:
                    core.connect_failed(ticket, "the pool was garbage-collected")
                abandon(core)
            elif kind == ActionKind.CREATE and ticket is not None:
                pool._open_connection(ticket)
            elif kind == ActionKind.VALIDATE and ticket is not None:
                pool._validate(ticket)
            elif kind == ActionKind.LEAK and leak is not None:
                pool._on_leak(leak.key, leak.held, leak.first)
            del pool
        except Exception as ex:
            logger.warning(
                "maintenance action failed in pool %r: %s", core.name, ex.__class__.__name__
            )
