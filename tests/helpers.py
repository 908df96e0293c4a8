"""Small tools shared by the pool behaviour tests.

Everything here observes the pool from the outside, the way a user (or a
DBA looking at pg_stat_activity) would: no test reaches into ferropool's
internals. Waits for background effects poll against generous deadlines,
because the suite runs on a noisy 2-core machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

# Deadline for background effects (refill, shrink, replacement). Generous on
# purpose: a healthy pool gets there in milliseconds, a broken one never.
DEADLINE = 10.0


def wait_until(predicate: Callable[[], object], timeout: float = DEADLINE, what: str = "") -> None:
    """Poll *predicate* until it is true; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


def backend_pid(conn: psycopg.Connection[Any]) -> int:
    """The server process behind *conn*, asked to the server (proves it works)."""
    row = conn.execute("select pg_backend_pid()").fetchone()
    assert row is not None
    pid: int = row[0]
    # Leave the connection as found: psycopg opened a transaction.
    if not conn.autocommit:
        conn.rollback()
    return pid


def count_backends(dsn: str, application_name: str) -> int:
    """How many server connections carry *application_name* right now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def terminate_backend(dsn: str, pid: int) -> None:
    """Kill one server connection, as a DBA or a failover would."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The timeout makes the call wait until the backend is gone.
        row = conn.execute("select pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
    assert row == (True,), f"backend {pid} was not terminated"


class Threads:
    """Threads whose exceptions fail the test instead of vanishing.

    ``start`` runs a callable in a new thread; ``join`` waits for all of
    them (bounded) and re-raises the first exception a thread raised.
    """

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()

    def start(self, fn: Callable[..., object], *args: object) -> threading.Thread:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as ex:
                with self._lock:
                    self._errors.append(ex)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def join(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.0))
        alive = [t for t in self._threads if t.is_alive()]
        assert not alive, f"{len(alive)} threads still running after {timeout} s"
        if self._errors:
            raise self._errors[0]
