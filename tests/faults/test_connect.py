"""Connect failures: wrong password, unknown host, "too many clients".

For each cause the pool is opened while connecting is impossible, then the
cause is fixed while it runs. Observed from outside:

* a waiting request gets PoolTimeout within its timeout, naming the last
  connection error (and never the password);
* attempts back off: connections_errors grows at a bounded rate, not a
  spin (the README: 50 ms doubling to 400 ms, a new round after each
  reconnect_timeout);
* reconnect_failed is called once attempts have failed for
  reconnect_timeout, and the pool keeps trying afterwards;
* once the cause is fixed (a callable conninfo or kwargs now returning the
  right password or host; filler connections closed) the pool is back at
  min_size promptly and requests succeed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ferropool import ConnectionPool, PoolTimeout
from ferropool.embedded import EmbeddedPostgres
from tests.fixtures.helpers import DEADLINE, wait_until
from tests.fixtures.reliability import SecretWatch, report
from tests.fixtures.safety import run_requests

MIN_SIZE = 2
REQUEST_TIMEOUT = 0.5
RECONNECT_TIMEOUT = 1.0
# The window over which the attempt rate is measured, after the first second.
WINDOW = 1.5
# Attempts per second per connection being opened, at most: the backoff
# allows about 4 (a new 50 ms round every reconnect_timeout); a spin on a
# failure that costs a few milliseconds would be hundreds.
MAX_RATE_PER_SLOT = 12.0
# Scheduling slack on a loaded 2-core machine, on top of a stated bound.
SLACK = 1.0
# From the fix to min_size: the longest backoff delay (0.4 s) plus a connect.
RECOVERY_BOUND = 0.4 + 0.1 + SLACK


@dataclass
class Figures:
    errors_named: int
    rate_per_s: float
    reconnect_failed_after_s: float
    errors_after_callback: int
    recovered_after_s: float


def exercise(
    conninfo: str | Callable[[], str],
    kwargs: dict[str, Any] | Callable[[], dict[str, Any]] | None,
    fix: Callable[[], None],
    expected: str,
    watch: SecretWatch,
) -> Figures:
    """Open a pool that cannot connect, check what a borrower and an
    operator see, fix the cause, and check the recovery."""
    called: list[tuple[float, object]] = []
    pool = ConnectionPool(
        conninfo,
        kwargs=kwargs,
        min_size=MIN_SIZE,
        timeout=REQUEST_TIMEOUT,
        reconnect_timeout=RECONNECT_TIMEOUT,
        reconnect_failed=lambda p: called.append((time.monotonic(), p)),
        open=True,
    )
    with pool:
        opened = time.monotonic()
        watch.add(pool)
        # A waiting request: a clear error, within its timeout.
        named = 0
        for _ in range(3):
            t0 = time.monotonic()
            with pytest.raises(PoolTimeout) as info:
                pool.getconn()
            took = time.monotonic() - t0
            watch.add(info.value)
            message = str(info.value)
            assert took <= REQUEST_TIMEOUT + SLACK, f"{took:.2f} s: {message}"
            assert "last connection error" in message, message
            assert expected in message, message
            named += 1

        # Backoff: the attempt rate over a window, after the first second.
        time.sleep(max(opened + 1.0 - time.monotonic(), 0))
        e1, t1 = pool.get_stats()["connections_errors"], time.monotonic()
        time.sleep(WINDOW)
        e2, t2 = pool.get_stats()["connections_errors"], time.monotonic()
        rate = (e2 - e1) / (t2 - t1)
        assert e2 > e1, "no attempt in the window: the pool stopped trying"
        assert rate <= MAX_RATE_PER_SLOT * MIN_SIZE, f"{rate:.1f} attempts/s: a spin"

        # reconnect_failed, and the pool keeps trying after it.
        wait_until(lambda: called, timeout=RECONNECT_TIMEOUT + DEADLINE, what="reconnect_failed")
        assert all(p is pool for _, p in called)
        first_call = called[0][0] - opened
        assert first_call >= RECONNECT_TIMEOUT * 0.9, f"called after {first_call:.2f} s"
        at_call = pool.get_stats()["connections_errors"]
        wait_until(
            lambda: pool.get_stats()["connections_errors"] > at_call,
            timeout=DEADLINE,
            what="attempts after reconnect_failed",
        )
        after_call = pool.get_stats()["connections_errors"] - at_call

        # Fixed: back at min_size promptly, and requests succeed.
        fix()
        fixed = time.monotonic()
        wait_until(
            lambda: pool.get_stats()["pool_available"] == MIN_SIZE,
            timeout=DEADLINE,
            what="min_size after the fix",
        )
        recovered = time.monotonic() - fixed
        failures = run_requests(pool, 20)
        assert failures == [], failures[:3]
        assert recovered <= RECOVERY_BOUND, f"back at min_size {recovered:.2f} s after the fix"
        stats = pool.get_stats()
        assert stats["pool_size"] == stats["pool_available"] == MIN_SIZE
    watch.assert_clean()
    return Figures(named, rate, first_call, after_call, recovered)


def figures(cause: str, f: Figures) -> None:
    report(
        "connect_failure",
        "ferropool",
        cause=cause,
        timeouts_naming_cause=f.errors_named,
        attempts_per_s=f.rate_per_s,
        reconnect_failed_after_s=f.reconnect_failed_after_s,
        attempts_after_reconnect_failed=f.errors_after_callback,
        min_size_after_fix_s=f.recovered_after_s,
    )


@pytest.mark.parametrize("where", ["conninfo", "kwargs"])
def test_wrong_password(
    scram_server: EmbeddedPostgres, where: str, secret_watch: SecretWatch
) -> None:
    right = scram_server.password
    assert right is not None
    wrong = "wrong-" + secrets.token_urlsafe(12)
    secret_watch.protect(right)
    secret_watch.protect(wrong)
    plain = conninfo_to_dict(scram_server.dsn)
    plain.pop("password")
    plain["passfile"] = "/dev/null"  # no ~/.pgpass behind the test's back
    password = [wrong]

    def conninfo() -> str:
        return make_conninfo(**plain, password=password[0])

    def kwargs() -> dict[str, Any]:
        return {"password": password[0]}

    result = exercise(
        conninfo if where == "conninfo" else make_conninfo(**plain),
        kwargs if where == "kwargs" else None,
        lambda: password.__setitem__(0, right),
        "password authentication failed",
        secret_watch,
    )
    figures(f"wrong password ({where})", result)


def test_unknown_host(dsn: str, secret_watch: SecretWatch) -> None:
    params = conninfo_to_dict(dsn)
    host = ["nonexistent.invalid"]
    result = exercise(
        lambda: make_conninfo(**{**params, "host": host[0]}),
        None,
        lambda: host.__setitem__(0, str(params.get("host", "127.0.0.1"))),
        "nonexistent.invalid",
        secret_watch,
    )
    figures("unknown host", result)


@pytest.fixture(scope="module")
def tiny_server() -> Iterator[EmbeddedPostgres]:
    """A server with room for three clients, none reserved for superusers."""
    with EmbeddedPostgres(
        max_connections=3,
        settings={"superuser_reserved_connections": 0, "reserved_connections": 0},
    ) as server:
        yield server


def test_too_many_clients(tiny_server: EmbeddedPostgres, secret_watch: SecretWatch) -> None:
    fillers: list[psycopg.Connection[Any]] = []
    try:
        while True:
            try:
                fillers.append(psycopg.connect(tiny_server.dsn, autocommit=True))
            except psycopg.OperationalError as ex:
                assert "too many clients" in str(ex)
                break
            assert len(fillers) <= 3, "max_connections not applied"

        def free() -> None:
            for conn in fillers:
                conn.close()

        result = exercise(tiny_server.dsn, None, free, "too many clients", secret_watch)
    finally:
        for conn in fillers:
            conn.close()
    figures("too many clients", result)
