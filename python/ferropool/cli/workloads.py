"""The loops the benchmarks time, and the threads that run them in rounds.

Shared by ``python -m ferropool bench`` and the pytest-benchmark suite in
benches/, so that both measure exactly the same code. Every loop binds the
pool's methods to locals first and treats every pool alike: a loop must
never favour one contender. Nothing here prints or decides what a result
means; that is the scenarios' and the report's business.

Two shapes of loop: a fixed count (``connection_block(pool, n)``, what
pytest-benchmark times) and until a deadline (``Repeat`` and
``select_one_until``, what the bench's fixed-length rounds run).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "GangRound",
    "Pool",
    "Repeat",
    "Tally",
    "ThreadGang",
    "connection_block",
    "getconn_putconn",
    "select_one_until",
]

A = TypeVar("A")
R = TypeVar("R")


class Pool(Protocol):
    """What the loops use of a pool: every contender fits."""

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


@dataclass
class Tally:
    """What one thread did in one round."""

    ops: int = 0
    # Seconds per request, when the loop times each one.
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Repeat:
    """Run a fixed-count loop in batches until a deadline (``perf_counter()`` time).

    Reading the clock once per *batch* keeps its cost out of cheap
    operations: 32 checkouts take ~20 us with ferropool against ~60 ns for
    the clock. At least one batch runs, so every thread does some work.
    """

    loop: Callable[[Pool, int], None]
    pool: Pool
    batch: int

    def __call__(self, deadline: float) -> Tally:
        loop, pool, batch = self.loop, self.pool, self.batch
        ops = 0
        while True:
            loop(pool, batch)
            ops += batch
            if perf_counter() >= deadline:
                return Tally(ops)


def select_one_until(pool: Pool, deadline: float) -> Tally:
    """Requests of one ``select 1`` on a borrowed connection, each timed, until *deadline*."""
    connection = pool.connection
    clock = perf_counter
    latencies: list[float] = []
    record = latencies.append
    while True:
        started = clock()
        with connection() as conn:
            conn.execute("select 1").fetchone()
        finished = clock()
        record(finished - started)
        if finished >= deadline:
            return Tally(len(latencies), latencies)


@dataclass(frozen=True)
class GangRound(Generic[R]):
    """One round of a ThreadGang: its wall time and what each thread returned."""

    seconds: float
    results: list[R]


class ThreadGang(Generic[A, R]):
    """Threads that run one piece of work together, once per ``run()``.

    The threads are started once and park on a barrier between rounds, so a
    round's time covers the work only, not starting and joining threads.
    ``run(argument)`` calls ``work(argument)`` on every thread. Use it as a
    context manager, or call ``close()``: parked threads are daemons, but a
    gang left open keeps them parked until exit.
    """

    def __init__(self, threads: int, work: Callable[[A], R], *, name: str = "bench") -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.threads = threads
        self._work = work
        # One more party than threads: the caller of run() releases the
        # round and waits for its end through the same barriers.
        self._start = threading.Barrier(threads + 1)
        self._done = threading.Barrier(threads + 1)
        self._stopping = False
        self._argument: Any = None
        self._errors: list[BaseException] = []
        self._errors_lock = threading.Lock()
        # Each thread clocks its own start and end of the round in its slot.
        self._started = [0.0] * threads
        self._finished = [0.0] * threads
        self._results: list[Any] = [None] * threads
        self._workers = [
            threading.Thread(target=self._serve, args=(i,), name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for worker in self._workers:
            worker.start()

    def run(self, argument: A) -> GangRound[R]:
        """Run the work once on every thread; return the round's wall time and results.

        The time runs from the first thread starting to the last finishing,
        as the threads themselves clock it: the caller may not get the GIL
        back until long after it released them. An exception raised by the
        work on any thread is raised here, once every thread is done.
        """
        if self._stopping:
            raise RuntimeError("this ThreadGang is closed")
        self._argument = argument
        self._start.wait()
        self._done.wait()
        if self._errors:
            error, self._errors = self._errors[0], []
            raise error
        return GangRound(max(self._finished) - min(self._started), list(self._results))

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

    def __enter__(self) -> ThreadGang[A, R]:
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
                self._results[slot] = self._work(self._argument)
            except BaseException as ex:
                with self._errors_lock:
                    self._errors.append(ex)
            self._finished[slot] = perf_counter()
            try:
                self._done.wait()
            except threading.BrokenBarrierError:
                return
