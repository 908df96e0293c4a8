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
import sys
import textwrap
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from .contenders import CONTENDERS, FERROPOOL, NEW_CONNECTION, PSYCOPG_POOL, SQLALCHEMY
from .plan import Plan
from .results import ContenderResult, MeasurementResult, ScenarioResult, ServerCost
from .server import ServerInfo

__all__ = ["client_info", "render_table", "to_json"]

JSON_FORMAT_VERSION = 2

BASELINES: Final = (PSYCOPG_POOL, NEW_CONNECTION)
_UNIT_PLURALS: Final = {"op": "ops", "block": "blocks", "request": "requests"}
_SHORT: Final = {NEW_CONNECTION: "new connection"}
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

WIDTH: Final = 100
# Contenders as column headers: two lines each, to keep tables narrow.
_COLUMN_HEADS: Final = {
    NEW_CONNECTION: ("new", "connection"),
    SQLALCHEMY: ("SQLAlchemy", "QueuePool"),
}


def render_table(
    server: ServerInfo,
    client: dict[str, Any],
    plan: Plan,
    results: list[ScenarioResult],
    *,
    quick_caveat: str | None = None,
) -> str:
    """The report a person reads: every line within WIDTH columns."""
    lines = _preamble(server, client, plan)
    for result in results:
        lines += ["", *_wrap(f"{result.title}: {result.description}")]
        if result.skipped:
            lines += _wrap(result.skipped, _INDENT)
            continue
        for table in _tables(result):
            lines += ["", *table]
        notes = [line for note in _notes(result) for line in _wrap(note, _INDENT)]
        lines += ["", *notes] if notes else []
        lines += ["", *_cost_table(result)]
    summary = _summary(results)
    if quick_caveat:
        summary.append(quick_caveat)
    if summary:
        lines += ["", "summary:"]
        for line in summary:
            lines += _wrap(line, _INDENT)
    return "\n".join([*lines, "", *_wrap(_FOOTNOTE)])


