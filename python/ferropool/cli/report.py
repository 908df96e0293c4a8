"""Presenting bench results: the terminal table and the JSON document.

Ratios come first, because absolute times on a shared machine are noise:
every figure is shown next to how it compares with psycopg_pool and with
opening a new connection per request, and each scenario ends with what the
server paid for each contender. This module formats only; it never
measures.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from .contenders import FERROPOOL, NEW_CONNECTION, PSYCOPG_POOL
from .plan import Plan
from .results import ContenderResult, MeasurementResult, ScenarioResult, ServerCost
from .server import ServerInfo

__all__ = ["client_info", "render_table", "to_json"]

JSON_FORMAT_VERSION = 2

BASELINES: Final = (PSYCOPG_POOL, NEW_CONNECTION)
_UNIT_PLURALS: Final = {"op": "ops", "block": "blocks", "request": "requests"}
_SHORT: Final = {NEW_CONNECTION: "new connection"}
# How a contender's non-default set-up is named in the table.
_SHORT_CONFIGURATION: Final = {
    "check=ConnectionPool.check_connection": "check_connection",
    "pre_ping=True": "pre_ping",
}
_INDENT: Final = "  "


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
        "sqlalchemy": installed("sqlalchemy"),
        "waitress": installed("waitress"),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
    }


# -- JSON -------------------------------------------------------------------


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
    return {
        "key": result.key,
        "title": result.title,
        "description": result.description,
        "skipped": result.skipped,
        "measurements": [_measurement_json(m) for m in result.measurements],
        "server_cost": {
            "contenders": {name: asdict(cost) for name, cost in result.costs.items()},
            "total": asdict(result.total_cost) if result.total_cost else None,
        },
    }


def _measurement_json(measurement: MeasurementResult) -> dict[str, Any]:
    baselines = [b for b in BASELINES if measurement.has(b)]
    return {
        "key": measurement.key,
        "title": measurement.title,
        "unit": measurement.unit,
        "threads": measurement.threads,
        "tasks": measurement.tasks,
        "connections": measurement.connections,
        "transport": measurement.transport,
        "baselines": baselines,
        "results": [
            {
                "contender": contender.name,
                "configuration": contender.configuration,
                "ops_per_second": contender.ops_per_second,
                "seconds_per_op": contender.seconds_per_op,
                "latency_p50_seconds": contender.latency_p50,
                "latency_p99_seconds": contender.latency_p99,
                "rounds": [asdict(r) for r in contender.rounds],
                # Throughput over each baseline's: above 1 is faster.
                "ratios": {b: measurement.ratio(contender.name, b) for b in baselines},
            }
            for contender in measurement.contenders
        ],
    }


# -- terminal ---------------------------------------------------------------


def render_table(
    server: ServerInfo, client: dict[str, Any], plan: Plan, results: list[ScenarioResult]
) -> str:
    lines = _preamble(server, client, plan)
    for result in results:
        lines += ["", f"{result.title}: {result.description}"]
        if result.skipped:
            lines.append(f"{_INDENT}{result.skipped}")
            continue
        lines += _measurements_table(result)
        lines += ["", *_cost_table(result)]
    summary = _summary(results)
    if summary:
        lines += ["", "summary:", *(f"{_INDENT}{line}" for line in summary)]
    return "\n".join([*lines, "", _FOOTNOTE])


_FOOTNOTE = (
    "vs X: throughput over X's in the same run (2.00x = twice as many per second).\n"
    "Threaded rows count the operations of all threads together; p50/p99: latency of a\n"
    "request. Server-side cost over the scenario: connections the server opened\n"
    "(pg_stat_database), most backends at once (pg_stat_activity, sampled), and client\n"
    "sockets left in TIME_WAIT for a minute (/proc/net/tcp)."
)


def _preamble(server: ServerInfo, client: dict[str, Any], plan: Plan) -> list[str]:
    where = (
        f"embedded and throwaway, from {server.build}"
        if server.embedded and server.build
        else ("embedded and throwaway" if server.embedded else "--dsn")
    )
    tls = (
        f"TLS ({server.tls_version})"
        if server.tls and server.tls_version
        else ("TLS" if server.tls else "no TLS")
    )
    sqlalchemy = f", SQLAlchemy {client['sqlalchemy']}" if client.get("sqlalchemy") else ""
    return [
        f"server: PostgreSQL {server.version} at {server.host}:{server.port} ({where})",
        f"protections: authentication {server.auth}, {tls}",
        f"client: ferropool {client['ferropool']}, psycopg {client['psycopg']} "
        f"({client['psycopg_impl']}, libpq {client['libpq']}), "
        f"psycopg_pool {client['psycopg_pool']}{sqlalchemy}, Python {client['python']}, "
        f"{client['platform']}, {client['cpus']} CPUs",
        f"method: median of {plan.rounds} rounds of {plan.round_seconds:g} s per contender "
        f"(over HTTP: {plan.http_round_seconds} s), after a warm-up; contenders alternate "
        "round by round",
    ]


def _measurements_table(result: ScenarioResult) -> list[str]:
    header = ["measurement", "contender", "median", "p50", "p99",
              *(f"vs {_SHORT.get(b, b)}" for b in BASELINES)]  # fmt: skip
    rows: list[list[str] | None] = []  # None: a blank line between measurements
    for measurement in result.measurements:
        if rows:
            rows.append(None)
        label = _measurement_label(result, measurement)
        for i, contender in enumerate(measurement.contenders):
            rows.append(
                [
                    label if i == 0 else "",
                    _contender_label(contender),
                    _figure(measurement, contender),
                    _duration(contender.latency_p50),
                    _duration(contender.latency_p99),
                    *(
                        _ratio(measurement.ratio(contender.name, b)) if measurement.has(b) else ""
                        for b in BASELINES
                    ),
                ]
            )
        if measurement.transport:
            rows.append([f"({measurement.transport})", "", "", "", "", "", ""])
    return _align(header, rows, text_columns=2)


def _cost_table(result: ScenarioResult) -> list[str]:
    header = ["server-side cost", "", "connections opened", "peak backends", "TIME_WAIT sockets"]
    rows: list[list[str] | None] = [
        ["", name, *_cost_cells(cost)] for name, cost in result.costs.items()
    ]
    if result.total_cost is not None:
        rows.append(["", "whole scenario", *_cost_cells(result.total_cost)])
    return _align(header, rows, text_columns=2)


def _cost_cells(cost: ServerCost) -> list[str]:
    def count(value: int | None) -> str:
        return "n/a" if value is None else f"{value:,}"

    return [
        count(cost.connections_opened),
        count(cost.peak_backends),
        count(cost.time_wait_sockets),
    ]


def _align(header: list[str], rows: list[list[str] | None], *, text_columns: int) -> list[str]:
    # A figure column with nothing in it (no latency in "micro") is left out.
    keep = [
        i < text_columns or any(row is not None and row[i] for row in rows)
        for i in range(len(header))
    ]
    header = [cell for cell, kept in zip(header, keep, strict=True) if kept]
    rows = [
        None if row is None else [cell for cell, kept in zip(row, keep, strict=True) if kept]
        for row in rows
    ]
    widths = [len(h) for h in header]
    for row in rows:
        if row is not None:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: list[str]) -> str:
        # Text columns to the left, figures to the right.
        padded = [
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return (_INDENT + "  ".join(padded)).rstrip()

    table = [line(header), _INDENT + "  ".join("-" * w for w in widths)]
    table += [line(row) if row is not None else "" for row in rows]
    return table


def _measurement_label(result: ScenarioResult, measurement: MeasurementResult) -> str:
    # Under its scenario's heading, "contention: 32 threads, ..." needs no prefix.
    prefix = f"{result.title}: "
    title = measurement.title
    return title[len(prefix) :] if title.startswith(prefix) else title


def _contender_label(contender: ContenderResult) -> str:
    short = _SHORT_CONFIGURATION.get(contender.configuration)
    return f"{contender.name} + {short}" if short else contender.name


def _figure(measurement: MeasurementResult, contender: ContenderResult) -> str:
    """Time per operation on one thread; operations per second with concurrency."""
    if measurement.threads == 1 and measurement.tasks is None:
        return f"{_duration(contender.seconds_per_op)}/{measurement.unit}"
    return f"{_rate(contender.ops_per_second)} {_UNIT_PLURALS[measurement.unit]}/s"


def _summary(results: list[ScenarioResult]) -> list[str]:
    """The two questions the bench answers, in one line each."""
    found = {m.key: m for r in results for m in r.measurements}
    costs = {r.key: r.costs for r in results}
    lines = []
    pooling = found.get("end_to_end.no_http")
    if pooling is not None:
        line = (
            f"pooling: ferropool serves {_ratio(pooling.ratio(FERROPOOL, NEW_CONNECTION))} "
            f"the requests of a new connection per request ({pooling.threads} threads, "
            "select 1, no HTTP)"
        )
        http = found.get("end_to_end.http")
        if http is not None:
            line += f", {_ratio(http.ratio(FERROPOOL, NEW_CONNECTION))} over HTTP"
        opened = costs.get("end_to_end", {})
        mine, theirs = opened.get(FERROPOOL), opened.get(NEW_CONNECTION)
        if mine and theirs and mine.connections_opened is not None:
            line += (
                f"; the server opened {mine.connections_opened:,} connections for it "
                f"instead of {theirs.connections_opened:,}"
            )
        lines.append(line)
    picks = [
        ("micro.getconn_putconn", "getconn + putconn"),
        ("micro.connection_block", "connection() block"),
        ("contention.empty_block.32", "32 threads on 16 connections"),
        ("safe_checkout", "safe checkout"),
        ("end_to_end.http", "end to end over HTTP"),
        ("async.1000", "1,000 async tasks"),
    ]
    versus = [
        f"{_ratio(found[key].ratio(FERROPOOL, PSYCOPG_POOL))} {label}"
        for key, label in picks
        if key in found
    ]
    if versus:
        lines.append("ferropool against psycopg_pool: " + ", ".join(versus))
    return lines


def _ratio(value: float) -> str:
    if value < 0.01:
        return "<0.01x"
    return f"{_three_digits(value)}x"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
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
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 9.995 else f"{value:.2f}"


def _libpq_version(number: int) -> str:
    return f"{number // 10000}.{number % 10000}"
