"""What a bench run found: rounds, medians, ratios and the server-side cost.

Plain data, shared by the scenarios that fill it and the report and plot
that show it. A contender's figure is the median of its rounds, never a
mean: one round disturbed by the machine must not move it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "ContenderResult",
    "MeasurementResult",
    "RoundResult",
    "ScenarioResult",
    "ServerCost",
    "percentile",
]


@dataclass(frozen=True)
class RoundResult:
    """One round of one contender: operations done and the wall time they took."""

    ops: int
    seconds: float
    # Per-request latency percentiles of the round, where requests were timed.
    p50: float | None = None
    p99: float | None = None

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ContenderResult:
    """One contender's measured rounds in one measurement."""

    name: str
    # How the contender was set up here, e.g. "check=ConnectionPool.check_connection".
    configuration: str
    rounds: tuple[RoundResult, ...]

    @property
    def ops_per_second(self) -> float:
        """Median over the rounds of operations per second (all threads together)."""
        return statistics.median(r.ops_per_second for r in self.rounds)

    @property
    def seconds_per_op(self) -> float:
        """Wall time per operation at the median throughput."""
        rate = self.ops_per_second
        return 1.0 / rate if rate > 0 else float("inf")

    @property
    def latency_p50(self) -> float | None:
        """Median over the rounds of each round's median request latency."""
        return _median_of(r.p50 for r in self.rounds)

    @property
    def latency_p99(self) -> float | None:
        """Median over the rounds of each round's 99th percentile request latency."""
        return _median_of(r.p99 for r in self.rounds)


@dataclass(frozen=True)
class MeasurementResult:
    """One workload at one concurrency, every contender side by side."""

    key: str
    title: str
    unit: str
    threads: int
    connections: int
    contenders: tuple[ContenderResult, ...]
    # How requests reached the application, for the end-to-end runs ("HTTP, wrk").
    transport: str | None = None
    # asyncio tasks sharing the connections (on one thread), for the async runs.
    tasks: int | None = None

    def result(self, name: str) -> ContenderResult:
        for contender in self.contenders:
            if contender.name == name:
                return contender
        raise KeyError(name)

    def has(self, name: str) -> bool:
        return any(c.name == name for c in self.contenders)

    def ratio(self, name: str, baseline: str) -> float:
        """How many times *name*'s throughput is *baseline*'s (above 1: faster)."""
        base = self.result(baseline).ops_per_second
        return self.result(name).ops_per_second / base if base > 0 else float("inf")


@dataclass(frozen=True)
class ServerCost:
    """What the server paid for one contender over a scenario.

    None where the server cannot tell: pg_stat_database counts sessions
    from PostgreSQL 14 on, and TIME_WAIT is read from Linux's /proc.
    """

    connections_opened: int | None
    peak_backends: int
    time_wait_sockets: int | None


@dataclass(frozen=True)
class ScenarioResult:
    key: str
    title: str
    description: str
    measurements: tuple[MeasurementResult, ...] = ()
    # Per contender, and for the whole scenario (everything the server saw).
    costs: dict[str, ServerCost] = field(default_factory=dict)
    total_cost: ServerCost | None = None
    # Why the scenario did not run, when it could not (the async pool missing).
    skipped: str | None = None


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """The value below which *fraction* of *sorted_values* lie (nearest rank)."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def _median_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
