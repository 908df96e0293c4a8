"""Misuse and interruptions at random moments: the pool loses nothing.

Two scenarios, one per way a program is interrupted:

* async: many requests, each cancelled at a random moment (waiting in the
  queue, inside a check, an on_checkout hook, the block, the reset), on a
  pool of 3 with every callback awaiting;
* sync: Ctrl-C (SIGINT) delivered to the main thread at random moments while
  it borrows from an exhausted pool that other threads keep busy.

After each, every connection is counted (idle, or replaced after a discard),
none was lent to two borrowers at once, and the pool serves requests. The
figures go to RELIABILITY.md ("misuse and interruptions"); FERROPOOL_LONG=1
runs longer.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ferropool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from tests.fixtures.helpers import DEADLINE, wait_until
from tests.fixtures.reliability import by_mode, report, time_limit

POOL_SIZE = 3


class Holders:
    """Who holds each connection now: a second holder is a double lend."""

    def __init__(self) -> None:
        self._held: set[int] = set()
        self.double_lends = 0

    def take(self, conn: Any) -> None:
        if id(conn) in self._held:
            self.double_lends += 1
        self._held.add(id(conn))

    def drop(self, conn: Any) -> None:
        self._held.discard(id(conn))


@pytest.mark.anyio
@time_limit(120, 900)
async def test_cancelled_requests_lose_no_connection(dsn: str) -> None:
    rng = random.Random(1234)
    holders = Holders()

    async def pause(conn: Any = None) -> None:
        await asyncio.sleep(rng.uniform(0, 0.004))

    async def reset(conn: Any) -> None:
        await pause()
        await conn.execute("select 1")

    async with AsyncConnectionPool(
        dsn,
        min_size=POOL_SIZE,
        check=pause,
        on_checkout=pause,
        reset=reset,
        timeout=DEADLINE,
    ) as pool:
        await pool.wait(timeout=DEADLINE)

        async def request() -> None:
            async with pool.connection() as conn:
                holders.take(conn)
                try:
                    await conn.execute("select pg_sleep(0.001)")
                    await pause()
                finally:
                    holders.drop(conn)

        cancelled = served = 0
        rounds = by_mode(150, 1500)
        for _ in range(rounds):
            tasks = [asyncio.create_task(request()) for _ in range(POOL_SIZE * 2)]
            await asyncio.sleep(rng.uniform(0, 0.01))
            for t in tasks:
                if rng.random() < 0.5:
                    t.cancel()
            for t in tasks:
                try:
                    await t
                    served += 1
                except asyncio.CancelledError:
                    cancelled += 1
        for _ in range(int(DEADLINE / 0.01)):
            if pool.get_stats()["pool_available"] == POOL_SIZE:
                break
            await asyncio.sleep(0.01)
        stats = pool.get_stats()
        assert stats["pool_available"] == POOL_SIZE, stats
        assert stats["pool_size"] == POOL_SIZE, stats
        assert holders.double_lends == 0
        async with pool.connection() as conn:  # still serving
            await conn.execute("select 1")
    report(
        "misuse_and_interruptions",
        "ferropool",
        kind="cancelled tasks (async)",
        requests=cancelled + served,
        cancelled=cancelled,
        served=served,
        double_lends=holders.double_lends,
        connections_lost=POOL_SIZE - stats["pool_available"],
        replaced=stats["connections_num"] - POOL_SIZE,
    )


@pytest.fixture
def python_sigint_handler() -> Iterator[None]:
    """Python's own SIGINT handler (KeyboardInterrupt) for the test: a Python
    started in the background by a non-interactive shell ignores SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def interrupted_finalizers() -> Iterator[list[type[BaseException]]]:
    """The exceptions Python could only report as "ignored" (a KeyboardInterrupt
    landing in a finalizer, such as a generator's close). pytest's own hook
    formats each report in Python code, which the next SIGINT can interrupt:
    it then fails the test for its own sake. This one only notes the type."""
    seen: list[type[BaseException]] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda report: seen.append(report.exc_type)
    try:
        yield seen
    finally:
        sys.unraisablehook = previous


@time_limit(120, 900)
@pytest.mark.usefixtures("python_sigint_handler")
def test_ctrl_c_while_borrowing_loses_no_connection(
    dsn: str, interrupted_finalizers: list[type[BaseException]]
) -> None:
    assert threading.current_thread() is threading.main_thread()
    rng = random.Random(4321)
    holders = Holders()
    stop = threading.Event()

    with ConnectionPool(dsn, min_size=POOL_SIZE, open=True, timeout=DEADLINE) as pool:
        pool.wait(timeout=DEADLINE)

        def busy() -> None:
            # Keep the pool exhausted most of the time, returning
            # connections at random moments: the main thread waits for them.
            while not stop.is_set():
                try:
                    conn = pool.getconn(timeout=0.05)
                except PoolTimeout:
                    continue
                holders.take(conn)
                time.sleep(rng.uniform(0, 0.003))
                holders.drop(conn)
                pool.putconn(conn)

        def interrupter() -> None:
            while True:
                time.sleep(rng.uniform(0.001, 0.01))
                if stop.is_set():
                    return
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

        signals = threading.Thread(target=interrupter)
        workers = [threading.Thread(target=busy) for _ in range(POOL_SIZE)]
        workers.append(signals)
        interrupts = served = 0
        end = time.monotonic() + by_mode(3.0, 30.0)
        for w in workers:
            w.start()
        try:
            while time.monotonic() < end:
                try:
                    with pool.connection(timeout=DEADLINE) as conn:
                        holders.take(conn)
                        try:
                            conn.execute("select 1")
                        finally:
                            holders.drop(conn)
                    served += 1
                except KeyboardInterrupt:
                    interrupts += 1
        finally:
            stop.set()
            # The last SIGINT may still be on its way: let it land here,
            # until the thread sending them has ended.
            while any(w.is_alive() for w in workers):
                try:
                    for w in workers:
                        w.join()
                except KeyboardInterrupt:
                    interrupts += 1
        wait_until(lambda: pool.get_stats()["pool_available"] == POOL_SIZE, what="all back")
        stats = pool.get_stats()
        assert stats["pool_size"] == POOL_SIZE, stats
        assert holders.double_lends == 0
    assert interrupts > 0, "no interrupt landed: the scenario tested nothing"
    # Only Ctrl-C itself may have been reported as ignored, nothing it caused.
    assert set(interrupted_finalizers) <= {KeyboardInterrupt}, interrupted_finalizers
    report(
        "misuse_and_interruptions",
        "ferropool",
        kind="Ctrl-C (sync)",
        borrows=served,
        interrupts=interrupts,
        double_lends=holders.double_lends,
        connections_lost=POOL_SIZE - stats["pool_available"],
        replaced=stats["connections_num"] - POOL_SIZE,
    )
