"""Measuring contenders side by side: alternating rounds, each on its own account.

Each contender is warmed up once, then rounds run A B C D A B C D ..., so
that whatever else the machine does hits every contender alike, and each
contender's figure is the median of its rounds. Opening, every round (and
the pause after it) and closing are charged to the contender at the
server's cost meter. This module times and counts only: it never prints
or formats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, TypeVar

from .contenders import (
    CONTENDERS,
    NEW_CONNECTION,
    ContenderKind,
    configuration,
    open_contender,
)
from .plan import Plan
from .progress import Steps

if TYPE_CHECKING:
    from .http_load import LoadGeneratorChoice
from .results import ContenderResult, MeasurementResult, RoundResult, percentile
from .server_cost import CostMeter
from .workloads import Pool, Tally, ThreadGang

__all__ = [
    "Entry",
    "Progress",
    "ScenarioContext",
    "alternate",
    "charged",
    "measure_threads",
    "open_all",
    "summarize",
    "threaded_round",
]

T = TypeVar("T")

# (measurement title, contender, phase such as "warm-up" or "round 2/5",
# the seconds the step is planned to last)
Progress = Callable[[str, str, str, float], None]
# What each thread of a contender runs in a round, given its pool.
Work = Callable[[Pool], Callable[[float], Tally]]


@dataclass(frozen=True)
class ScenarioContext:
    """What a scenario runs against and reports to."""

    conninfo: str
    plan: Plan
    progress: Progress
    meter: CostMeter
    # Which HTTP load generator the end-to-end scenario uses.
    load_generator: LoadGeneratorChoice = "auto"


@dataclass(frozen=True)
class Entry:
    """One contender in one measurement."""

    name: str
    configuration: str
    # Runs one round lasting about the given number of seconds.
    run_round: Callable[[float], RoundResult]


def alternate_steps(
    measurements: int, contenders: int, plan: Plan, *, round_seconds: float | None = None
) -> Steps:
    """Progress steps of *measurements* calls of `alternate`: a warm-up and
    the plan's rounds for each of *contenders*, with their planned seconds."""
    seconds = plan.round_seconds if round_seconds is None else round_seconds
    per_contender = Steps(plan.rounds + 1, plan.warmup_seconds + plan.rounds * seconds)
    runs = measurements * contenders
    return Steps(per_contender.count * runs, per_contender.seconds * runs)


def alternate(
    title: str,
    entries: list[Entry],
    ctx: ScenarioContext,
    *,
    round_seconds: float | None = None,
) -> tuple[ContenderResult, ...]:
    """Warm each entry up, then run the plan's rounds of each, alternately."""
    plan, progress, meter = ctx.plan, ctx.progress, ctx.meter
    seconds = plan.round_seconds if round_seconds is None else round_seconds
    # A new connection per request closes all it opened by a round's end;
    # its server processes exit on its account, not the next contender's.
    for entry in entries:
        progress(title, entry.name, "warm-up", plan.warmup_seconds)
        with meter.charge(entry.name, closes=entry.name == NEW_CONNECTION):
            entry.run_round(plan.warmup_seconds)
    rounds: dict[str, list[RoundResult]] = {e.name: [] for e in entries}
    for i in range(plan.rounds):
        for entry in entries:
            progress(title, entry.name, f"round {i + 1}/{plan.rounds}", seconds)
            with meter.charge(entry.name, closes=entry.name == NEW_CONNECTION):
                rounds[entry.name].append(entry.run_round(seconds))
    return tuple(ContenderResult(e.name, e.configuration, tuple(rounds[e.name])) for e in entries)


def threaded_round(gang: ThreadGang[float, Tally]) -> Callable[[float], RoundResult]:
    """A round runner: every thread of *gang* works until a shared deadline."""

    def run_round(seconds: float) -> RoundResult:
        done = gang.run(perf_counter() + seconds)
        return summarize(done.results, done.seconds)

    return run_round


def summarize(tallies: list[Tally], seconds: float) -> RoundResult:
    """One round's figures from what each thread (or task) did in it."""
    latencies = sorted(x for tally in tallies for x in tally.latencies)
    return RoundResult(
        ops=sum(tally.ops for tally in tallies),
        seconds=seconds,
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
    )


@contextmanager
def charged(meter: CostMeter, name: str, opened: AbstractContextManager[T]) -> Iterator[T]:
    """Enter *opened* and, later, leave it, both on *name*'s account at the server."""
    with ExitStack() as stack:
        with meter.charge(name):
            value = stack.enter_context(opened)
        try:
            yield value
        finally:
            with meter.charge(name, closes=True):
                stack.close()


def open_all(
    stack: ExitStack,
    ctx: ScenarioContext,
    size: int,
    *,
    safe: bool = False,
    max_open: int | None = None,
) -> dict[ContenderKind, Pool]:
    """Every contender, open and filled with *size* connections, until *stack* closes."""
    return {
        kind: stack.enter_context(
            charged(
                ctx.meter,
                kind,
                open_contender(kind, ctx.conninfo, size, safe=safe, max_open=max_open),
            )
        )
        for kind in CONTENDERS
    }


def measure_threads(
    ctx: ScenarioContext,
    pools: dict[ContenderKind, Pool],
    work: Work,
    *,
    key: str,
    title: str,
    unit: str,
    threads: int,
    connections: int,
    safe: bool = False,
) -> MeasurementResult:
    """*threads* threads per contender running ``work(pool)``, in alternating rounds."""
    with ExitStack() as stack:
        entries = []
        for kind, pool in pools.items():
            gang = stack.enter_context(ThreadGang(threads, work(pool), name=f"bench-{kind}"))
            entries.append(Entry(kind, configuration(kind, safe=safe), threaded_round(gang)))
        results = alternate(title, entries, ctx)
    return MeasurementResult(key, title, unit, threads, connections, results)
