"""What ``python -m ferropool bench`` measures: the scenarios.

Every scenario compares a new connection per request, psycopg_pool,
SQLAlchemy's QueuePool and ferropool, opened side by side and measured in
alternating rounds (see measure), and reports what the server paid for
each (see server_cost). The in-process scenarios live here; the end to end
one, which needs an HTTP server and a load generator, is in end_to_end, and
the async one in async_scenario. This module measures only: it never
prints, and never formats a number (the report does).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from . import async_scenario, end_to_end
from .contenders import CONTENDERS, NewConnectionPerRequest
from .http_load import LoadGeneratorChoice
from .measure import Progress, ScenarioContext, Work, alternate_steps, measure_threads, open_all
from .plan import Plan
from .progress import Steps
from .results import MeasurementResult, ScenarioResult
from .server_cost import CostMeter
from .workloads import Pool, Repeat, Tally, connection_block, getconn_putconn, select_one_until

__all__ = ["SCENARIOS", "Scenario", "run_scenario", "scenario_keys"]

MICRO_POOL_SIZE: Final = 4
SHARED_CONNECTIONS: Final = 16
CONTENTION_THREADS: Final = (1, 4, 16, 32, 64)
REQUEST_THREADS: Final = 16
# Cheap operations run in batches between two readings of the clock.
_EMPTY_BATCH: Final = 32
_SQLALCHEMY: Final = ("sqlalchemy", "the SQLAlchemy QueuePool contender")


@dataclass(frozen=True)
class Scenario:
    """A named group of measurements, and what it needs to run."""

    key: str
    title: str
    description: str
    contenders: tuple[str, ...]
    run: Callable[[ScenarioContext], tuple[MeasurementResult, ...]] = field(repr=False)
    # Rounds reported to Progress, warm-ups included.
    steps: Callable[[Plan], Steps] = field(repr=False)
    # Connections the contenders hold at once, to check that the server has room.
    peak_connections: int
    # Optional modules it imports: (module, what for).
    requires: tuple[tuple[str, str], ...] = ()
    # Why it cannot run here (None: it can), asked before anything starts.
    unavailable: Callable[[], str | None] = field(default=lambda: None, repr=False)


def run_scenario(
    scenario: Scenario,
    conninfo: str,
    port: int,
    plan: Plan,
    progress: Progress,
    load_generator: LoadGeneratorChoice = "auto",
) -> ScenarioResult:
    """Run *scenario* against the server *conninfo* names (listening on *port*)."""
    reason = scenario.unavailable()
    if reason is not None:
        return ScenarioResult(scenario.key, scenario.title, scenario.description, skipped=reason)
    with CostMeter(conninfo, port, scenario.contenders) as meter:
        ctx = ScenarioContext(conninfo, plan, progress, meter, load_generator)
        measurements = scenario.run(ctx)
        return ScenarioResult(
            scenario.key,
            scenario.title,
            scenario.description,
            measurements,
            meter.costs(),
            meter.total(),
        )


def _empty(loop: Callable[[Pool, int], None]) -> Work:
    """Work repeating *loop*: in batches on pools, one at a time without one."""

    def work(pool: Pool) -> Callable[[float], Tally]:
        # A new connection takes milliseconds: batching it would only overshoot.
        batch = 1 if isinstance(pool, NewConnectionPerRequest) else _EMPTY_BATCH
        return Repeat(loop, pool, batch)

    return work


def _select_one(pool: Pool) -> Callable[[float], Tally]:
    return partial(select_one_until, pool)


def _micro(ctx: ScenarioContext) -> tuple[MeasurementResult, ...]:
    """One thread on an idle pool: the cost of the pool itself."""
    with ExitStack() as stack:
        pools = open_all(stack, ctx, MICRO_POOL_SIZE)
        measure = partial(measure_threads, ctx, pools, threads=1, connections=MICRO_POOL_SIZE)
        return (
            measure(_empty(getconn_putconn), key="micro.getconn_putconn",
                    title="micro: getconn + putconn", unit="op"),
            measure(_empty(connection_block), key="micro.connection_block",
                    title="micro: connection() block", unit="block"),
        )  # fmt: skip


def _contention(ctx: ScenarioContext) -> tuple[MeasurementResult, ...]:
    """1 to 64 threads sharing 16 connections: the waiting path, then with a query."""
    results = []
    with ExitStack() as stack:
        pools = open_all(stack, ctx, SHARED_CONNECTIONS, max_open=SHARED_CONNECTIONS)
        workloads: tuple[tuple[str, str, Work], ...] = (
            ("empty_block", "block", _empty(connection_block)),
            ("select_1", "request", _select_one),
        )
        for slug, unit, work in workloads:
            name = slug.replace("_", " ")
            for threads in CONTENTION_THREADS:
                results.append(
                    measure_threads(
                        ctx,
                        pools,
                        work,
                        key=f"contention.{slug}.{threads}",
                        title=f"contention: {_threads(threads)}, {name}",
                        unit=unit,
                        threads=threads,
                        connections=SHARED_CONNECTIONS,
                    )
                )
    return tuple(results)


def _threads(count: int) -> str:
    return "1 thread" if count == 1 else f"{count} threads"


def _safe_checkout(ctx: ScenarioContext) -> tuple[MeasurementResult, ...]:
    """Each pool's liveness check at checkout against ferropool's default configuration."""
    with ExitStack() as stack:
        pools = open_all(stack, ctx, REQUEST_THREADS, safe=True)
        return (
            measure_threads(
                ctx,
                pools,
                _select_one,
                key="safe_checkout",
                title=f"safe checkout: {REQUEST_THREADS} threads, select 1",
                unit="request",
                threads=REQUEST_THREADS,
                connections=REQUEST_THREADS,
                safe=True,
            ),
        )


def _steps(measurements: int) -> Callable[[Plan], Steps]:
    return lambda plan: alternate_steps(measurements, len(CONTENDERS), plan)


# Three contenders' pools full, and the fourth's connections open at once.
_PEAK_SHARED: Final = len(CONTENDERS) * SHARED_CONNECTIONS

SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario(
        key="micro",
        title="micro",
        description=(
            f"one thread borrowing from an idle pool of {MICRO_POOL_SIZE} connections:"
            " getconn() + putconn(), and an empty with pool.connection(): block"
        ),
        contenders=CONTENDERS,
        run=_micro,
        steps=_steps(2),
        peak_connections=(len(CONTENDERS) - 1) * MICRO_POOL_SIZE + 1,
        requires=(_SQLALCHEMY,),
    ),
    Scenario(
        key="contention",
        title="contention",
        description=(
            f"{', '.join(map(str, CONTENTION_THREADS))} threads sharing "
            f"{SHARED_CONNECTIONS} connections (a new connection per request: at most "
            f"{SHARED_CONNECTIONS} open at once), empty block and select 1"
        ),
        contenders=CONTENDERS,
        run=_contention,
        steps=_steps(2 * len(CONTENTION_THREADS)),
        peak_connections=_PEAK_SHARED,
        requires=(_SQLALCHEMY,),
    ),
    Scenario(
        key="safe_checkout",
        title="safe checkout",
        description=(
            "psycopg_pool with check=ConnectionPool.check_connection and SQLAlchemy "
            "with pre_ping=True against ferropool's default configuration; "
            f"select 1 per request, {REQUEST_THREADS} threads on {REQUEST_THREADS} connections"
        ),
        contenders=CONTENDERS,
        run=_safe_checkout,
        steps=_steps(1),
        peak_connections=_PEAK_SHARED,
        requires=(_SQLALCHEMY,),
    ),
    Scenario(
        key="end_to_end",
        title="end to end",
        description=end_to_end.DESCRIPTION,
        contenders=CONTENDERS,
        run=end_to_end.run,
        steps=end_to_end.steps,
        peak_connections=end_to_end.PEAK_CONNECTIONS,
        requires=(_SQLALCHEMY, ("waitress", "the end_to_end scenario's WSGI server")),
    ),
    Scenario(
        key="async",
        title="async",
        description=async_scenario.DESCRIPTION,
        contenders=async_scenario.CONTENDERS,
        run=async_scenario.run,
        steps=async_scenario.steps,
        peak_connections=async_scenario.PEAK_CONNECTIONS,
        unavailable=async_scenario.unavailable,
    ),
)


def scenario_keys() -> list[str]:
    return [s.key for s in SCENARIOS]
