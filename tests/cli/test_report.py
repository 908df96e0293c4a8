"""The bench's report, as a person reads it: 100 columns, one unit per column.

Built from results made up here (no server, no timing), so each layout rule
is checked on known figures: every line within 100 columns, every table
headed by its quantity, unit and direction, no column mixing a time with a
rate, the contenders as columns, ferropool's ratios to the baselines, notes
wrapped, and the --quick caveat in the summary.
"""

from __future__ import annotations

import re

from ferropool.cli.plan import QUICK
from ferropool.cli.report import MICRO, render_table
from ferropool.cli.results import (
    ContenderResult,
    MeasurementResult,
    RoundResult,
    ScenarioResult,
    ServerCost,
)
from ferropool.cli.server import ServerInfo

CONTENDERS = ("new connection per request", "psycopg_pool", "SQLAlchemy QueuePool", "ferropool")
# Seconds per operation on one thread, and operations per second with 32 threads.
TIMES = {CONTENDERS[0]: 7e-3, CONTENDERS[1]: 2.8e-6, CONTENDERS[2]: 6.9e-6, CONTENDERS[3]: 2.25e-7}
RATES = {
    CONTENDERS[0]: 217.0,
    CONTENDERS[1]: 66_300.0,
    CONTENDERS[2]: 33_000.0,
    CONTENDERS[3]: 1.55e6,
}


def contender(name: str, per_second: float, latency: float | None = None) -> ContenderResult:
    p99 = None if latency is None else latency * 3
    rounds = tuple(RoundResult(1000, 1000 / per_second, latency, p99) for _ in range(3))
    return ContenderResult(name, "default configuration", rounds)


def scenarios() -> list[ScenarioResult]:
    micro = [
        MeasurementResult(
            f"micro.{key}", f"micro: {title}", unit, 1, 4,
            tuple(contender(n, 1 / t) for n, t in TIMES.items()),
        )
        for key, title, unit in (
            ("getconn_putconn", "getconn + putconn", "op"),
            ("connection_block", "connection() block", "block"),
        )
    ]  # fmt: skip
    blocks = [
        MeasurementResult(
            f"contention.empty_block.{threads}", f"contention: {label}, empty block",
            "block", threads, 16, tuple(contender(n, r) for n, r in RATES.items()),
        )
        for threads, label in ((1, "1 thread"), (32, "32 threads"))
    ]  # fmt: skip
    selects = MeasurementResult(
        "contention.select_1.32", "contention: 32 threads, select 1", "request", 32, 16,
        tuple(contender(n, r / 100, latency=0.004) for n, r in RATES.items()),
    )  # fmt: skip
    tasks = MeasurementResult(
        "async.1000", "async: 1,000 tasks, select 1", "request", 1, 16,
        tuple(contender(n, RATES[n] / 100, latency=0.2) for n in CONTENDERS if "SQL" not in n),
        tasks=1000,
    )  # fmt: skip
    cost = ServerCost(connections_opened=16, peak_backends=16, time_wait_sockets=0)
    long = "a description long enough to need wrapping at a hundred columns, " * 3
    return [
        ScenarioResult("micro", "micro", "one thread", tuple(micro), {n: cost for n in CONTENDERS}),
        ScenarioResult("contention", "contention", long, (*blocks, selects), {}),
        ScenarioResult("async", "async", "asyncio tasks", (tasks,), {}),
    ]


def render(**kwargs: str) -> str:
    server = ServerInfo(
        version="18.1", host="127.0.0.1", port=5432, dbname="postgres", user="postgres",
        auth="scram-sha-256", tls=False, tls_version=None, embedded=True, max_connections=100,
        free_connections=90, build="a wheel",
    )  # fmt: skip
    client = {
        "ferropool": "0.1.0", "psycopg": "3.3", "psycopg_impl": "binary", "libpq": "18.0",
        "psycopg_pool": "3.3", "sqlalchemy": "2.1", "python": "3.11", "platform": "Linux",
        "cpus": 2,
    }  # fmt: skip
    return render_table(server, client, QUICK, scenarios(), **kwargs)


def table_after(text: str, heading: str) -> list[str]:
    """The lines of the table under the first heading that starts with *heading*."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(heading))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_every_line_fits_in_100_columns() -> None:
    text = render()
    assert max(len(line) for line in text.splitlines()) <= 100
    # The long description was wrapped, not cut.
    assert "hundred columns" in " ".join(text.split())


def test_one_thread_is_a_time_in_microseconds_and_threads_a_rate() -> None:
    text = render()
    micro = table_after(text, "time per operation, in")
    assert micro[0].strip() == f"time per operation, in {MICRO}s (lower is better)"
    row = next(line for line in micro if line.startswith("  getconn + putconn"))
    # 7 ms, 2.8 µs, 6.9 µs, 225 ns, all in µs; then ferropool vs psycopg_pool and vs none.
    assert row.split()[-6:] == ["7,000", "2.80", "6.90", "0.225", "12.4x", "31,111x"]
    assert micro[-1].split()[:2] == ["connection()", "block"]
    blocks = table_after(text, "empty block:")
    assert blocks[0].strip() == (
        "empty block: blocks per second, all threads together (higher is better)"
    )
    # The 1-thread row is a rate like the others: one unit per column.
    assert [line.split()[0] for line in blocks[4:]] == ["1", "32"]
    assert blocks[5].split()[2:6] == ["217", "66.3k", "33.0k", "1.55M"]
    assert not any(f"{MICRO}s" in line or "/s" in line for line in blocks[4:])


def test_latency_has_its_own_table() -> None:
    latency = table_after(render(), "32 threads, select 1: latency")
    assert latency[0].strip() == (
        "32 threads, select 1: latency of a request, p50 / p99 in ms (lower is better)"
    )
    # One row, named by the heading: the figures alone, right-aligned.
    assert latency[-1].startswith("  4.00 / 12.0  ")
    assert latency[-1].split("  ")[1:] == [
        "4.00 / 12.0",
        " 4.00 / 12.0",
        "4.00 / 12.0",
        "4.00 / 12.0",
    ]


def test_a_contender_absent_from_a_scenario_is_explained() -> None:
    text = render()
    async_part = text.split("\nasync:", 1)[1]
    requests = table_after(async_part, "1,000 tasks, select 1: requests")
    assert "SQLAlchemy" not in "\n".join(requests)
    assert "SQLAlchemy QueuePool is not in this scenario: it is thread-based" in " ".join(
        async_part.split()
    )


def test_the_quick_caveat_is_in_the_summary() -> None:
    caveat = "--quick: figures are rough"
    text = render(quick_caveat=caveat)
    summary = text.split("\nsummary:\n", 1)[1]
    assert caveat in summary
    assert re.search(r"ferropool against psycopg_pool: 12\.4x getconn \+ putconn", summary)
