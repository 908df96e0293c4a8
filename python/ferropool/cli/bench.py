"""``ferropool bench``: what pooling buys, and what ferropool buys over psycopg_pool.

Arguments, checks made before anything starts, and output; the measuring
is in scenarios. Results go to stdout, progress and errors to stderr, so
``> results.txt`` keeps only the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import psycopg

from . import report
from .contenders import require
from .errors import CliError
from .http_load import LoadGeneratorChoice
from .plan import FULL, QUICK, Plan
from .progress import ProgressBar, Steps
from .results import ScenarioResult
from .scenarios import SCENARIOS, Scenario, run_scenario, scenario_keys
from .server import BenchServer, bench_server

__all__ = ["add_parser", "run"]

DSN_ENV = "FERROPOOL_BENCH_DSN"
# The monitor's connection, besides the contenders'.
_MONITOR_CONNECTIONS = 1


def add_parser(commands: Any) -> None:
    """Add the ``bench`` command to the subparsers action *commands*."""
    keys = scenario_keys()
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="compare ferropool with psycopg_pool, SQLAlchemy and no pool",
        description=(
            "Measure, in one run and with alternating rounds, a new connection per "
            "request, psycopg_pool, SQLAlchemy's QueuePool and ferropool, and what the "
            "server pays for each. Without --dsn, a throwaway PostgreSQL with "
            "SCRAM-SHA-256 authentication (and TLS when an SSL-capable PostgreSQL is "
            "installed) is started on 127.0.0.1."
        ),
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get(DSN_ENV) or None,
        help=(
            "libpq connection string or URI of the server to measure "
            f"(default: ${DSN_ENV}, else an embedded server); the bench opens "
            f"up to {_peak(SCENARIOS)} connections at once"
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer and shorter rounds: about a minute instead of three and a half, rougher"
        " figures",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        metavar="N",
        help=f"measured rounds per contender (default {FULL.rounds}, {QUICK.rounds} with --quick)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        type=_scenario_list,
        metavar="NAME[,NAME...]",
        help=f"run only these scenarios (repeatable): {', '.join(keys)} (default: all)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="also draw throughput and latency charts into FILE.png (needs matplotlib)",
    )
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "bundled"),
        default="auto",
        help="HTTP load for end_to_end: wrk, the bundled Python one, or auto: "
        "wrk when installed (default)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    if args.rounds is not None:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    chosen = {key for group in (args.scenario or [scenario_keys()]) for key in group}
    scenarios = [s for s in SCENARIOS if s.key in chosen]
    _check_outputs(args.json, args.plot)
    _check_dependencies(scenarios, args.plot)

    runnable = [s for s in scenarios if s.unavailable() is None]
    progress = ProgressBar(sum((s.steps(plan) for s in runnable), Steps(0, 0.0)), sys.stderr)
    try:
        with bench_server(args.dsn, progress.note) as server:
            _check_room(server, runnable)
            results = _measure(server, scenarios, plan, progress, args.load_generator)
    finally:
        progress.done()  # an error message must not land on the progress line

    client = report.client_info()
    caveat = _quick_caveat(plan) if args.quick else None
    print(report.render_table(server.info, client, plan, results, quick_caveat=caveat))
    if args.json is not None:
        document = report.to_json(server.info, client, plan, results)
        _write(args.json, "--json", json.dumps(document, indent=2) + "\n")
    if args.plot is not None:
        from .plot import write_plot

        write_plot(args.plot, server.info, client, results)
    return 0


def _quick_caveat(plan: Plan) -> str:
    return (
        f"--quick: {plan.rounds} rounds of {plan.round_seconds:g} s per contender instead of"
        f" {FULL.rounds} of {FULL.round_seconds:g} s: on a busy machine its ratios can differ"
        " from a full run's by 25 % or more (rounds of 0.05 s once showed a third of the full"
        " run's lead with 32 threads); quote a full run's figures"
    )


def _measure(
    server: BenchServer,
    scenarios: list[Scenario],
    plan: Plan,
    progress: ProgressBar,
    load_generator: LoadGeneratorChoice,
) -> list[ScenarioResult]:
    results = []
    for scenario in scenarios:
        try:
            results.append(
                run_scenario(
                    scenario, server.conninfo, server.info.port, plan, progress, load_generator
                )
            )
        except psycopg.Error as ex:
            # PoolTimeout of any pool is a psycopg.OperationalError too.
            raise server.error(f"{scenario.title} failed", ex) from None
    return results


def _check_outputs(json_file: Path | None, plot_file: Path | None) -> None:
    for option, path in (("--json", json_file), ("--plot", plot_file)):
        if path is not None and not path.parent.is_dir():
            raise CliError(f"{option} {path}: directory {path.parent} does not exist")


def _check_dependencies(scenarios: list[Scenario], plot_file: Path | None) -> None:
    """Fail before the server starts, naming the pip command, if a package is missing."""
    require("psycopg_pool", "comparing with psycopg_pool")
    for scenario in scenarios:
        for module, needed_for in scenario.requires:
            require(module, needed_for, f"leave {scenario.key} out with --scenario")
    if plot_file is not None:
        require("matplotlib", "--plot")


def _check_room(server: BenchServer, scenarios: list[Scenario]) -> None:
    needed = _peak(scenarios)
    info = server.info
    if info.free_connections < needed:
        raise CliError(
            f"the bench holds up to {needed} connections at once and the server has "
            f"{max(info.free_connections, 0)} to spare (max_connections = "
            f"{info.max_connections}): raise max_connections or close other clients"
        )


def _peak(scenarios: list[Scenario] | tuple[Scenario, ...]) -> int:
    return max((s.peak_connections for s in scenarios), default=0) + _MONITOR_CONNECTIONS


def _write(path: Path, option: str, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as ex:
        raise CliError(f"{option} {path}: {ex.strerror or ex}") from None


def _scenario_list(text: str) -> list[str]:
    keys = scenario_keys()
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in keys]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(map(repr, unknown)) or repr(text)}: "
            f"choose from {', '.join(keys)}"
        )
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
