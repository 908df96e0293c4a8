"""reset="discard": no session state reaches the next borrower.

Each test uses a pool of exactly one connection, so the next borrower gets
the same server session (same backend pid): what it sees is what the reset
left. Each kind of state is first shown to exist in the session that
created it, so a test that passes is not passing vacuously.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from ferropool import ConnectionPool
from tests.fixtures.helpers import DEADLINE, backend_pid, count_backends, terminate_backend

Conn = psycopg.Connection[Any]


def one(conn: Conn, query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


@dataclass(frozen=True)
class SessionState:
    """A kind of session state: how to leave it behind, and how to see it."""

    name: str
    leave: Callable[[Conn], None]
    present: Callable[[Conn, str], bool]


def lock_taken_elsewhere(conn: Conn, dsn: str) -> bool:
    # Seen from another session: can it take the lock?
    with psycopg.connect(dsn, autocommit=True) as other:
        got = one(other, "select pg_try_advisory_lock(4242)")
        if got:
            other.execute("select pg_advisory_unlock(4242)")
    return not got


STATES = [
    SessionState(
        "set",
        lambda c: c.execute("set work_mem = '7MB'"),
        lambda c, _: one(c, "show work_mem") == "7MB",
    ),
    SessionState(
        "set_application_name",
        lambda c: c.execute("set application_name = 'left-behind'"),
        lambda c, _: one(c, "show application_name") == "left-behind",
    ),
    SessionState(
        "session_characteristics",
        lambda c: c.execute("set session characteristics as transaction read only"),
        lambda c, _: one(c, "show default_transaction_read_only") == "on",
    ),
    SessionState(
        "temporary_table",
        lambda c: c.execute("create temporary table fp_left_behind (x int)"),
        lambda c, _: one(c, "select to_regclass('pg_temp.fp_left_behind') is not null"),
    ),
    SessionState(
        "prepared_statement",
        lambda c: c.execute("prepare fp_left_behind as select 1"),
        lambda c, _: (
            one(c, "select count(*) from pg_prepared_statements where name = 'fp_left_behind'") == 1
        ),
    ),
    SessionState(
        "listen",
        lambda c: c.execute("listen fp_left_behind"),
        lambda c, _: one(c, "select count(*) from pg_listening_channels()") == 1,
    ),
    SessionState(
        "advisory_lock",
        lambda c: c.execute("select pg_advisory_lock(4242)"),
        lock_taken_elsewhere,
    ),
]


@pytest.mark.parametrize("state", STATES, ids=[s.name for s in STATES])
def test_session_state_does_not_reach_the_next_borrower(dsn: str, state: SessionState) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=1, open=True, reset="discard") as pool:
        with pool.connection(timeout=DEADLINE) as conn:
            pid = backend_pid(conn)
            state.leave(conn)
            conn.commit()
            assert state.present(conn, dsn), f"{state.name}: not set up"

        with pool.connection(timeout=DEADLINE) as conn:
            assert backend_pid(conn) == pid, "same session: the reset cleaned it"
            assert not state.present(conn, dsn), f"{state.name} reached the next borrower"
            assert conn.autocommit is False, "the connection's own settings are kept"
        stats = pool.get_stats()
        assert stats["connections_num"] == 1
        assert stats["returns_bad"] == 0


def test_notifications_for_a_discarded_listen_are_not_delivered(dsn: str) -> None:
    with ConnectionPool(
        dsn, min_size=1, max_size=1, open=True, reset="discard", kwargs={"autocommit": True}
    ) as pool:
        with pool.connection() as conn:
            conn.execute("listen fp_channel")
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("notify fp_channel, 'for the previous borrower'")
        with pool.connection() as conn:
            conn.execute("select 1")
            assert list(conn.notifies(timeout=0.2, stop_after=1)) == []


def test_psycopg_prepared_statements_keep_working_after_discard(dsn: str) -> None:
    """DISCARD ALL drops server-side prepared statements psycopg made on its
    own: psycopg must know, or the next borrower's query fails."""
    with ConnectionPool(
        dsn,
        min_size=1,
        max_size=1,
        open=True,
        reset="discard",
        kwargs={"prepare_threshold": 0},
    ) as pool:
        for i in range(3):
            with pool.connection() as conn:
                assert conn.execute("select %s::int + 1", (i,)).fetchone() == (i + 1,)


def test_a_failing_reset_discards_the_connection(dsn: str, app_name: str) -> None:
    with ConnectionPool(
        dsn,
        min_size=1,
        max_size=1,
        open=True,
        reset="discard",
        kwargs={"application_name": app_name},
    ) as pool:
        conn = pool.getconn(timeout=DEADLINE)
        pid = backend_pid(conn)
        terminate_backend(dsn, pid)
        pool.putconn(conn)  # DISCARD ALL fails on the dead session

        assert conn.closed
        with pool.connection(timeout=DEADLINE) as conn2:
            assert backend_pid(conn2) != pid
        assert pool.get_stats()["returns_bad"] == 1
        assert count_backends(dsn, app_name) == 1


def test_default_reset_keeps_the_session(dsn: str) -> None:
    """Without reset="discard" only the transaction is reset (psycopg_pool's
    behaviour): session state stays, which is what discard is for."""
    with ConnectionPool(dsn, min_size=1, max_size=1, open=True) as pool:
        with pool.connection() as conn:
            conn.execute("set work_mem = '7MB'")
        with pool.connection() as conn:
            assert one(conn, "show work_mem") == "7MB"
