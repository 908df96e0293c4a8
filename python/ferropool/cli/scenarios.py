"""What ``python -m ferropool bench`` measures, and how rounds are run.

Each scenario opens its contenders side by side, warms each up once, then
runs rounds alternately (A B A B ...), so that whatever else the machine is
doing hits every contender alike; a contender's figure is the median of its
rounds. After a round that closed connections, a short pause lets their
server processes exit, so that the next contender does not pay for them.
This module measures only: it never prints, and never formats a
number (the report does).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter, sleep
from typing import Final

from .contenders import FERROPOOL, NEW_CONNECTION, POOL_KINDS, PSYCOPG_POOL, open_pool
from .workloads import (
    Pool,
    ThreadGang,
    connection_block,
    getconn_putconn,
    new_connection_select_one,
    pool_select_one,
)

__all__ = [
    "FULL",
    "QUICK",
    "SCENARIOS",
    "ContenderResult",
    "Plan",
    "Progress",
    "Scenario",
    "ScenarioResult",
    "run_scenario",
]

# (scenario title, contender, phase such as "warm-up" or "round 2/7")
Progress = Callable[[str, str, str], None]

REQUEST_THREADS: Final = 16
CONTENTION_THREADS: Final = 32
CONTENTION_CONNECTIONS: Final = 16
MICRO_POOL_SIZE: Final = 4
# A closed connection's server process exits after the client has moved on.
_BACKEND_EXIT_SETTLE: Final = 0.2


@dataclass(frozen=True)
class Plan:
    """How many rounds, and how much work in each (per thread)."""

    rounds: int
    micro_iterations: int
    pool_requests: int
    new_connection_requests: int
    contention_iterations: int


# About half a minute on a 2-core machine, most of it in "per request".
FULL: Final = Plan(
    rounds=7,
    micro_iterations=50_000,
    pool_requests=200,
    new_connection_requests=10,
    contention_iterations=2_000,
)
# A few seconds of measuring (for CI and a first look); the medians are rougher.
QUICK: Final = Plan(
    rounds=3,
    micro_iterations=5_000,
    pool_requests=60,
    new_connection_requests=4,
    contention_iterations=250,
)


@dataclass(frozen=True)
class ContenderResult:
    """One contender's rounds in one scenario."""

    name: str
    ops_per_round: int
    round_seconds: tuple[float, ...]

    @property
    def ops_per_second(self) -> float:
        """Median over the rounds of operations per second."""
        return statistics.median(self.ops_per_round / s for s in self.round_seconds)

    @property
    def seconds_per_op(self) -> float:
        """Wall time per operation at the median throughput (all threads together)."""
        return 1.0 / self.ops_per_second


@dataclass(frozen=True)
class Scenario:
    """A named measurement: who takes part, under what load, compared to whom."""

    key: str
    title: str
    unit: str
    threads: int
    connections: int
    contenders: tuple[str, ...]
    baselines: tuple[str, ...]
    run: Callable[[str, Plan, Progress], tuple[ContenderResult, ...]] = field(repr=False)
    # Connections held open at once, to check that the server has room.
    peak_connections: int

    def steps(self, plan: Plan) -> int:
        """Rounds it reports to Progress, warm-ups included."""
        return len(self.contenders) * (plan.rounds + 1)


@dataclass(frozen=True)
class ScenarioResult:
    """A scenario's figures."""

    scenario: Scenario
    contenders: tuple[ContenderResult, ...]

    def result(self, name: str) -> ContenderResult:
        for contender in self.contenders:
            if contender.name == name:
                return contender
        raise KeyError(name)

    def ratio(self, name: str, baseline: str) -> float:
        """How many times *name*'s throughput is *baseline*'s (above 1: faster)."""
        return self.result(name).ops_per_second / self.result(baseline).ops_per_second


def run_scenario(
    scenario: Scenario, conninfo: str, plan: Plan, progress: Progress
) -> ScenarioResult:
    results = scenario.run(conninfo, plan, progress)
    assert tuple(r.name for r in results) == scenario.contenders, scenario.key
    return ScenarioResult(scenario, results)


@dataclass(frozen=True)
class _Contender:
    name: str
    ops_per_round: int
    run_round: Callable[[], float]
    # Pause after each of its rounds, for work it leaves to the server
    # (backends exiting) not to be billed to the next contender.
    settle: float = 0.0


def _alternate(
    title: str, contenders: list[_Contender], rounds: int, progress: Progress
) -> tuple[ContenderResult, ...]:
    for contender in contenders:
        progress(title, contender.name, "warm-up")
        contender.run_round()
        sleep(contender.settle)
    seconds: dict[str, list[float]] = {c.name: [] for c in contenders}
    for i in range(rounds):
        for contender in contenders:
            progress(title, contender.name, f"round {i + 1}/{rounds}")
            seconds[contender.name].append(contender.run_round())
            sleep(contender.settle)
    return tuple(
        ContenderResult(c.name, c.ops_per_round, tuple(seconds[c.name])) for c in contenders
    )


