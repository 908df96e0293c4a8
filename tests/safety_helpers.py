"""Tools shared by the safe-by-default tests (test_safety_*.py).

Like helpers.py, everything here looks at the pool from the outside: what a
borrower gets, what the stats say, what pg_stat_activity shows.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
import warnings
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from ferropool import ConnectionPool
from helpers import DEADLINE, backend_pid, terminate_backend


def pool_pids(pool: ConnectionPool[Any]) -> set[int]:
    """The backend pids of every connection of a full pool, lent at once
    (so each connection is seen once), then given back."""
    conns = [pool.getconn(timeout=DEADLINE) for _ in range(pool.max_size)]
    try:
        return {backend_pid(c) for c in conns}
    finally:
        for c in conns:
            pool.putconn(c)


def backend_pids(dsn: str, application_name: str) -> set[int]:
    """The server processes serving connections named *application_name*."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "select pid from pg_stat_activity where application_name = %s",
            (application_name,),
        ).fetchall()
    return {pid for (pid,) in rows}


def terminate_all(dsn: str, application_name: str) -> int:
    """pg_terminate_backend every connection named *application_name*
    (waiting until each backend is gone); return how many there were."""
    pids = backend_pids(dsn, application_name)
    for pid in pids:
        terminate_backend(dsn, pid)
    return len(pids)


def run_requests(pool: ConnectionPool[Any], count: int) -> list[str]:
    """Run *count* one-query requests as an application would; return a
    description of each one that failed (empty: none failed)."""
    failures = []
    for i in range(count):
        try:
            with pool.connection() as conn:
                conn.execute("select 1").fetchone()
        except Exception as ex:
            failures.append(f"request {i}: {type(ex).__name__}: {ex}")
    return failures


def with_params(dsn: str, **params: Any) -> str:
    """*dsn* with some parameters added or replaced."""
    return make_conninfo(dsn, **params)


CHILD_DEADLINE = 60.0


def fork_and_run(fn: Callable[[], Any]) -> Any:
    """Run *fn* in a child made with os.fork(); return what it returned
    (through JSON), or fail the test with the child's error."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads: that is
        # precisely the situation under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            os.close(r)
            try:
                report = {"result": fn()}
                code = 0
            except BaseException as ex:
                report = {"error": f"{type(ex).__name__}: {ex}"}
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    deadline = time.monotonic() + CHILD_DEADLINE
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"the child did not finish within {CHILD_DEADLINE} s")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    report = json.loads(data) if data else {"error": "no report"}
    assert "error" not in report, f"in the child: {report['error']}"
    assert os.waitstatus_to_exitcode(status) == 0
    return report["result"]
