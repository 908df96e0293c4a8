"""pool.advice() and the advice watcher, on real pools put in each condition.

Too small: one connection, several threads that keep wanting it. Too large:
eight connections, one thread. Leaking: every connection taken and held.
The windows are shortened to about a second (the defaults are minutes), so
each test runs its load for a little longer than that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ferropool import AsyncConnectionPool, ConnectionPool
from ferropool.metrics.advice import Advisor, Finding, advisor_for, watch
from tests.fixtures.helpers import DEADLINE, Threads, wait_until

# Advisor thresholds for tests: a window of seconds, not minutes.
FAST = {"window": 10.0, "min_window": 1.0, "leak_after": 1.0}
INTERVAL = 0.05


def run_for(seconds: float, threads: int, work: Callable[[], None]) -> None:
    """Run *work* in a loop on *threads* threads for *seconds*."""
    stop = time.monotonic() + seconds
    pool_threads = Threads()

    def loop() -> None:
        while time.monotonic() < stop:
            work()

    for _ in range(threads):
        pool_threads.start(loop)
    pool_threads.join(seconds + DEADLINE)


def kinds(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


def advice_records(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "ferropool"
        and getattr(r, "ferropool_finding", None) is not None
        and r.ferropool_finding.kind == kind
    ]


def test_too_small_when_requests_keep_waiting(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    with ConnectionPool(dsn, min_size=1, max_size=1, name="tiny", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        with watch(pool, INTERVAL, **FAST) as watcher:

            def work() -> None:
                with pool.connection(timeout=DEADLINE):
                    time.sleep(0.01)

            run_for(1.5, 4, work)
            findings = pool.advice()
            assert watcher.running
        assert kinds(findings) == ["too_small"]
        finding = findings[0]
        assert finding.pool == "tiny"
        assert "looks too small" in finding.message and "max_size=1" in finding.message
        assert finding.evidence["max_size"] == 1
        assert finding.evidence["queued"] > 10
        assert finding.evidence["waiting_samples_share"] >= 0.5
        # Three threads waiting most of the time, one holding: demand ~4.
        assert finding.evidence["mean_waiting"] > 1
        # Logged once, although it was found at every sample for a second.
        logged = advice_records(caplog, "too_small")
        assert len(logged) == 1
        assert logged[0].levelno == logging.WARNING
        assert "looks too small" in logged[0].getMessage()


def test_too_small_from_two_advice_calls(dsn: str) -> None:
    # No watcher: the Advisor compares two calls, one before and one after
    # a load where each borrower waits ~0.2 s (slow_wait is 0.1 s).
    with ConnectionPool(dsn, min_size=1, max_size=1, name="tiny", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        advisor = Advisor(pool, window=10, min_window=0.5)
        assert advisor.advise() == []

        def work() -> None:
            with pool.connection(timeout=DEADLINE):
                time.sleep(0.1)

        run_for(1.0, 3, work)
        findings = advisor.advise()
        assert kinds(findings) == ["too_small"]
        assert findings[0].evidence["wait_p90_s"] >= 0.1
        assert len(advisor.samples) == 2


def test_too_large_when_few_connections_are_used(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=8, max_size=8, name="big", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        with watch(pool, INTERVAL, **FAST):

            def work() -> None:
                with pool.connection() as conn:
                    conn.execute("select 1")
                time.sleep(0.001)

            run_for(1.5, 1, work)
            findings = pool.advice()
        assert kinds(findings) == ["too_large"]
        evidence = findings[0].evidence
        assert evidence["peak_in_use"] <= 2
        assert evidence["max_size"] == 8
        assert evidence["suggested_max_size"] <= 4
        assert evidence["requests"] > 100
        assert "looks too large" in findings[0].message
        assert "min_size<=" in findings[0].message  # min_size=8 is above the suggestion


def test_leak_when_connections_are_held_and_never_returned(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    with ConnectionPool(dsn, min_size=2, name="leaky", open=True, timeout=0.2) as pool:
        pool.wait(timeout=DEADLINE)
        with watch(pool, INTERVAL, **FAST):
            leaked = [pool.getconn(), pool.getconn()]
            # Others keep asking, and time out.
            with pytest.raises(Exception, match="couldn't get a connection"):
                pool.getconn()
            wait_until(lambda: "leak" in kinds(pool.advice()), what="a leak finding")
            finding = next(f for f in pool.advice() if f.kind == "leak")
            assert finding.evidence["held_for_s"] >= 1.0
            assert finding.evidence["max_size"] == 2
            assert "leak_timeout" in finding.message
            # A leak starves the pool, but the advice is about the leak.
            assert "too_small" not in kinds(pool.advice())
            wait_until(lambda: advice_records(caplog, "leak"), what="the leak warning")
            # Returned: the finding goes away.
            for conn in leaked:
                pool.putconn(conn)
            wait_until(lambda: "leak" not in kinds(pool.advice()), what="the leak to clear")
        assert len(advice_records(caplog, "leak")) == 1


def test_healthy_pool_gets_no_advice(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    with ConnectionPool(dsn, min_size=2, name="fine", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        with watch(pool, INTERVAL, **FAST):

            def work() -> None:
                with pool.connection() as conn:
                    conn.execute("select 1")

            run_for(1.3, 2, work)
            assert pool.advice() == []
        assert not [r for r in caplog.records if hasattr(r, "ferropool_finding")]


def test_warnings_repeat_after_warn_every(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    with ConnectionPool(dsn, min_size=1, name="held", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        conn = pool.getconn()
        try:
            with watch(pool, INTERVAL, warn_every=0.3, **FAST):
                wait_until(lambda: len(advice_records(caplog, "leak")) >= 3, what="3 warnings")
        finally:
            pool.putconn(conn)


def test_pool_advice_samples_at_each_call(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, name="calls", open=True) as pool:
        pool.wait(timeout=DEADLINE)
        assert pool.advice() == []  # one sample: nothing to compare yet
        assert pool.advice() == []
        advisor = advisor_for(pool)
        assert len(advisor.samples) == 2
        assert advisor.window == 300 and advisor.min_window == 60
        assert advisor.samples[-1].size == 1


def test_watcher_stops_when_the_pool_closes(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1, open=True)
    watcher = watch(pool, INTERVAL)
    assert watcher.running
    pool.close()
    wait_until(lambda: not watcher.running, what="the watcher to stop")


def test_settings_are_checked(dsn: str) -> None:
    pool = ConnectionPool(dsn, open=False)
    with pytest.raises(ValueError, match="window must be a positive"):
        Advisor(pool, window=0)
    with pytest.raises(ValueError, match="min_window"):
        Advisor(pool, window=10, min_window=20)
    with pytest.raises(ValueError, match="leak_after"):
        Advisor(pool, window=10, min_window=5, leak_after=20)
    with pytest.raises(ValueError, match="interval"):
        watch(pool, -1)


@pytest.mark.anyio
async def test_async_pool_too_small(dsn: str) -> None:
    import asyncio

    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, name="atiny") as pool:
        await pool.wait(timeout=DEADLINE)
        advisor = Advisor(pool, window=10, min_window=0.5)
        advisor.advise()
        stop = time.monotonic() + 1.0

        async def work() -> None:
            while time.monotonic() < stop:
                async with pool.connection(timeout=DEADLINE):
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(work() for _ in range(3)))
        findings: list[Any] = advisor.advise()
        assert kinds(findings) == ["too_small"]


def test_dropped_pool_is_not_kept_alive(dsn: str) -> None:
    import gc
    import weakref

    pool = ConnectionPool(dsn, min_size=1, open=True)
    pool.wait(timeout=DEADLINE)
    watcher = watch(pool, INTERVAL)
    pool.advice()
    ref = weakref.ref(pool)
    pool.close()
    del pool
    gc.collect()
    assert ref() is None
    wait_until(lambda: not watcher.running, what="the watcher to stop")


def test_watcher_thread_does_not_block_on_a_busy_pool(dsn: str) -> None:
    # Sampling reads the core only: it never waits for a connection.
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        pool.wait(timeout=DEADLINE)
        conn = pool.getconn()
        try:
            advisor = Advisor(pool, window=10, min_window=1)
            t0 = time.monotonic()
            for _ in range(100):
                advisor.sample()
            assert time.monotonic() - t0 < 1.0
            assert all(s.in_use == 1 and s.available == 0 for s in advisor.samples)
        finally:
            pool.putconn(conn)
        assert threading.active_count() >= 1
