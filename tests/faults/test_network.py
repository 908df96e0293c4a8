"""Network faults between the pool and the server, through a TCP proxy on loopback.

The pool connects to a password-protected server through ``FaultProxy``
(fault_proxy.py), which adds latency, drops traffic (a black hole: no FIN,
no RST) or resets every connection (RST to both ends), while threads run
requests in loops:

* latency: requests are slower but all succeed, connecting again through
  the slow link included; requests that cannot get a connection in time
  fail with PoolTimeout within their timeout;
* black hole: no thread waits beyond its bounds (acquire timeout, plus the
  application's own query deadline: psycopg has none, and nothing but TCP
  keepalives could end a query on a silent peer); idle half-open
  connections are found by the keepalive ping (keepalive_interval 0.5 s),
  connection attempts end at connect_timeout (kwargs) and the waiting
  requests' PoolTimeout says so; once the network is back the pool
  recovers and requests succeed;
* reset: the pool replaces every reset connection and no request started
  after the reset fails. The resets also run against psycopg_pool 3.3,
  whose figures are reported, not asserted.

test_safety_keepalive has the single idle connection found by a keepalive
ping; these are the same faults under load.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import psycopg
import psycopg_pool
import pytest
from psycopg.pq import ExecStatus

from ferropool import ConnectionPool, PoolTimeout
from ferropool.embedded import EmbeddedPostgres
from tests.fixtures.fault_proxy import FaultProxy, fault_proxy
from tests.fixtures.helpers import DEADLINE, wait_until
from tests.fixtures.load import Load, Monitor, Request, percentile, select_one, wait_for_requests
from tests.fixtures.reliability import SecretWatch, by_mode, report, time_limit

# Scheduling slack on a loaded 2-core machine, on top of a stated bound.
SLACK = 1.0


@pytest.fixture
def proxy(scram_server: EmbeddedPostgres) -> Iterator[FaultProxy]:
    with fault_proxy(scram_server.dsn) as p:
        yield p


def client_pids(pool: ConnectionPool[Any]) -> set[int]:
    """The backend pids of every connection of a full pool, lent at once,
    read from the client side (no round trip: some may be half-open)."""
    conns = [pool.getconn(timeout=DEADLINE) for _ in range(pool.max_size)]
    try:
        return {c.info.backend_pid for c in conns}
    finally:
        for c in conns:
            pool.putconn(c)


# ---- latency ----------------------------------------------------------------------

LATENCY = 0.02
LATENCY_RUN = by_mode(2.0, 8.0)


def test_added_latency_slows_requests_but_none_fails(
    scram_server: EmbeddedPostgres, proxy: FaultProxy, app_name: str, secret_watch: SecretWatch
) -> None:
    secret_watch.protect(scram_server.password)
    with ConnectionPool(
        proxy.dsn(scram_server.dsn),
        min_size=4,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        fast = Load(pool, 4, partial(select_one, timeout=DEADLINE)).start()
        time.sleep(0.5)
        fast.stop(bound=DEADLINE)

        proxy.set_latency(LATENCY)
        slow = Load(pool, 4, partial(select_one, timeout=DEADLINE)).start()
        try:
            time.sleep(LATENCY_RUN / 2)
            # Every connection is opened again, through the slow link.
            drained_at = pool.get_stats()["connections_num"]
            pool.drain()
            time.sleep(LATENCY_RUN / 2)
        finally:
            slow.stop(bound=DEADLINE + SLACK)
        reconnected = pool.get_stats()["connections_num"] - drained_at

        # Waits shorter than a request: those time out, within their timeout.
        short = 0.05
        timing_out = Load(pool, 12, partial(select_one, timeout=short)).start()
        try:
            time.sleep(1.5)
        finally:
            timing_out.stop(bound=DEADLINE)
        stats = pool.get_stats()

    fast_took = [r.took for r in fast.snapshot()]
    slow_reqs = slow.snapshot()
    slow_took = [r.took for r in slow_reqs]
    short_reqs = timing_out.snapshot()
    short_failed = [r for r in short_reqs if r.error is not None]
    secret_watch.add_requests(slow_reqs + short_reqs)
    report(
        "network_latency",
        "ferropool",
        latency_ms=LATENCY * 1000,
        requests=len(slow_reqs),
        failed=sum(1 for r in slow_reqs if r.error is not None),
        median_ms_without=percentile(fast_took, 0.5) * 1000,
        median_ms_with=percentile(slow_took, 0.5) * 1000,
        p99_ms_with=percentile(slow_took, 0.99) * 1000,
        reconnected_through_latency=reconnected,
        short_timeout_requests=len(short_reqs),
        short_timeout_failed=len(short_failed),
        short_timeout_max_ms=max((r.took for r in short_failed), default=0.0) * 1000,
    )
    secret_watch.assert_clean()
    assert [r.describe() for r in slow_reqs if r.error is not None] == []
    assert len(slow_reqs) >= 20
    # A query is one round trip, two latencies.
    assert percentile(slow_took, 0.5) >= 2 * LATENCY
    assert percentile(slow_took, 0.5) > 2 * percentile(fast_took, 0.5)
    assert reconnected >= 4, "the drained connections were opened again through the proxy"
    # 12 threads on 4 connections, 40 ms a query, 50 ms to wait: some time
    # out, each within its timeout, with a PoolTimeout.
    assert short_failed, "no request timed out"
    for r in short_failed:
        assert isinstance(r.error, PoolTimeout), r.describe()
        assert r.took <= short + SLACK, f"took {r.took:.2f} s: {r.describe()}"
    assert stats["pool_size"] == stats["pool_available"] == 4


# ---- black hole ---------------------------------------------------------------------

ACQUIRE = 1.0
QUERY_DEADLINE = 1.0
CONNECT_TIMEOUT = 2  # libpq's minimum
KEEPALIVE = 0.5
# Long enough for a keepalive ping to time out (its deadline is 5 s).
# Long enough in CI mode for the whole chain to play out inside the hole:
# keepalive interval, the ping's 5 s deadline, then a connect_timeout.
HOLE = by_mode(10.0, 15.0)


class QueryDeadline(Exception):
    """The application's own deadline for a query passed."""


