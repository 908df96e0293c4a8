"""Fixtures and the ratio summary for the pytest-benchmark suite.

Run with ``python -m pytest benches --benchmark-only`` (``pytest`` alone
collects tests/ only). Each group holds ferropool and psycopg_pool doing the
same thing against the same server in one run; what we report is the ratio
printed at the end, not the absolute times, which on a shared machine are
noise. FERROPOOL_BENCH_DSN points the suite at an existing server; otherwise
a throwaway one with trust authentication is started.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench_config import (
    CONTENTION_CONNECTIONS,
    MICRO_POOL_SIZE,
    SCALING_TARGET,
    SCALING_THREADS,
    TARGETS,
    contention_group,
)
from ferropool.cli.contenders import FERROPOOL, POOL_KINDS, PSYCOPG_POOL, PoolKind, open_pool
from ferropool.cli.embedded import EmbeddedPostgres
from ferropool.cli.workloads import Pool


@pytest.fixture(scope="session")
def bench_dsn() -> Iterator[str]:
    external = os.environ.get("FERROPOOL_BENCH_DSN")
    if external:
        yield external
        return
    with EmbeddedPostgres() as server:
        yield server.dsn


@pytest.fixture(params=POOL_KINDS)
def pool_kind(request: pytest.FixtureRequest) -> PoolKind:
    kind: PoolKind = request.param
    return kind


@pytest.fixture
def micro_pool(bench_dsn: str, pool_kind: PoolKind) -> Iterator[Pool]:
    """An open pool of 4 ready connections, of each kind in turn."""
    with open_pool(pool_kind, bench_dsn, MICRO_POOL_SIZE) as pool:
        yield pool


@pytest.fixture
def contention_pool(bench_dsn: str, pool_kind: PoolKind) -> Iterator[Pool]:
    """An open pool of 16 ready connections, of each kind in turn."""
    with open_pool(pool_kind, bench_dsn, CONTENTION_CONNECTIONS) as pool:
        yield pool


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop of the benchmark's own: an async pool opens on it, every call runs on it."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@dataclass(frozen=True)
class _Measured:
    group: str
    pool: str
    threads: int
    mean: float
    median: float


_MEASURED = pytest.StashKey[list[_Measured]]()
# group -> (median of the rounds' ratios, rounds), from test_alternating_rounds
_ALTERNATING = pytest.StashKey[dict[str, tuple[float, int]]]()


@pytest.fixture
def record_alternating(request: pytest.FixtureRequest) -> Any:
    """Record a group's ratio from alternating rounds, for the summary."""

    def record(group: str, ratio: float, rounds: int) -> None:
        request.config.stash.setdefault(_ALTERNATING, {})[group] = (ratio, rounds)

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    try:
        return (yield)
    finally:
        _record(item)


def _record(item: pytest.Item) -> None:
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    stats = getattr(fixture, "stats", None)  # None when benchmarks are disabled
    if fixture is None or not stats:
        return
    info = fixture.extra_info
    item.config.stash.setdefault(_MEASURED, []).append(
        _Measured(
            fixture.group, info["pool"], info["threads"], stats.stats.mean, stats.stats.median
        )
    )


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """After pytest-benchmark's tables: psycopg_pool's time over ferropool's, per group."""
    measured = {(m.group, m.pool, m.threads): m for m in config.stash.get(_MEASURED, [])}
    alternating = config.stash.get(_ALTERNATING, {})
    lines = []
    groups = dict.fromkeys([*TARGETS, *(group for group, _, _ in measured)])
    for group in groups:
        threads = max((t for g, _, t in measured if g == group), default=1)
        fast = measured.get((group, FERROPOOL, threads))
        slow = measured.get((group, PSYCOPG_POOL, threads))
        # Where alternating rounds measured the group, they carry the verdict.
        target = None if group in alternating else TARGETS.get(group)
        if fast and slow:
            lines.append(_ratio_line(group, slow, fast, target))
        if group in alternating:
            ratio, rounds = alternating[group]
            label = f"  alternating, median of {rounds} rounds"
            lines.append(_verdict(f"{label:<42} {ratio:6.2f}x", ratio, TARGETS.get(group)))
    one = measured.get((contention_group(1), FERROPOOL, 1))
    many = measured.get((contention_group(SCALING_THREADS), FERROPOOL, SCALING_THREADS))
    if one and many:
        # Both do the same total number of blocks, so times compare directly.
        label = f"ferropool throughput, {SCALING_THREADS} threads over 1"
        lines.append(_ratio_line(label, one, many, SCALING_TARGET))
    if lines:
        terminalreporter.write_sep("-", "ratios: slower mean / faster mean (medians in brackets)")
        for line in lines:
            terminalreporter.write_line(line)


def _ratio_line(label: str, slow: _Measured, fast: _Measured, target: float | None) -> str:
    ratio = slow.mean / fast.mean
    return _verdict(f"{label:<42} {ratio:6.2f}x ({slow.median / fast.median:.2f}x)", ratio, target)


def _verdict(text: str, ratio: float, target: float | None) -> str:
    if target is None:
        return text
    verdict = "ok" if ratio >= target else "BELOW TARGET"
    return f"{text}   target >= {target:g}x: {verdict}"


# ---- async pools (benches/test_async.py): targets and p99 waits --------------

# What ferropool's async pool should reach (psycopg_pool time over ferropool's);
# shown, never asserted. Keyed like test_async.py's groups.
# (The async connection() block is a micro benchmark: its target is in
# bench_config.TARGETS, its ratio in the summary above.)
ASYNC_TARGETS = {"async: 1000 tasks, 16 connections": 1.0}
_ASYNC_WAITS = pytest.StashKey[dict[tuple[str, str], float]]()


@pytest.fixture
def record_async_waits(request: pytest.FixtureRequest) -> Any:
    """Give a pool's per-request waits (seconds), round by round, for a group:
    the median of the rounds' p99 is printed."""

    def record(group: str, pool: str, rounds: list[list[float]]) -> None:
        p99s = []
        for waits in rounds:
            ordered = sorted(waits)
            p99s.append(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))])
        p99s.sort()
        request.config.stash.setdefault(_ASYNC_WAITS, {})[(group, pool)] = p99s[len(p99s) // 2]

    return record


class _AsyncSummary:
    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        measured = {(m.group, m.pool): m for m in config.stash.get(_MEASURED, [])}
        waits = config.stash.get(_ASYNC_WAITS, {})
        lines = []
        for group, target in ASYNC_TARGETS.items():
            fast, slow = measured.get((group, FERROPOOL)), measured.get((group, PSYCOPG_POOL))
            if fast and slow:
                lines.append(_ratio_line(group, slow, fast, target))
            ours, theirs = waits.get((group, FERROPOOL)), waits.get((group, PSYCOPG_POOL))
            if ours is not None and theirs is not None:
                verdict = "ok" if ours < theirs else "NOT LOWER"
                lines.append(
                    f"{'  p99 wait (median of rounds)':<42} psycopg_pool {theirs * 1e3:.1f} ms,"
                    f" ferropool {ours * 1e3:.1f} ms   target lower: {verdict}"
                )
        if lines:
            terminalreporter.write_sep("-", "async pools: psycopg_pool / ferropool")
            for line in lines:
                terminalreporter.write_line(line)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_AsyncSummary(), "ferropool-async-summary")