_FOOTNOTE = (
    "vs X: ferropool's throughput over X's in the same run (2.00x: twice as many per second,"
    " or half the time per operation). Threaded and async rows count the operations of all"
    " threads or tasks together; p50/p99: the latency of one request. Each figure is the"
    " median of the rounds. Server-side cost over the scenario: connections the server"
    " opened (pg_stat_database), most backends at once (pg_stat_activity, sampled), and"
    " client sockets left in TIME_WAIT for a minute (/proc/net/tcp)."
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
    lines = [
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
    return [wrapped for line in lines for wrapped in _wrap(line)]


def _tables(result: ScenarioResult) -> list[list[str]]:
    """The scenario's figures: one table per quantity, so each column has one unit."""
    contenders: list[str] = [c for c in CONTENDERS if any(m.has(c) for m in result.measurements)]
    # Time per operation where every row is one thread's (micro), else throughput.
    timed = all(m.threads == 1 and m.tasks is None for m in result.measurements)
    groups: dict[tuple[str, str], list[MeasurementResult]] = {}
    if timed:
        groups[("time", "operation")] = list(result.measurements)
    else:
        for measurement in result.measurements:
            groups.setdefault(("rate", measurement.unit), []).append(measurement)
    tables = []
    for (kind, unit), measurements in groups.items():
        common, labels = _labels(result, measurements)
        prefix = f"{common}: " if common else ""
        if kind == "time":
            heading = f"{prefix}time per {unit}, in {MICRO}s (lower is better)"
            figures = [
                [
                    _micro_seconds(m.result(c).seconds_per_op) if m.has(c) else "-"
                    for c in contenders
                ]
                for m in measurements
            ]
        else:
            together = (
                ", all tasks together"
                if any(m.tasks for m in measurements)
                else (", all threads together" if any(m.threads > 1 for m in measurements) else "")
            )
            heading = f"{prefix}{_UNIT_PLURALS[unit]} per second{together} (higher is better)"
            figures = [
                [_rate(m.result(c).ops_per_second) if m.has(c) else "-" for c in contenders]
                for m in measurements
            ]
        rows = [
            [label, *cells, *_ratios(m)]
            for label, cells, m in zip(labels, figures, measurements, strict=True)
        ]
        tables.append([_INDENT + heading, *_grid(_heads(contenders, ratios=True), rows)])
        if any(
            m.result(c).latency_p99 is not None
            for m in measurements
            for c in contenders
            if m.has(c)
        ):
            latency = [
                [label, *(_latency(m.result(c)) if m.has(c) else "-" for c in contenders)]
                for label, m in zip(labels, measurements, strict=True)
            ]
            tables.append(
                [
                    f"{_INDENT}{prefix}latency of a request, p50 / p99 in ms (lower is better)",
                    *_grid(_heads(contenders, ratios=False), latency),
                ]
            )
    return tables


def _labels(result: ScenarioResult, measurements: list[MeasurementResult]) -> tuple[str, list[str]]:
    """What the rows have in common, for the heading, and what tells them apart."""
    parts = [_measurement_label(result, m).split(", ") for m in measurements]
    if len(parts) == 1:  # the heading names the one row
        return ", ".join(parts[0]), [""]
    common = [p for p in parts[0] if all(p in other for other in parts[1:])]
    labels = [", ".join(p for p in row if p not in common) for row in parts]
    return ", ".join(common), labels


def _heads(contenders: list[str], *, ratios: bool) -> list[list[str]]:
    heads = [_COLUMN_HEADS.get(c, ("", c)) for c in contenders]
    if ratios:
        heads += [("ferropool vs", _SHORT.get(b, b)) for b in BASELINES]
    return [["", *(h[0] for h in heads)], ["", *(h[1] for h in heads)]]


def _ratios(measurement: MeasurementResult) -> list[str]:
    if not measurement.has(FERROPOOL):
        return ["" for _ in BASELINES]
    return [
        _ratio(measurement.ratio(FERROPOOL, b)) if measurement.has(b) else "-" for b in BASELINES
    ]


def _latency(contender: ContenderResult) -> str:
    p50, p99 = contender.latency_p50, contender.latency_p99
    if p50 is None or p99 is None:
        return "-"
    return f"{_three_digits(p50 * 1e3)} / {_three_digits(p99 * 1e3)}"


def _notes(result: ScenarioResult) -> list[str]:
    notes = [
        f"{_measurement_label(result, m).split(', ')[0]}: {m.transport}"
        for m in result.measurements
        if m.transport
    ]
    absent = [c for c in CONTENDERS if not any(m.has(c) for m in result.measurements)]
    if SQLALCHEMY in absent:
        notes.append(
            f"{SQLALCHEMY} is not in this scenario: it is thread-based, and SQLAlchemy's"
            " asyncio pooling works only inside an AsyncEngine"
        )
    return notes


def _cost_table(result: ScenarioResult) -> list[str]:
    header = [["server-side cost", "connections opened", "peak backends", "TIME_WAIT sockets"]]
    rows = [[name, *_cost_cells(cost)] for name, cost in result.costs.items()]
    if result.total_cost is not None:
        rows.append(["whole scenario", *_cost_cells(result.total_cost)])
    return _grid(header, rows)


def _cost_cells(cost: ServerCost) -> list[str]:
    def count(value: int | None) -> str:
        return "n/a" if value is None else f"{value:,}"

    return [
        count(cost.connections_opened),
        count(cost.peak_backends),
        count(cost.time_wait_sockets),
    ]


def _grid(header: list[list[str]], rows: list[list[str]]) -> list[str]:
    """An aligned table: the first column to the left, figures to the right.
    A first column with nothing in it is left out."""
    labelled = any(row[0] for row in [*header, *rows])
    if not labelled:  # one unlabelled row
        header, rows = [h[1:] for h in header], [row[1:] for row in rows]
    widths = [max(len(row[i]) for row in [*header, *rows]) for i in range(len(header[0]))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(width) if i == 0 and labelled else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return (_INDENT + "  ".join(padded)).rstrip()

    rule = _INDENT + "  ".join("-" * w for w in widths)
    return [*(line(h) for h in header if any(h)), rule, *(line(row) for row in rows)]


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + _INDENT,
        break_on_hyphens=False,
        break_long_words=False,
    )


def _measurement_label(result: ScenarioResult, measurement: MeasurementResult) -> str:
    # Under its scenario's heading, "contention: 32 threads, ..." needs no prefix.
    prefix = f"{result.title}: "
    title = measurement.title
    return title[len(prefix) :] if title.startswith(prefix) else title


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
    versus = [
        f"{_ratio(found[key].ratio(FERROPOOL, PSYCOPG_POOL))} {label}"
        for key, label in SUMMARY_PICKS
        if key in found
    ]
    if versus:
        lines.append("ferropool against psycopg_pool: " + ", ".join(versus))
    return lines


# The measurements the summary compares with psycopg_pool, and how it names them.
SUMMARY_PICKS: Final = (
    ("micro.getconn_putconn", "getconn + putconn"),
    ("micro.connection_block", "connection() block"),
    ("contention.empty_block.32", "32 threads on 16 connections"),
    ("safe_checkout", "safe checkout"),
    ("end_to_end.http", "end to end over HTTP"),
    ("async.1000", "1,000 async tasks"),
)


def _ratio(value: float) -> str:
    if value < 0.01:
        return "<0.01x"
    return f"{_three_digits(value)}x"


def _micro_seconds(seconds: float) -> str:
    micros = seconds * 1e6
    return f"{micros:.3f}" if micros < 0.9995 else _three_digits(micros)


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


def _micro_sign() -> str:
    """µ where stdout can print it, u where it cannot (an ASCII-only locale)."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "\u00b5".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "u"
    return "\u00b5"


MICRO: Final = _micro_sign()


def _libpq_version(number: int) -> str:
    return f"{number // 10000}.{number % 10000}"
