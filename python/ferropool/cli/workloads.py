"""The loops the benchmarks time, and the threads that run them in rounds.

Shared by ``python -m ferropool bench`` and the pytest-benchmark suite in
benches/, so that both measure exactly the same code. Every loop binds the
pool's methods to locals first and treats every pool alike: a loop must
never favour one contender. Nothing here prints or decides what a result
means; that is the scenarios' and the report's business.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol

__all__ = [
    "Pool",
    "ThreadGang",
    "connection_block",
    "getconn_putconn",
    "new_connection_select_one",
    "pool_select_one",
]


class Pool(Protocol):
    """What the loops use of a pool: ferropool's and psycopg_pool's both fit."""

    def getconn(self, timeout: float | None = None) -> Any: ...

    def putconn(self, conn: Any) -> None: ...

    def connection(self, timeout: float | None = None) -> Any: ...


def getconn_putconn(pool: Pool, iterations: int) -> None:
    """Borrow and give back a connection, *iterations* times."""
    getconn = pool.getconn
    putconn = pool.putconn
    for _ in range(iterations):
        putconn(getconn())


def connection_block(pool: Pool, iterations: int) -> None:
    """Enter and leave an empty ``with pool.connection():`` block, *iterations* times."""
    connection = pool.connection
    for _ in range(iterations):
        with connection():
            pass


def pool_select_one(pool: Pool, requests: int) -> None:
    """Serve *requests* requests of one ``select 1`` on a borrowed connection each."""
    connection = pool.connection
    for _ in range(requests):
        with connection() as conn:
            conn.execute("select 1").fetchone()


def new_connection_select_one(conninfo: str, requests: int) -> None:
    """Serve *requests* requests of one ``select 1``, each on a connection of its own.

    What an application without a pool does: connect (TCP, TLS,
    authentication, a new server process), query, close.
    """
    import psycopg

    connect = psycopg.connect
    for _ in range(requests):
        with connect(conninfo) as conn:
            conn.execute("select 1").fetchone()


class ThreadGang:
    """Threads that run one piece of work together, once per ``run()``.

    The threads are started once and park on a barrier between rounds, so a
    round's time covers the work only, not starting and joining threads.
    Use it as a context manager, or call ``close()``: parked threads are
    daemons, but a gang left open keeps them parked until exit.
    """

    def __init__(self, threads: int, work: Callable[[], None], *, name: str = "bench") -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.threads = threads
        self._work = work
        # One more party than threads: the caller of run() releases the
        # round and waits for its end through the same barriers.
        self._start = threading.Barrier(threads + 1)
        self._done = threading.Barrier(threads + 1)
        self._stopping = False
        self._errors: list[BaseException] = []
        self._errors_lock = threading.Lock()
        # Each thread clocks its own start and end of the round in its slot.
        self._started = [0.0] * threads
        self._finished = [0.0] * threads
        self._workers = [
            threading.Thread(target=self._serve, args=(i,), name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for worker in self._workers:
            worker.start()

    def run(self) -> float:
        """Run the work once on every thread; return the round's wall time in seconds.

        The time runs from the first thread starting to the last finishing,
        as the threads themselves clock it: the caller may not get the GIL
        back until long after it released them. An exception raised by the
        work on any thread is raised here, once every thread is done.
        """
        if self._stopping:
            raise RuntimeError("this ThreadGang is closed")
        self._start.wait()
        self._done.wait()
        if self._errors:
            error, self._errors = self._errors[0], []
            raise error
        return max(self._finished) - min(self._started)

    def close(self) -> None:
        """Let the parked threads exit and wait for them."""
        if self._stopping:
            return
        self._stopping = True
        # Breaking the barriers wakes the parked threads, and any still
        # inside a round (after an interrupt) stop at its end.
        self._start.abort()
        self._done.abort()
        for worker in self._workers:
            worker.join(timeout=10)

    def __enter__(self) -> ThreadGang:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _serve(self, slot: int) -> None:
        while True:
            try:
                self._start.wait()
            except threading.BrokenBarrierError:
                return
            self._started[slot] = perf_counter()
            try:
                self._work()
            except BaseException as ex:
                with self._errors_lock:
                    self._errors.append(ex)
            self._finished[slot] = perf_counter()
            try:
                self._done.wait()
            except threading.BrokenBarrierError:
                return
