"""Event hooks: on_connect, on_checkout, on_checkin, on_close, on_error.

Each fires at its moment with its arguments; a hook that raises is logged
and changes nothing in the pool.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import errors as e
from psycopg.pq import TransactionStatus

from ferropool import ConnectionPool
from ferropool.embedded import free_port
from tests.fixtures.helpers import (
    DEADLINE,
    backend_pid,
    count_backends,
    terminate_backend,
    wait_until,
)
from tests.fixtures.safety import with_params


class Recorder:
    """Hooks that record (event, arguments...) in order, from any thread."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def _add(self, *event: Any) -> None:
        with self._lock:
            self.events.append(event)

    def on_connect(self, conn: Any) -> None:
        self._add("connect", conn, conn.closed, conn.pgconn.transaction_status)

    def on_checkout(self, conn: Any) -> None:
        self._add("checkout", conn)

    def on_checkin(self, conn: Any) -> None:
        self._add("checkin", conn, conn.closed)

    def on_close(self, conn: Any, reason: str) -> None:
        self._add("close", conn, reason, conn.closed)

    def on_error(self, exc: BaseException, conn: Any) -> None:
        self._add("error", exc, conn)

    def hooks(self) -> dict[str, Any]:
        return {
            "on_connect": self.on_connect,
            "on_checkout": self.on_checkout,
            "on_checkin": self.on_checkin,
            "on_close": self.on_close,
            "on_error": self.on_error,
        }

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [ev[1:] for ev in self.events if ev[0] == kind]

    def close_reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.of("close")]


def test_hooks_fire_at_their_moment_with_their_arguments(dsn: str) -> None:
    rec = Recorder()
    pool = ConnectionPool(dsn, min_size=1, open=True, **rec.hooks())
    try:
        pool.wait(timeout=DEADLINE)
        [(first, closed, status)] = rec.of("connect")
        assert isinstance(first, psycopg.Connection)
        assert not closed
        assert status == TransactionStatus.IDLE

        conn = pool.getconn()
        assert conn is first
        assert rec.events[-1] == ("checkout", conn), "before getconn returned"
        pool.putconn(conn)
        assert rec.events[-1] == ("checkin", conn, False), "before it was reset and kept"

        with pool.connection() as conn:
            assert rec.events[-1] == ("checkout", conn)
        assert rec.events[-1] == ("checkin", conn, False)

        pool.drain()
        assert ("close", first, "drained", False) in rec.events, "called before closing"
        wait_until(lambda: len(rec.of("connect")) == 2, what="the replacement's on_connect")
        second = rec.of("connect")[1][0]
        assert second is not first
    finally:
        pool.close()
    assert rec.of("close")[-1] == (second, "pool closed", False)
    assert rec.of("error") == []


def close_reason_after(dsn: str, scenario: str) -> list[str]:
    """Run *scenario* on a fresh pool; return the on_close reasons seen.

    The hook keeps no reference to the connections: one would keep a
    dropped connection alive, and the leak scenario needs it unreachable.
    """
    reasons: list[str] = []
    options: dict[str, Any] = {
        "max_uses": {"max_uses": 1},
        "idle": {"max_size": 2, "max_idle": 0.2},
        "expired": {"max_lifetime": 0.3},
        "leaked": {"leak_timeout": 0.2, "max_size": 1},
        "resized": {"min_size": 2},
    }.get(scenario, {})
    options.setdefault("min_size", 1)
    with ConnectionPool(
        dsn, open=True, on_close=lambda conn, reason: reasons.append(reason), **options
    ) as pool:
        pool.wait(timeout=DEADLINE)
        if scenario == "max_uses":
            with pool.connection():
                pass
        elif scenario == "idle":
            conns = [pool.getconn(), pool.getconn()]
            for c in conns:
                pool.putconn(c)
            del conns, c
        elif scenario == "expired":
            time.sleep(0.4)
            with pool.connection(timeout=DEADLINE):
                pass
        elif scenario == "leaked":
            pool.getconn()  # dropped at once
            gc.collect()
        elif scenario == "resized":
            pool.resize(1)
        elif scenario == "returned_closed":
            conn = pool.getconn()
            conn.close()
            pool.putconn(conn)
        elif scenario == "failover":
            with pytest.raises(e.AdminShutdown), pool.connection() as conn:
                terminate_backend(dsn, backend_pid(conn))
                conn.execute("select 1")
        wait_until(lambda: reasons, timeout=5, what=f"on_close after {scenario}")
        time.sleep(0.1)
        return list(reasons)


