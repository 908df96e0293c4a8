"""``ferropool sizing``: the max_size each instance of a fleet may have.

Reads the server's connection budget (one connection, one query, closed at
once), applies the fleet rule, the cores rule and Little's Law from
ferropool.sizing, and prints the figures, one recommendation with the rule
that set it, the current max_size's fate when given, and a last line
``verdict: ...`` that the exit status repeats: 0 when the fleet fits, 1
when it over-commits the server, no connection is left for it, or the load
needs more than the budget allows; 2 for a usage error or an unreachable
server. Lines stay within 100 columns. It must never print a password:
only the server's host, port and database.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg

from ..runner.secrets import secrets_of
from ..sizing import (
    CONNECT_TIMEOUT,
    DEFAULT_SPINDLES,
    RULE_CORES,
    RULE_FLEET,
    RULE_LITTLE,
    SizingReport,
    read_budget,
    recommend,
)
from .errors import CliError, safe_message

__all__ = ["add_parser", "run"]

EXIT_FITS = 0
EXIT_OVER = 1
WIDTH = 100


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def add_parser(commands: Any) -> None:
    """Add the ``sizing`` command to the subparsers action *commands*."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "sizing",
        help="recommend max_size per instance from the server's connection budget",
        description=(
            "Read the server's max_connections, its reserved slots and the connections"
            " other clients hold now, and recommend each instance's max_size by the fleet"
            " rule (instances x max_size <= max_connections - reserved - others), by"
            " (cores x 2 + spindles) and by Little's Law (rate x query time), and print one"
            " recommendation and the rule that set it. Exit status 0 when the fleet fits;"
            " 1 when it over-commits the server, no connection is left for it, or the load"
            " needs more connections than the budget allows (the last line, 'verdict:',"
            " says which); 2 for a usage error or an unreachable server."
        ),
    )
    parser.add_argument("--dsn", required=True, help="libpq connection string or URI")
    parser.add_argument(
        "--instances",
        type=_count(1),
        required=True,
        metavar="N",
        help="app instances (processes) that each keep a pool",
    )
    parser.add_argument(
        "--rate",
        type=_positive,
        metavar="R",
        help="requests per second each instance serves (with --query-ms)",
    )
    parser.add_argument(
        "--query-ms",
        type=_positive,
        metavar="T",
        help="milliseconds a request holds its connection (with --rate)",
    )
    parser.add_argument(
        "--server-cores",
        type=_count(1),
        metavar="N",
        help="the database server's CPU cores (default: unknown; the cores rule is skipped)",
    )
    parser.add_argument(
        "--spindles",
        type=_count(0),
        default=DEFAULT_SPINDLES,
        metavar="N",
        help=f"effective disk spindles for the cores rule (default {DEFAULT_SPINDLES})",
    )
    parser.add_argument(
        "--current-max-size",
        type=_count(0),
        metavar="N",
        help="each instance's max_size now: say whether the fleet over-commits the server",
    )
    parser.add_argument(
        "--exclude-application-name",
        metavar="NAME",
        help="don't count connections with this application_name as others (the fleet's own)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if (args.rate is None) != (args.query_ms is None):
        raise CliError("--rate and --query-ms go together: Little's Law needs both")
    secrets = secrets_of(args.dsn, None)
    try:
        with psycopg.connect(args.dsn, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
            budget = read_budget(conn, exclude_application_name=args.exclude_application_name)
            where = f"{conn.info.host}:{conn.info.port}, database {conn.info.dbname}"
    except psycopg.Error as ex:
        raise CliError(f"cannot read the server's budget: {safe_message(ex, secrets)}") from None
    report = recommend(
        budget,
        instances=args.instances,
        server_cores=args.server_cores,
        spindles=args.spindles,
        rate=args.rate,
        query_ms=args.query_ms,
        current_max_size=args.current_max_size,
    )
    print(render(report, where))
    if args.json is not None:
        data: dict[str, Any] = {"server": where, **asdict(report)}
        data["budget"] |= {
            "reserved": budget.reserved,
            "usable": budget.usable,
            "available": budget.available,
        }
        try:
            args.json.write_text(json.dumps(data, indent=2) + "\n")
        except OSError as ex:
            raise CliError(f"cannot write {args.json}: {ex.strerror}") from None
    return EXIT_FITS if report.fits else EXIT_OVER


def render(report: SizingReport, where: str) -> str:
    """The report as text: the budget, the rules, one recommendation, the verdict."""
    b = report.budget
    n = report.instances
    major = b.server_version // 10000
    reserved = (
        str(b.reserved_connections)
        if b.reserved_connections is not None
        else f"-  (PostgreSQL {major} has none: added in 16)"
    )
    lines = [
        f"PostgreSQL {major} at {where}",
        f"  max_connections                 {b.max_connections:>6}",
        f"  superuser_reserved_connections  {b.superuser_reserved_connections:>6}",
        f"  reserved_connections            {reserved:>6}",
        f"  held by other clients now       {b.other_connections:>6}",
        f"  available to the fleet          {b.available:>6}",
        "",
        f"max_size per instance, {n} instance{'s' if n != 1 else ''}"
        " (<- marks the rule that sets it):",
    ]
    rows = [
        (
            RULE_FLEET,
            str(report.fleet_max_size),
            f"at most: {n} x {report.fleet_max_size} = {n * report.fleet_max_size}"
            f" <= {b.max_connections} - {b.reserved} reserved - {b.other_connections} others"
            f" = {b.available}",
        ),
        (RULE_CORES, *_cores_row(report)),
        (RULE_LITTLE, *_littles_row(report)),
    ]
    for rule, figure, why in rows:
        mark = "  <-" if rule == report.binding_rule else ""
        head = f"  {rule:<13}{figure:>4}{mark:<4}  "
        lines += _wrapped(why, head, " " * len(head))
    lines += ["", *_answer(report)]
    for note in report.notes:
        lines += ["", *_wrapped(note, "", "  ")]
    lines += ["", f"verdict: {report.verdict}"]
    return "\n".join(lines)


def _cores_row(report: SizingReport) -> tuple[str, str]:
    if report.cores_max_size is None:
        return "-", "server cores unknown: pass --server-cores (cores x 2 + spindles for the fleet)"
    spindles = "spindle" if report.spindles == 1 else "spindles"
    why = (
        f"{report.server_cores} cores x 2 + {report.spindles} {spindles} ="
        f" {report.cores_connections} queries at once for the fleet, / {report.instances}"
    )
    busy = report.fleet_busy
    if busy is not None and report.binding_rule != RULE_CORES:
        why += (
            f"; no limit here: the fleet keeps {busy:.1f} busy on average, within"
            f" {report.cores_connections}"
        )
    return str(report.cores_max_size), why


def _littles_row(report: SizingReport) -> tuple[str, str]:
    if report.littles_max_size is None or report.busy_connections is None:
        return "-", "pass --rate and --query-ms"
    return str(report.littles_max_size), (
        f"{report.rate:g}/s x {report.query_ms:g} ms = {report.busy_connections:.2f} busy on"
        f" average, x{report.headroom:g} headroom, rounded up"
    )


def _answer(report: SizingReport) -> list[str]:
    """The recommendation, then what it means for the current max_size."""
    n = report.instances
    if report.binding_rule is None:
        lines = ["recommended max_size: none (no room)"]
    else:
        allows = (
            f"; the fleet rule allows up to {report.fleet_max_size}"
            if report.binding_rule != RULE_FLEET
            else ""
        )
        lines = [
            f"recommended max_size: {report.recommended_max_size}"
            f" (set by {_named(report.binding_rule)}{allows})"
        ]
    current = report.current_max_size
    if current is not None and not report.over_committed:
        text = (
            f"current max_size {current}: {n} x {current} = {report.current_connections}"
            f" <= {report.budget.available} available: within the budget"
        )
        extra = current - report.recommended_max_size
        if report.binding_rule is not None and extra > 0:
            text += f", {extra} above the recommendation"
        elif report.binding_rule is not None and extra < 0:
            text += f", {-extra} below the recommendation: requests may queue"
        lines += _wrapped(text, "", "  ")
    return lines


def _named(rule: str) -> str:
    return f"the {rule}" if rule.endswith("rule") else rule


def _wrapped(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False
    )
