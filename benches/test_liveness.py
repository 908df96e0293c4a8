"""The cost of zero-round-trip liveness on the hot path.

getconn+putconn on an idle pool, one thread, in one run:
- ferropool with liveness_bypass=0: every checkout polls the socket;
- ferropool with liveness_bypass=None: no poll at all;
- ferropool with the default liveness_bypass (0.5 s): a connection reused
  within the window is not polled, so this is the common case;
- psycopg_pool with check=ConnectionPool.check_connection: its way of not
  handing out dead connections, a round trip per checkout.

The summary printed at the end gives the poll's cost per checkout (on
minus off; target: under 1 us), and how much cheaper a checkout that polls
is than psycopg_pool's checkout with its round-trip check.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg_pool
import pytest

import ferropool
from bench_config import OPS_PER_CALL

GROUP = "liveness: getconn+putconn"
POLL_EVERY = "ferropool, liveness_bypass=0"
NO_POLL = "ferropool, liveness_bypass=None"
DEFAULT = "ferropool, default liveness_bypass"
PSYCOPG_CHECK = "psycopg_pool, check=check_connection"
TARGET_NS = 1000.0


class _Summary:
    """Collects mean times per mode; prints the per-checkout costs last."""

    def __init__(self) -> None:
        self.means: dict[str, float] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        per_op = {mode: mean / OPS_PER_CALL * 1e9 for mode, mean in self.means.items()}
        if POLL_EVERY not in per_op or NO_POLL not in per_op:
            return
        terminalreporter.write_sep("-", "liveness: cost per checkout (mean, ns)")
        for mode, ns in per_op.items():
            terminalreporter.write_line(f"{mode:<44} {ns:10.0f} ns")
        poll = per_op[POLL_EVERY] - per_op[NO_POLL]
        verdict = "ok" if poll < TARGET_NS else "ABOVE TARGET"
        terminalreporter.write_line(
            f"{'socket poll (bypass=0 minus None)':<44} {poll:10.0f} ns"
            f"   target < {TARGET_NS:g} ns: {verdict}"
        )
        if PSYCOPG_CHECK in per_op:
            ratio = per_op[PSYCOPG_CHECK] / per_op[POLL_EVERY]
            terminalreporter.write_line(
                f"{'psycopg_pool with check / ferropool polling':<44} {ratio:9.1f}x"
            )


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> _Summary:
    plugin = _Summary()
    request.config.pluginmanager.register(plugin, "ferropool-liveness-summary")
    return plugin


@pytest.fixture(params=[POLL_EVERY, NO_POLL, DEFAULT, PSYCOPG_CHECK])
def liveness_pool(request: pytest.FixtureRequest, bench_dsn: str) -> Iterator[tuple[str, Any]]:
    mode: str = request.param
    pool: Any
    if mode == PSYCOPG_CHECK:
        pool = psycopg_pool.ConnectionPool(
            bench_dsn,
            min_size=4,
            open=True,
            check=psycopg_pool.ConnectionPool.check_connection,
        )
    else:
        options: dict[str, Any] = {
            POLL_EVERY: {"liveness_bypass": 0.0},
            NO_POLL: {"liveness_bypass": None},
            DEFAULT: {},
        }[mode]
        pool = ferropool.ConnectionPool(bench_dsn, min_size=4, open=True, **options)
    with pool:
        pool.wait()
        yield mode, pool


def borrow(pool: Any, n: int) -> None:
    getconn, putconn = pool.getconn, pool.putconn
    for _ in range(n):
        putconn(getconn())


@pytest.mark.benchmark(group=GROUP, warmup=True)
def test_checkout_cost_of_liveness(
    benchmark: Any, liveness_pool: tuple[str, Any], summary: _Summary
) -> None:
    mode, pool = liveness_pool
    benchmark.extra_info.update(pool=mode, threads=1, ops_per_call=OPS_PER_CALL)
    benchmark(borrow, pool, OPS_PER_CALL)
    stats = getattr(benchmark, "stats", None)  # None with --benchmark-disable
    if stats:
        summary.means[mode] = stats.stats.mean
    if mode == POLL_EVERY:
        assert pool.get_stats()["liveness_polls"] >= OPS_PER_CALL
    elif mode == NO_POLL:
        assert pool.get_stats()["liveness_polls"] == 0