@pytest.mark.parametrize(
    ("scenario", "reasons"),
    [
        ("max_uses", ["max_uses"]),
        ("idle", ["idle"]),
        ("expired", ["expired"]),
        ("leaked", ["leaked"]),
        ("returned_closed", ["broken"]),
        ("failover", ["broken"]),
        ("resized", ["resized"]),
    ],
)
def test_on_close_gets_the_reason(dsn: str, scenario: str, reasons: list[str]) -> None:
    assert close_reason_after(dsn, scenario) == reasons


def test_on_close_reasons_in_a_failover(dsn: str) -> None:
    rec = Recorder()
    with ConnectionPool(dsn, min_size=3, open=True, **rec.hooks()) as pool:
        pool.wait(timeout=DEADLINE)
        with pytest.raises(e.AdminShutdown), pool.connection() as conn:
            terminate_backend(dsn, backend_pid(conn))
            conn.execute("select 1")
        assert sorted(rec.close_reasons()) == ["broken", "failover", "failover"]


def test_on_error_gets_the_exception_and_the_connection(dsn: str) -> None:
    rec = Recorder()
    with ConnectionPool(dsn, min_size=1, open=True, **rec.hooks()) as pool:
        pool.wait(timeout=DEADLINE)
        with pytest.raises(e.AdminShutdown) as raised, pool.connection() as conn:
            terminate_backend(dsn, backend_pid(conn))
            conn.execute("select 1")
        assert rec.of("error") == [(raised.value, conn)], "the very exception the block raised"


def test_on_error_for_a_failed_connection_attempt_has_no_connection(dsn: str) -> None:
    rec = Recorder()
    unreachable = with_params(dsn, host="127.0.0.1", port=free_port(), connect_timeout=2)
    with ConnectionPool(unreachable, min_size=1, open=True, **rec.hooks()) as pool:
        wait_until(lambda: rec.of("error"), what="on_error for the failed attempt")
        exc, conn = rec.of("error")[0]
        assert isinstance(exc, psycopg.OperationalError)
        assert conn is None
        assert pool.get_stats()["connections_errors"] >= 1


def test_on_error_for_a_failed_check_and_a_failed_reset(dsn: str) -> None:
    rec = Recorder()
    failures = [ValueError("check says no"), ValueError("reset says no")]

    def check(conn: Any) -> None:
        if failures[0].args[0] == "check says no":
            raise failures.pop(0)

    def reset(conn: Any) -> None:
        raise failures[0]

    with ConnectionPool(
        dsn, min_size=1, open=True, check=check, reset=reset, **rec.hooks()
    ) as pool:
        pool.wait(timeout=DEADLINE)
        conn = pool.getconn(timeout=DEADLINE)  # the first check fails
        pool.putconn(conn)  # the reset fails
        errors = rec.of("error")
        assert [type(exc) for exc, _ in errors] == [ValueError, ValueError]
        assert [str(exc) for exc, _ in errors] == ["check says no", "reset says no"]
        assert errors[1][1] is conn
        assert all(c is not None for _, c in errors)


def raise_boom(*args: Any) -> None:
    raise RuntimeError("hook boom")


def test_hooks_that_raise_are_logged_and_change_nothing(
    dsn: str, app_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    hooks = dict.fromkeys(["on_connect", "on_checkout", "on_checkin", "on_close", "on_error"])
    pool = ConnectionPool(
        dsn,
        min_size=2,
        open=True,
        kwargs={"application_name": app_name},
        **{name: raise_boom for name in hooks},
    )
    try:
        pool.wait(timeout=DEADLINE)
        for _ in range(10):
            with pool.connection(timeout=DEADLINE) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
        conn = pool.getconn(timeout=DEADLINE)
        pool.putconn(conn)
        # on_error and on_close: a failover.
        with pytest.raises(e.AdminShutdown), pool.connection() as conn:
            terminate_backend(dsn, backend_pid(conn))
            conn.execute("select 1")
        wait_until(lambda: pool.get_stats()["pool_available"] == 2, what="replacements")

        stats = pool.get_stats()
        assert stats["pool_size"] == 2
        assert stats["connections_lost"] == 1, "only the terminated one"
        assert stats["requests_errors"] == 0
        assert count_backends(dsn, app_name) == 2
        with pool.connection(timeout=DEADLINE) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        pool.close()
    wait_until(lambda: count_backends(dsn, app_name) == 0, what="closed despite on_close")

    logged = "\n".join(r.getMessage() for r in caplog.records)
    for name in hooks:
        assert f"{name} hook failed: hook boom" in logged
