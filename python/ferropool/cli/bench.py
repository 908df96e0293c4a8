"""``ferropool bench``: what pooling buys, and what ferropool buys over psycopg_pool.

Arguments, progress and output; the measuring is in ``scenarios``. Results
go to stdout, progress and errors to stderr, so ``> results.txt`` keeps
only the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import psycopg

from . import report
from .contenders import require_psycopg_pool
from .errors import CliError
from .scenarios import FULL, QUICK, SCENARIOS, Plan, Scenario, ScenarioResult, run_scenario
from .server import BenchServer, bench_server

__all__ = ["add_parser", "run"]

DSN_ENV = "FERROPOOL_BENCH_DSN"


def add_parser(commands: Any) -> None:
    """Add the ``bench`` command to the subparsers action *commands*."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="compare ferropool with psycopg_pool and with no pool",
        description=(
            "Measure, in one run and with alternating rounds, ferropool against "
            "psycopg_pool and against opening a new connection per request. "
            "Without --dsn, a throwaway PostgreSQL with SCRAM authentication is "
            "started on 127.0.0.1."
        ),
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get(DSN_ENV) or None,
        help=(
            "libpq connection string or URI of the server to measure "
            f"(default: ${DSN_ENV}, else an embedded server); the bench opens "
            "up to 48 connections at once"
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer and shorter rounds: seconds instead of about half a minute, rougher figures",
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
        choices=[s.key for s in SCENARIOS],
        metavar="NAME",
        help=(
            "run only this scenario (repeatable): "
            + ", ".join(s.key for s in SCENARIOS)
            + " (default: all)"
        ),
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    if args.rounds is not None:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    json_file: Path | None = args.json
    if json_file is not None and not json_file.parent.is_dir():
        raise CliError(f"--json {json_file}: directory {json_file.parent} does not exist")
    require_psycopg_pool()
    chosen = set(args.scenario or [s.key for s in SCENARIOS])
    scenarios = [s for s in SCENARIOS if s.key in chosen]

    progress = _Progress(sum(s.steps(plan) for s in scenarios), sys.stderr)
    try:
        with bench_server(args.dsn, progress.note) as server:
            _check_room(server, scenarios)
            results = _measure(server, scenarios, plan, progress)
    finally:
        progress.done()  # an error message must not land on the progress line

    client = report.client_info()
    print(report.render_table(server.info, client, plan, results))
    if json_file is not None:
        document = report.to_json(server.info, client, plan, results)
        try:
            json_file.write_text(json.dumps(document, indent=2) + "\n")
        except OSError as ex:
            raise CliError(f"--json {json_file}: {ex.strerror or ex}") from None
    return 0


def _measure(
    server: BenchServer, scenarios: list[Scenario], plan: Plan, progress: _Progress
) -> list[ScenarioResult]:
    results = []
    for scenario in scenarios:
        try:
            results.append(run_scenario(scenario, server.conninfo, plan, progress))
        except psycopg.Error as ex:
            # PoolTimeout of either pool is a psycopg.OperationalError too.
            raise server.error(f"{scenario.title} failed", ex) from None
    return results


def _check_room(server: BenchServer, scenarios: list[Scenario]) -> None:
    needed = max(s.peak_connections for s in scenarios)
    info = server.info
    if info.free_connections < needed:
        raise CliError(
            f"the bench holds up to {needed} connections at once and the server has "
            f"{max(info.free_connections, 0)} to spare (max_connections = "
            f"{info.max_connections}): raise max_connections or close other clients"
        )


class _Progress:
    """'[3/32] micro: getconn + putconn: ferropool, round 1/7' lines on stderr.

    On a terminal each line overwrites the previous one.
    """

    def __init__(self, total: int, stream: TextIO) -> None:
        self._total = total
        self._step = 0
        self._stream = stream
        self._tty = stream.isatty()
        self._width = 0

    def __call__(self, scenario: str, contender: str, phase: str) -> None:
        self._step += 1
        self.note(f"[{self._step}/{self._total}] {scenario}: {contender}, {phase}")

    def note(self, text: str) -> None:
        if self._tty:
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def done(self) -> None:
        if self._tty and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