def bounded_select(conn: psycopg.Connection[Any], deadline: float) -> None:
    """`select 1` with a deadline, as an application that cannot afford to
    hang on a silent network does; past it, the connection is closed (its
    state is unknown) and QueryDeadline raised."""
    pgconn = conn.pgconn
    fd = pgconn.socket
    end = time.monotonic() + deadline

    def wait(write: bool) -> None:
        left = end - time.monotonic()
        ready = select.select([] if write else [fd], [fd] if write else [], [], max(left, 0))
        if not (ready[0] or ready[1]):
            conn.close()
            raise QueryDeadline(f"no answer within {deadline} s")

    pgconn.send_query(b"select 1")
    while pgconn.flush():
        wait(write=True)
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        wait(write=False)
    statuses = []
    while (res := pgconn.get_result()) is not None:
        statuses.append(res.status)
    if statuses != [ExecStatus.TUPLES_OK]:
        raise psycopg.OperationalError(f"unexpected results: {statuses}")


def bounded_request(pool: ConnectionPool[Any]) -> None:
    conn = pool.getconn(timeout=ACQUIRE)
    try:
        bounded_select(conn, QUERY_DEADLINE)
    finally:
        pool.putconn(conn)


@time_limit(120, 300)
def test_black_hole_bounds_every_wait_and_the_pool_recovers(
    scram_server: EmbeddedPostgres, proxy: FaultProxy, app_name: str, secret_watch: SecretWatch
) -> None:
    secret_watch.protect(scram_server.password)
    min_size = 4
    with ConnectionPool(
        proxy.dsn(scram_server.dsn),
        min_size=min_size,
        open=True,
        keepalive_interval=KEEPALIVE,
        kwargs={"application_name": app_name, "connect_timeout": CONNECT_TIMEOUT},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        before = client_pids(pool)
        # Two threads with pauses: some connections are in use when the
        # network goes, others idle.
        load = Load(pool, 2, bounded_request, think=0.2)
        with Monitor(pool, interval=0.01) as monitor:
            load.start()
            try:
                wait_for_requests(load, 0.0, 5, timeout=DEADLINE)
                hole = time.monotonic()
                cut = proxy.black_hole()
                time.sleep(HOLE)
                lost_in_hole = pool.get_stats()
                proxy.restore()
                restored = time.monotonic()
                wait_until(
                    lambda: monitor.first(restored, lambda s: s["pool_available"] >= min_size),
                    timeout=CONNECT_TIMEOUT + DEADLINE,
                    what="the pool refilled after the network came back",
                )
                recovered = monitor.first(restored, lambda s: s["pool_available"] >= min_size)
                assert recovered is not None
                wait_for_requests(load, recovered, 10, timeout=DEADLINE)
            finally:
                stop_took = load.stop(bound=ACQUIRE + QUERY_DEADLINE + SLACK + 5)
        after = client_pids(pool)
        stats = pool.get_stats()

    requests = load.snapshot()
    secret_watch.add_requests(requests)
    in_hole = [r for r in requests if hole <= r.started < restored]
    timeouts = [r for r in in_hole if isinstance(r.error, PoolTimeout)]
    deadlines = [r for r in in_hole if isinstance(r.error, QueryDeadline)]
    others = [r for r in in_hole if r.error is not None and r not in timeouts + deadlines]
    after_recovery = [r for r in requests if r.started >= recovered]
    failed_after = [r for r in after_recovery if r.error is not None]
    naming_connect_timeout = [r for r in timeouts if "timeout expired" in str(r.error)]
    report(
        "network_black_hole",
        "ferropool",
        hole_s=HOLE,
        connections_cut=cut,
        requests_in_hole=len(in_hole),
        pool_timeouts=len(timeouts),
        pool_timeouts_naming_connect_timeout=len(naming_connect_timeout),
        query_deadlines=len(deadlines),
        max_request_s=max(r.took for r in requests),
        found_by_keepalive=lost_in_hole["connections_lost"],
        returned_broken=lost_in_hole["returns_bad"],
        connect_errors_in_hole=lost_in_hole["connections_errors"],
        recovered_after_s=recovered - restored,
        requests_after_recovery=len(after_recovery),
        failed_after_recovery=len(failed_after),
        threads_joined_in_s=stop_took,
    )
    secret_watch.assert_clean()
    assert cut >= 1
    # No thread waited beyond its bounds: acquire, plus the query deadline.
    for r in requests:
        assert r.took <= ACQUIRE + QUERY_DEADLINE + SLACK, f"{r.took:.2f} s: {r.describe()}"
    for r in timeouts:
        assert r.took <= ACQUIRE + SLACK, f"{r.took:.2f} s: {r.describe()}"
    assert others == [], [r.describe() for r in others]
    # Idle half-open connections found by the keepalive ping, attempts ended
    # by connect_timeout, and the waiting requests told so.
    assert lost_in_hole["connections_lost"] >= 1, "no half-open connection found by keepalive"
    assert lost_in_hole["connections_errors"] >= 1, "no connection attempt ended"
    assert naming_connect_timeout, [r.describe() for r in timeouts][:3]
    # Back: every connection replaced, and nothing fails.
    assert after.isdisjoint(before), "a half-open connection is still in the pool"
    assert len(after_recovery) >= 10
    assert failed_after == [], [r.describe() for r in failed_after]
    assert stats["pool_size"] == stats["pool_available"] == min_size


# ---- resets -------------------------------------------------------------------------

RESETS = by_mode(3, 10)


def during(r: Request, resets: list[tuple[float, float]]) -> bool:
    return any(r.started < done and r.ended >= began for began, done in resets)


RESET_POOLS: dict[str, Any] = {
    "ferropool": ConnectionPool,
    "psycopg_pool": psycopg_pool.ConnectionPool,
}


@pytest.mark.parametrize("contender", list(RESET_POOLS))
def test_connection_resets_are_replaced_and_later_requests_succeed(
    contender: str,
    scram_server: EmbeddedPostgres,
    proxy: FaultProxy,
    app_name: str,
    secret_watch: SecretWatch,
) -> None:
    if contender == "ferropool":
        secret_watch.protect(scram_server.password)
    min_size = 4
    resets: list[tuple[float, float]] = []
    reset_count = 0
    with RESET_POOLS[contender](
        proxy.dsn(scram_server.dsn),
        min_size=min_size,
        open=True,
        kwargs={"application_name": app_name},
    ) as pool:
        pool.wait(timeout=DEADLINE)
        load = Load(pool, 8, partial(select_one, timeout=DEADLINE), think=[0.0, 0.0, 0.05])
        load.start()
        try:
            for _ in range(RESETS):
                wait_for_requests(load, time.monotonic(), 200, timeout=60)
                began = time.monotonic()
                reset_count += proxy.reset_all()
                resets.append((began, time.monotonic()))
            wait_for_requests(load, time.monotonic(), 200, timeout=60)
        finally:
            stop_took = load.stop(bound=DEADLINE + SLACK)
        wait_until(lambda: pool.get_stats()["pool_available"] == min_size, what="refilled")
        stats = pool.get_stats()

    requests = load.snapshot()
    secret_watch.add_requests(requests)
    flying_failed = [r for r in requests if r.error is not None and during(r, resets)]
    others_failed = [r for r in requests if r.error is not None and not during(r, resets)]
    report(
        "network_reset",
        contender,
        rounds=RESETS,
        connections_reset=reset_count,
        requests=len(requests),
        in_flight_failed=len(flying_failed),
        in_flight_errors=sorted({type(r.error).__name__ for r in flying_failed}),
        failed_outside_resets=len(others_failed),
        connections_num=stats.get("connections_num", 0),
        threads_joined_in_s=stop_took,
    )
    secret_watch.assert_clean()
    if contender != "ferropool":
        return
    assert reset_count >= RESETS * min_size
    for r in flying_failed:
        assert isinstance(r.error, psycopg.OperationalError), r.describe()
    assert others_failed == [], (
        f"{len(others_failed)} requests failed that did not run during a reset: "
        f"{[r.describe() for r in others_failed][:3]}"
    )
    assert stats["connections_num"] >= min_size * (RESETS + 1), "reset connections replaced"
    assert stats["pool_size"] == stats["pool_available"] == min_size
