"""Presenting bench results: the terminal table and the JSON document.

Ratios come first, because absolute times on a shared machine are noise:
every figure is shown next to how it compares with psycopg_pool (and, for
requests, with opening a new connection each time). This module formats
only; it never measures.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .contenders import NEW_CONNECTION
from .scenarios import ContenderResult, Plan, ScenarioResult
from .server import ServerInfo

__all__ = ["client_info", "render_table", "to_json"]

JSON_FORMAT_VERSION = 1

_UNIT_PLURALS = {"op": "ops", "block": "blocks", "request": "requests"}
_SHORT = {NEW_CONNECTION: "new connection"}


def client_info() -> dict[str, Any]:
    """Versions and machine the figures were taken with."""
    import psycopg

    def installed(dist: str) -> str | None:
        try:
            return version(dist)
        except PackageNotFoundError:
            return None

    return {
        "ferropool": installed("ferropool"),
        "psycopg": psycopg.__version__,
        "psycopg_impl": psycopg.pq.__impl__,
        "libpq": _libpq_version(psycopg.pq.version()),
        "psycopg_pool": installed("psycopg-pool"),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
    }


def to_json(
    server: ServerInfo, client: dict[str, Any], plan: Plan, results: list[ScenarioResult]
) -> dict[str, Any]:
    return {
        "format": JSON_FORMAT_VERSION,
        "server": asdict(server),
        "client": client,
        "plan": asdict(plan),
        "scenarios": [_scenario_json(result) for result in results],
    }


def _scenario_json(result: ScenarioResult) -> dict[str, Any]:
    scenario = result.scenario
    return {
        "key": scenario.key,
        "title": scenario.title,
        "unit": scenario.unit,
        "threads": scenario.threads,
        "connections": scenario.connections,
        "baselines": list(scenario.baselines),
        "results": [
            {
                "contender": contender.name,
                "ops_per_second": contender.ops_per_second,
                "seconds_per_op": contender.seconds_per_op,
                "ops_per_round": contender.ops_per_round,
                "round_seconds": list(contender.round_seconds),
                # Throughput over each baseline's: above 1 is faster.
                "ratios": {
                    baseline: result.ratio(contender.name, baseline)
                    for baseline in scenario.baselines
                },
            }
            for contender in result.contenders
        ],
    }


def render_table(
    server: ServerInfo, client: dict[str, Any], plan: Plan, results: list[ScenarioResult]
) -> str:
    baselines: list[str] = []
    for result in results:
        baselines += [b for b in result.scenario.baselines if b not in baselines]
    header = ["scenario", "contender", "median", *(f"vs {_SHORT.get(b, b)}" for b in baselines)]
    # One block of rows per scenario, the scenario named on its first row.
    blocks = [
        [
            [
                result.scenario.title if i == 0 else "",
                contender.name,
                _figure(result, contender),
                *(
                    f"{result.ratio(contender.name, b):.2f}x"
                    if b in result.scenario.baselines
                    else ""
                    for b in baselines
                ),
            ]
            for i, contender in enumerate(result.contenders)
        ]
        for result in results
    ]
    widths = [len(h) for h in header]
    for row in (row for block in blocks for row in block):
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: list[str]) -> str:
        # Text columns to the left, figures to the right.
        padded = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    table = [line(header), "  ".join("-" * w for w in widths)]
    for i, block in enumerate(blocks):
        if i:
            table.append("")
        table += [line(row) for row in block]
    return "\n".join([*_preamble(server, client, plan), "", *table, "", _FOOTNOTE])


def _figure(result: ScenarioResult, contender: ContenderResult) -> str:
    """Time per operation on one thread; operations per second on many."""
    scenario = result.scenario
    if scenario.threads == 1:
        return f"{_duration(contender.seconds_per_op)}/{scenario.unit}"
    return f"{_rate(contender.ops_per_second)} {_UNIT_PLURALS[scenario.unit]}/s"


_FOOTNOTE = (
    "vs X: throughput over X's in the same run (2.00x = twice as many per second).\n"
    "Threaded rows count the operations of all threads together."
)


def _preamble(server: ServerInfo, client: dict[str, Any], plan: Plan) -> list[str]:
    where = "embedded, throwaway" if server.embedded else "--dsn"
    tls = (
        f"yes ({server.tls_version})"
        if server.tls and server.tls_version
        else ("yes" if server.tls else "no")
    )
    return [
        f"server: PostgreSQL {server.version} at {server.host}:{server.port} ({where}); "
        f"authentication: {server.auth}; TLS: {tls}",
        f"client: ferropool {client['ferropool']}, psycopg {client['psycopg']} "
        f"({client['psycopg_impl']}, libpq {client['libpq']}), "
        f"psycopg_pool {client['psycopg_pool']}, Python {client['python']}, "
        f"{client['platform']}, {client['cpus']} CPUs",
        f"method: median of {plan.rounds} rounds per contender, after a warm-up; "
        "contenders alternate round by round",
    ]


def _duration(seconds: float) -> str:
    for scale, unit in ((1e-6, "ns"), (1e-3, "us"), (1.0, "ms")):
        if seconds < scale:
            return f"{_three_digits(seconds / scale * 1e3)} {unit}"
    return f"{_three_digits(seconds)} s"


def _rate(per_second: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{_three_digits(per_second / scale)}{suffix}"
    return _three_digits(per_second)


def _three_digits(value: float) -> str:
    """3 significant digits, trailing zeros kept so that columns line up: 5.00, 21.5, 216."""
    if value >= 99.95:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 9.995 else f"{value:.2f}"


def _libpq_version(number: int) -> str:
    return f"{number // 10000}.{number % 10000}"
