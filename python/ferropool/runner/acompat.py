"""The primitives where an async module and its generated sync twin differ.

Async sources use the ``A``-named primitives; tools/async_to_sync.py renames
them to the plain ones (``asleep`` to ``sleep``, ``AQueue`` to ``Queue``,
``aspawn`` to ``spawn``...), so one source reads right in both worlds. Keep
each pair's behaviour the same: nothing here may hold a lock while running
user code.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias, TypeVar

logger = logging.getLogger("ferropool")

T = TypeVar("T")


class Event(threading.Event):
    def wait_timeout(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds; True if the event was set."""
        return self.wait(min(timeout, threading.TIMEOUT_MAX))


class AEvent(asyncio.Event):
    async def wait_timeout(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds; True if the event was set."""
        try:
            await asyncio.wait_for(self.wait(), min(timeout, threading.TIMEOUT_MAX))
        except asyncio.TimeoutError:
            return False
        return True


Lock = threading.Lock
ALock = asyncio.Lock
Queue = queue.SimpleQueue
AQueue = asyncio.Queue
sleep = time.sleep
Worker: TypeAlias = threading.Thread
AWorker: TypeAlias = "asyncio.Task[None]"


async def asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def spawn(fn: Callable[..., Any], args: tuple[Any, ...], name: str) -> threading.Thread:
    """Run ``fn(*args)`` in a daemon thread."""
    t = threading.Thread(target=fn, args=args, name=name, daemon=True)
    t.start()
    return t


def aspawn(
    fn: Callable[..., Coroutine[Any, Any, None]], args: tuple[Any, ...], name: str
) -> asyncio.Task[None]:
    """Run ``fn(*args)`` as a task on the running loop."""
    return asyncio.get_running_loop().create_task(fn(*args), name=name)


def join(workers: list[threading.Thread], timeout: float, pool: str) -> None:
    """Wait up to *timeout* seconds for *workers* to end; warn for the rest."""
    me = threading.current_thread()
    deadline = time.monotonic() + min(timeout, threading.TIMEOUT_MAX)
    for t in workers:
        if t is not me:
            t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive() and t is not me:
            logger.warning(
                "couldn't stop thread %s in pool %r within %s seconds", t.name, pool, timeout
            )


async def ajoin(workers: list[asyncio.Task[None]], timeout: float, pool: str) -> None:
    """Wait up to *timeout* seconds for *workers* to end; cancel the rest."""
    me = asyncio.current_task()
    workers = [t for t in workers if t is not me and not t.done()]
    if not workers:
        return
    _, pending = await asyncio.wait(workers, timeout=min(timeout, threading.TIMEOUT_MAX))
    for t in pending:
        logger.warning(
            "couldn't stop task %s in pool %r within %s seconds", t.get_name(), pool, timeout
        )
        t.cancel()


def maybe(value: T) -> T:
    """A callback's result (sync twin of `amaybe`)."""
    return value


async def amaybe(value: Any) -> Any:
    """A callback's result, awaited if the callback was a coroutine function."""
    return await value if inspect.isawaitable(value) else value
