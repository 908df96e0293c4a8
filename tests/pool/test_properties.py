"""Stateful property tests of ConnectionPool's API against a model (Hypothesis).

Random sequences of getconn, putconn, a `connection()` block, resize,
drain, check and close, with injected connection failures (a lent
connection killed on the server with pg_terminate_backend, or closed by its
borrower, before it is used or returned), run against a real server. The
model knows what the test borrowed and what it did; after every step:

* no connection is held by two borrowers (distinct objects, distinct
  server sessions), and every connection handed out works;
* the counters agree with the model: requests_num, requests_errors (the
  timeouts the model predicted: a getconn with no capacity left),
  returns_bad (connections given back closed or broken);
* once background work is done (a bounded wait): the connections in use
  are exactly the ones the test holds, pool_size <= max_size (plus the
  lent connections a resize down left above it, closed on return, per the
  README's resize semantics) and pool_size >= min_size.

CI runs a few examples; FERROPOOL_LONG=1 runs many more.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ferropool import ConnectionPool, PoolClosed, PoolTimeout
from tests.fixtures.helpers import DEADLINE, count_backends, terminate_backend, wait_until
from tests.fixtures.reliability import by_mode, report, time_limit

# The quiescence wait: background work (refill, validation) takes
# milliseconds; this only bounds a broken pool.
SETTLE = 10.0
# How long a getconn that cannot be served waits before PoolTimeout.
NO_CAPACITY_WAIT = 0.05


class Totals:
    """What every example did, for the report."""

    examples = 0
    steps = 0
    kills = 0
    closes = 0
    timeouts = 0


class PoolModel(RuleBasedStateMachine):
    dsn = ""
    app_name = ""

    def __init__(self) -> None:
        super().__init__()
        self.pool: ConnectionPool[Any] | None = None
        self.held: list[psycopg.Connection[Any]] = []
        # id(conn) of held connections the server killed, or the borrower closed.
        self.killed: set[int] = set()
        self.closed_by_borrower: set[int] = set()
        self.min_size = 0
        self.max_size = 1
        self.requests = 0
        self.errors = 0
        self.returns_bad = 0
        self.pool_closed = False
        Totals.examples += 1

    @initialize(
        sizes=st.tuples(st.integers(0, 2), st.integers(0, 2)).map(lambda t: (t[0], t[0] + t[1])),
    )
    def open_pool(self, sizes: tuple[int, int]) -> None:
        self.min_size, self.max_size = sizes[0], max(sizes[1], 1)
        self.pool = ConnectionPool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            kwargs={"application_name": self.app_name},
            open=True,
        )
        self.pool.wait(timeout=DEADLINE)

    @property
    def p(self) -> ConnectionPool[Any]:
        assert self.pool is not None
        return self.pool

    def lent(self) -> int:
        return len(self.held)

    # ---- borrowing -------------------------------------------------------------

    @precondition(lambda self: not self.pool_closed)
    @rule()
    def getconn(self) -> None:
        Totals.steps += 1
        self.requests += 1
        if self.lent() >= self.max_size:
            # No capacity: the model says this must time out.
            self.errors += 1
            Totals.timeouts += 1
            with pytest.raises(PoolTimeout):
                self.p.getconn(timeout=NO_CAPACITY_WAIT)
            return
        conn = self.p.getconn(timeout=DEADLINE)
        assert all(conn is not c for c in self.held), "lent twice"
        pids = {c.info.backend_pid for c in self.held if not c.closed}
        assert conn.info.backend_pid not in pids, "one server session, two borrowers"
        # Handed out alive: the server answers, from that very session.
        assert conn.execute("select pg_backend_pid()").fetchone() == (conn.info.backend_pid,)
        conn.rollback()
        self.held.append(conn)

    @precondition(lambda self: not self.pool_closed)
    @rule()
    def connection_block(self) -> None:
        Totals.steps += 1
        if self.lent() >= self.max_size:
            return
        self.requests += 1
        with self.p.connection(timeout=DEADLINE) as conn:
            assert conn.execute("select 1").fetchone() == (1,)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def putconn(self, data: st.DataObject) -> None:
        Totals.steps += 1
        conn = self.held.pop(data.draw(st.integers(0, self.lent() - 1), label="which"))
        key = id(conn)
        broken = key in self.closed_by_borrower
        self.killed.discard(key)
        self.closed_by_borrower.discard(key)
        self.p.putconn(conn)
        if broken:
            # Counted even after close() (psycopg_pool does not count
            # returns to a closed pool at all; a minor difference).
            self.returns_bad += 1
        if broken or self.pool_closed:
            assert conn.closed, "a broken connection, or one returned after close(), is closed"

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def use(self, data: st.DataObject) -> None:
        """The borrower runs a query: fails on a killed or closed connection
        (which is then broken), works otherwise."""
        Totals.steps += 1
        conn = data.draw(st.sampled_from(self.held), label="conn")
        key = id(conn)
        if key in self.killed or key in self.closed_by_borrower:
            with pytest.raises(psycopg.OperationalError):
                conn.execute("select 1")
            self.killed.discard(key)
            self.closed_by_borrower.add(key)
            assert conn.pgconn.status != psycopg.pq.ConnStatus.OK
        else:
            assert conn.execute("select 1").fetchone() == (1,)
            conn.rollback()

    # ---- injected failures --------------------------------------------------------

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def kill_on_server(self, data: st.DataObject) -> None:
        Totals.steps += 1
        candidates = [
            c
            for c in self.held
            if not c.closed and id(c) not in self.killed and id(c) not in self.closed_by_borrower
        ]
        if not candidates:
            return
        conn = data.draw(st.sampled_from(candidates), label="victim")
        terminate_backend(self.dsn, conn.info.backend_pid)
        self.killed.add(id(conn))
        Totals.kills += 1

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def close_by_borrower(self, data: st.DataObject) -> None:
        Totals.steps += 1
        conn = data.draw(st.sampled_from(self.held), label="closed")
        conn.close()
        self.killed.discard(id(conn))
        self.closed_by_borrower.add(id(conn))
        Totals.closes += 1

    # ---- maintenance --------------------------------------------------------------

    @precondition(lambda self: not self.pool_closed)
    @rule(
        sizes=st.tuples(st.integers(0, 3), st.integers(0, 2)).map(lambda t: (t[0], t[0] + t[1])),
    )
    def resize(self, sizes: tuple[int, int]) -> None:
        Totals.steps += 1
        min_size, max_size = sizes[0], max(sizes[1], 1)
        self.p.resize(min_size, max_size)
        self.min_size, self.max_size = min_size, max_size
        assert (self.p.min_size, self.p.max_size) == (min_size, max_size)

    @precondition(lambda self: not self.pool_closed)
    @rule()
    def drain(self) -> None:
        Totals.steps += 1
        self.p.drain()

    @precondition(lambda self: not self.pool_closed)
    @rule()
    def check(self) -> None:
        Totals.steps += 1
        self.p.check()

    @precondition(lambda self: not self.pool_closed)
    @rule()
    def close(self) -> None:
        Totals.steps += 1
        self.p.close()
        self.pool_closed = True

    @precondition(lambda self: self.pool_closed)
    @rule()
    def closed_pool_refuses(self) -> None:
        Totals.steps += 1
        with pytest.raises(PoolClosed):
            self.p.getconn(timeout=NO_CAPACITY_WAIT)
        with pytest.raises(PoolClosed), self.p.connection(timeout=NO_CAPACITY_WAIT):
            pass

    # ---- invariants --------------------------------------------------------------

    @invariant()
    def counters_agree(self) -> None:
        if self.pool is None:
            return
        stats = self.p.get_stats()
        assert stats["requests_num"] == self.requests
        assert stats["requests_errors"] == self.errors
        assert stats["returns_bad"] == self.returns_bad

    @invariant()
    def one_borrower_per_connection(self) -> None:
        assert len({id(c) for c in self.held}) == self.lent()
        alive = [c.info.backend_pid for c in self.held if not c.closed]
        assert len(set(alive)) == len(alive)

    @invariant()
    def sizes_within_limits(self) -> None:
        if self.pool is None or self.pool_closed:
            return
        held = self.lent()

        def settled() -> bool:
            s = self.p.get_stats()
            return s["pool_size"] - s["pool_available"] == held and s["pool_size"] >= min(
                self.min_size, self.max_size
            )

        wait_until(settled, timeout=SETTLE, what=f"quiescence with {held} lent")
        stats = self.p.get_stats()
        assert stats["pool_size"] <= max(self.max_size, held), stats
        assert stats["pool_min"] == self.min_size
        assert stats["pool_max"] == self.max_size

    def teardown(self) -> None:
        if self.pool is None:
            return
        for conn in self.held:
            self.p.putconn(conn)
        self.held.clear()
        self.p.close()
        wait_until(
            lambda: count_backends(self.dsn, self.app_name) == 0,
            what="every server connection closed with the pool",
        )


@time_limit(120, 900)
def test_pool_against_its_model(dsn: str, app_name: str) -> None:
    PoolModel.dsn = dsn
    PoolModel.app_name = app_name
    started = time.monotonic()
    run_state_machine_as_test(
        PoolModel,
        settings=settings(
            max_examples=by_mode(80, 500),
            stateful_step_count=by_mode(25, 50),
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    report(
        "properties_stateful",
        "ferropool",
        examples=Totals.examples,
        steps=Totals.steps,
        server_kills=Totals.kills,
        borrower_closes=Totals.closes,
        predicted_timeouts=Totals.timeouts,
        run_s=time.monotonic() - started,
    )
