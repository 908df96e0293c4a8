"""Fork safety: a child process (gunicorn pre-fork, multiprocessing) gets
fresh connections and never touches its parent's; the parent's connections
keep working, on the same server sessions.

Children report back through a pipe and always leave with os._exit, so no
pytest or atexit machinery runs twice.
"""

from __future__ import annotations

import multiprocessing
import warnings
from multiprocessing.connection import Connection as Pipe
from typing import Any

from ferropool import ConnectionPool
from tests.fixtures.helpers import DEADLINE, backend_pid, wait_until
from tests.fixtures.safety import CHILD_DEADLINE, backend_pids, fork_and_run, pool_pids


def use_pool_in_child(pool: ConnectionPool[Any]) -> dict[str, Any]:
    pids = sorted(pool_pids(pool))
    stats = pool.get_stats()
    pool.close()
    return {"pids": pids, "stats": stats}


def assert_parent_sessions_intact(
    pool: ConnectionPool[Any], dsn: str, app_name: str, before: set[int]
) -> None:
    # Each connection answers, on the same server session as before the
    # fork: had the child closed or used one, it would be gone or garbled.
    assert pool_pids(pool) == before
    assert before <= backend_pids(dsn, app_name)
    stats = pool.get_stats()
    assert stats["connections_num"] == len(before)
    assert stats["connections_lost"] == stats["returns_bad"] == 0


def test_child_after_os_fork_uses_fresh_connections(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=2, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        before = pool_pids(pool)

        child = fork_and_run(lambda: use_pool_in_child(pool))

        assert len(child["pids"]) == 2
        assert before.isdisjoint(child["pids"]), "the child opened its own connections"
        assert child["stats"]["connections_num"] == 2
        assert_parent_sessions_intact(pool, dsn, app_name, before)


def mp_child(pool: ConnectionPool[Any], out: Pipe) -> None:
    out.send(use_pool_in_child(pool))
    out.close()


def test_child_of_multiprocessing_fork_uses_fresh_connections(dsn: str, app_name: str) -> None:
    ctx = multiprocessing.get_context("fork")
    with ConnectionPool(dsn, min_size=2, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        before = pool_pids(pool)

        recv, send = ctx.Pipe(duplex=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            proc = ctx.Process(target=mp_child, args=(pool, send))
            proc.start()
        send.close()
        try:
            assert recv.poll(CHILD_DEADLINE), "no answer from the child"
            child = recv.recv()
        finally:
            proc.join(CHILD_DEADLINE)
            recv.close()
        assert proc.exitcode == 0

        assert before.isdisjoint(child["pids"])
        assert child["stats"]["connections_num"] == 2
        assert_parent_sessions_intact(pool, dsn, app_name, before)


def test_connection_lent_before_fork_and_returned_in_child(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=2, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        before = pool_pids(pool)
        lent = pool.getconn(timeout=DEADLINE)
        lent_pid = backend_pid(lent)

        def child() -> dict[str, Any]:
            pool.putconn(lent)  # closed silently: it belongs to the parent
            return use_pool_in_child(pool)

        result = fork_and_run(child)

        assert lent_pid not in result["pids"]
        assert before.isdisjoint(result["pids"])
        # The parent's borrower still has a working session.
        assert backend_pid(lent) == lent_pid
        pool.putconn(lent)
        assert_parent_sessions_intact(pool, dsn, app_name, before)


def test_child_of_a_child_gets_fresh_connections_too(dsn: str, app_name: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True, kwargs={"application_name": app_name}) as pool:
        pool.wait(timeout=DEADLINE)
        before = pool_pids(pool)

        def child() -> dict[str, Any]:
            mine = pool_pids(pool)
            grandchild = fork_and_run(lambda: use_pool_in_child(pool))
            after = pool_pids(pool)
            pool.close()
            return {"mine": sorted(mine), "after": sorted(after), "grandchild": grandchild}

        result = fork_and_run(child)

        assert result["mine"] == result["after"], "the grandchild left the child's session alone"
        pids = [*before, *result["mine"], *result["grandchild"]["pids"]]
        assert len(set(pids)) == 3
        assert_parent_sessions_intact(pool, dsn, app_name, before)
        wait_until(lambda: backend_pids(dsn, app_name) == before, what="children's sessions gone")