def _timed(loop: Callable[[Pool, int], None], pool: Pool, iterations: int) -> float:
    started = perf_counter()
    loop(pool, iterations)
    return perf_counter() - started


def _micro(
    title: str, loop: Callable[[Pool, int], None]
) -> Callable[[str, Plan, Progress], tuple[ContenderResult, ...]]:
    """A single-thread loop on an idle pool: the cost of the pool itself."""

    def run(conninfo: str, plan: Plan, progress: Progress) -> tuple[ContenderResult, ...]:
        n = plan.micro_iterations
        with ExitStack() as stack:
            contenders = []
            for kind in POOL_KINDS:
                pool = stack.enter_context(open_pool(kind, conninfo, MICRO_POOL_SIZE))
                contenders.append(_Contender(kind, n, partial(_timed, loop, pool, n)))
            return _alternate(title, contenders, plan.rounds, progress)

    return run


def _per_request(conninfo: str, plan: Plan, progress: Progress) -> tuple[ContenderResult, ...]:
    """Short requests from many threads, with and without a pool."""
    threads = REQUEST_THREADS
    with ExitStack() as stack:
        no_pool = stack.enter_context(
            ThreadGang(
                threads,
                partial(new_connection_select_one, conninfo, plan.new_connection_requests),
                name="bench-no-pool",
            )
        )
        contenders = [
            _Contender(
                NEW_CONNECTION,
                threads * plan.new_connection_requests,
                no_pool.run,
                settle=_BACKEND_EXIT_SETTLE,
            )
        ]
        for kind in (PSYCOPG_POOL, FERROPOOL):
            pool = stack.enter_context(open_pool(kind, conninfo, threads))
            gang = stack.enter_context(
                ThreadGang(
                    threads,
                    partial(pool_select_one, pool, plan.pool_requests),
                    name=f"bench-{kind}",
                )
            )
            contenders.append(_Contender(kind, threads * plan.pool_requests, gang.run))
        return _alternate(PER_REQUEST_TITLE, contenders, plan.rounds, progress)


def _contention(conninfo: str, plan: Plan, progress: Progress) -> tuple[ContenderResult, ...]:
    """More threads than connections, doing nothing but borrow: the waiting path."""
    n = plan.contention_iterations
    with ExitStack() as stack:
        contenders = []
        for kind in POOL_KINDS:
            pool = stack.enter_context(open_pool(kind, conninfo, CONTENTION_CONNECTIONS))
            gang = stack.enter_context(
                ThreadGang(
                    CONTENTION_THREADS, partial(connection_block, pool, n), name=f"bench-{kind}"
                )
            )
            contenders.append(_Contender(kind, CONTENTION_THREADS * n, gang.run))
        return _alternate(CONTENTION_TITLE, contenders, plan.rounds, progress)


PER_REQUEST_TITLE: Final = f"per request: {REQUEST_THREADS} threads, select 1"
CONTENTION_TITLE: Final = (
    f"contention: {CONTENTION_THREADS} threads, {CONTENTION_CONNECTIONS} connections"
)
_GETCONN_TITLE: Final = "micro: getconn + putconn"
_BLOCK_TITLE: Final = "micro: empty connection() block"

SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario(
        key="micro.getconn_putconn",
        title=_GETCONN_TITLE,
        unit="op",
        threads=1,
        connections=MICRO_POOL_SIZE,
        contenders=POOL_KINDS,
        baselines=(PSYCOPG_POOL,),
        run=_micro(_GETCONN_TITLE, getconn_putconn),
        peak_connections=2 * MICRO_POOL_SIZE,
    ),
    Scenario(
        key="micro.connection_block",
        title=_BLOCK_TITLE,
        unit="block",
        threads=1,
        connections=MICRO_POOL_SIZE,
        contenders=POOL_KINDS,
        baselines=(PSYCOPG_POOL,),
        run=_micro(_BLOCK_TITLE, connection_block),
        peak_connections=2 * MICRO_POOL_SIZE,
    ),
    Scenario(
        key="per_request",
        title=PER_REQUEST_TITLE,
        unit="request",
        threads=REQUEST_THREADS,
        connections=REQUEST_THREADS,
        contenders=(NEW_CONNECTION, PSYCOPG_POOL, FERROPOOL),
        baselines=(PSYCOPG_POOL, NEW_CONNECTION),
        run=_per_request,
        # Both pools full, plus one connection per thread without a pool.
        peak_connections=3 * REQUEST_THREADS,
    ),
    Scenario(
        key="contention",
        title=CONTENTION_TITLE,
        unit="block",
        threads=CONTENTION_THREADS,
        connections=CONTENTION_CONNECTIONS,
        contenders=POOL_KINDS,
        baselines=(PSYCOPG_POOL,),
        run=_contention,
        peak_connections=2 * CONTENTION_CONNECTIONS,
    ),
)
