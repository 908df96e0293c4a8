"""Session isolation under concurrency: with reset="discard", one borrower's
session state never reaches the next, whichever thread that is.

test_safety_reset checks each kind of state on a pool of one connection.
Here six threads share three connections, and every borrower first looks
at the session it got (one query: SET values, temporary tables, prepared
statements, LISTEN channels, advisory locks held by that very session),
then leaves all of it behind for the next borrower, and checks that it was
really set (so a clean result is not vacuous). Each connection passes from
thread to thread many times.
"""

from __future__ import annotations

import threading
from itertools import pairwise
from typing import Any

import psycopg

from ferropool import ConnectionPool
from tests.fixtures.helpers import DEADLINE, Threads
from tests.fixtures.reliability import by_mode, report

THREADS = 6
CONNECTIONS = 3
ROUNDS = by_mode(25, 250)

# One round trip: what the current session carries.
INSPECT = """
select current_setting('work_mem') = '7MB',
       current_setting('application_name') = 'left-behind',
       current_setting('default_transaction_read_only') = 'on',
       to_regclass('pg_temp.fp_isolation') is not null,
       (select count(*) from pg_prepared_statements where name = 'fp_isolation') > 0,
       (select count(*) from pg_listening_channels()) > 0,
       (select count(*) from pg_locks where locktype = 'advisory'
          and pid = pg_backend_pid()) > 0
"""
STATES = (
    "set",
    "application_name",
    "session_characteristics",
    "temporary_table",
    "prepared_statement",
    "listen",
    "advisory_lock",
)


def inspect(conn: psycopg.Connection[Any]) -> dict[str, bool]:
    row = conn.execute(INSPECT).fetchone()
    assert row is not None
    return dict(zip(STATES, row, strict=True))


def leave_everything(conn: psycopg.Connection[Any], thread: int) -> None:
    conn.execute("set work_mem = '7MB'")
    conn.execute("set application_name = 'left-behind'")
    conn.execute("create temporary table fp_isolation (x int)")
    conn.execute("prepare fp_isolation as select 1")
    conn.execute(f"listen fp_isolation_{thread}")
    conn.execute("select pg_advisory_lock(%s)", (4200 + thread,))
    # Last: it makes the session's later transactions read-only.
    conn.execute("set session characteristics as transaction read only")
    conn.commit()


def test_no_session_state_reaches_the_next_borrower_under_concurrency(dsn: str) -> None:
    leaks: list[str] = []
    not_set: list[str] = []
    # The sequence of threads each server session served.
    served_by: dict[int, list[int]] = {}
    lock = threading.Lock()

    def borrower(thread: int, pool: ConnectionPool[Any]) -> None:
        for round_ in range(ROUNDS):
            with pool.connection(timeout=DEADLINE) as conn:
                pid = conn.info.backend_pid
                with lock:
                    served_by.setdefault(pid, []).append(thread)
                found = [k for k, present in inspect(conn).items() if present]
                if found:
                    leaks.append(f"thread {thread} round {round_} pid {pid}: {found}")
                conn.rollback()
                leave_everything(conn, thread)
                missing = [k for k, present in inspect(conn).items() if not present]
                if missing:
                    not_set.append(f"thread {thread}: {missing} not set")
                conn.rollback()

    with ConnectionPool(
        dsn, min_size=CONNECTIONS, max_size=CONNECTIONS, open=True, reset="discard"
    ) as pool:
        pool.wait(timeout=DEADLINE)
        threads = Threads()
        for i in range(THREADS):
            threads.start(borrower, i, pool)
        threads.join(timeout=120)
        stats = pool.get_stats()
        # Nothing left over once every borrower is done: no session holds
        # an advisory lock, none listens.
        with psycopg.connect(dsn, autocommit=True) as admin:
            held = admin.execute(
                "select count(*) from pg_locks where locktype = 'advisory'"
            ).fetchone()

    handovers = sum(1 for seq in served_by.values() for a, b in pairwise(seq) if a != b)
    report(
        "session_isolation",
        "ferropool",
        threads=THREADS,
        connections=CONNECTIONS,
        borrows=sum(len(s) for s in served_by.values()),
        handovers_between_threads=handovers,
        leaks=len(leaks),
        returns_bad=stats["returns_bad"],
    )
    assert not_set == [], not_set[:3]
    assert leaks == [], f"{len(leaks)} borrowers found state: {leaks[:3]}"
    # Not vacuous: the same sessions went from thread to thread.
    assert len(served_by) == CONNECTIONS, "the connections were replaced, not reset"
    assert handovers >= ROUNDS, f"only {handovers} handovers between threads"
    assert stats["returns_bad"] == 0
    assert stats["connections_num"] == CONNECTIONS
    assert held == (0,)
