"""The connection budget: ferropool.sizing, budget_share, ``ferropool sizing``.

A dedicated server with max_connections = 20, 3 superuser-reserved and 2
reserved slots leaves 15 connections to ordinary roles. The rules are
checked against what that server really accepts: an ordinary role gets
exactly the connections the fleet rule hands out, and one more is refused.
The command line runs as a user runs it, in a subprocess.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as e
from psycopg.conninfo import make_conninfo

from ferropool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    ConnectionPool,
    NullConnectionPool,
)
from ferropool.cli.embedded import EmbeddedPostgres, free_port
from ferropool.sizing import (
    RULE_CORES,
    RULE_FLEET,
    RULE_LITTLE,
    VERDICT_FITS,
    VERDICT_NO_ROOM,
    VERDICT_OVER_COMMITTED,
    VERDICT_TOO_SMALL,
    ServerBudget,
    fetch_budget,
    read_budget,
    recommend,
    share_size,
    size_fleet,
)
from tests.fixtures.components import require
from tests.fixtures.helpers import count_backends, wait_until

ROOT = Path(__file__).resolve().parents[2]
MAX_CONNECTIONS = 20
SUPERUSER_RESERVED = 3
RESERVED = 2
USABLE = MAX_CONNECTIONS - SUPERUSER_RESERVED - RESERVED  # 15
APP_ROLE = "fleet_app"
PASSWORD = "hunter2-must-not-leak"


@pytest.fixture(scope="module")
def budget_server() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(
        max_connections=MAX_CONNECTIONS,
        settings={
            "superuser_reserved_connections": SUPERUSER_RESERVED,
            "reserved_connections": RESERVED,
        },
    ) as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"create role {APP_ROLE} login")
        yield server


@pytest.fixture
def app_dsn(budget_server: EmbeddedPostgres) -> str:
    """The server as an ordinary role, which cannot use the reserved slots."""
    return make_conninfo(budget_server.dsn, user=APP_ROLE)


def connect_many(dsn: str, n: int, application_name: str) -> list[psycopg.Connection[Any]]:
    conns = []
    try:
        for _ in range(n):
            conns.append(psycopg.connect(dsn, application_name=application_name))
    except BaseException:
        for c in conns:
            c.close()
        raise
    return conns


# ---- reading the budget -------------------------------------------------------------


def test_budget_is_read_from_the_server(budget_server: EmbeddedPostgres) -> None:
    budget = fetch_budget(budget_server.dsn)
    assert budget.max_connections == MAX_CONNECTIONS
    assert budget.superuser_reserved_connections == SUPERUSER_RESERVED
    assert budget.reserved_connections == RESERVED  # PostgreSQL 16+
    assert budget.server_version >= 160000
    assert budget.other_connections == 0  # the one reading is not counted
    assert (budget.reserved, budget.usable, budget.available) == (5, USABLE, USABLE)


def test_other_clients_are_counted_and_the_fleet_can_be_excluded(
    budget_server: EmbeddedPostgres,
) -> None:
    others = connect_many(budget_server.dsn, 4, "someone-else")
    fleet = connect_many(budget_server.dsn, 2, "our-fleet")
    try:
        budget = fetch_budget(budget_server.dsn)
        assert budget.other_connections >= 6
        # A connection closed a moment ago (fetch_budget's own, an earlier
        # test's) is a backend until its process exits: read on one
        # connection once only the six are left.
        with psycopg.connect(budget_server.dsn, autocommit=True) as conn:
            wait_until(lambda: read_budget(conn).other_connections == 6, what="6 others")
            budget = read_budget(conn)
            mine = read_budget(conn, exclude_application_name="our-fleet")
        assert budget.available == USABLE - 6
        assert mine.other_connections == 4
        assert recommend(mine, instances=3).fleet_max_size == (USABLE - 4) // 3
    finally:
        for c in others + fleet:
            c.close()


def test_reserved_connections_is_absent_before_postgresql_16() -> None:
    """Debian's PostgreSQL (15 on bookworm), skipped where not installed."""
    bindir = require("postgresql")
    with EmbeddedPostgres(bindir=bindir, max_connections=30) as server:
        budget = fetch_budget(server.dsn)
        result = run_cli("--dsn", server.dsn, "--instances", "2")
    assert budget.max_connections == 30
    if server.version < 16:
        assert budget.reserved_connections is None
        assert budget.usable == 30 - budget.superuser_reserved_connections
        assert f"PostgreSQL {server.version} has none" in result.stdout
    else:
        assert budget.reserved_connections is not None
    assert result.returncode == 0, result.stderr


# ---- the rules --------------------------------------------------------------------------

BUDGET = ServerBudget(
    server_version=180000,
    max_connections=100,
    superuser_reserved_connections=3,
    reserved_connections=0,
    other_connections=7,
)  # 90 available


def test_fleet_rule() -> None:
    report = recommend(BUDGET, instances=4)
    assert report.fleet_max_size == 22  # 4 x 22 = 88 <= 90
    assert report.recommended_max_size == 22
    assert report.binding_rule == RULE_FLEET
    assert report.cores_max_size is None and report.littles_max_size is None
    assert report.over_committed is None
    assert report.verdict == VERDICT_FITS
    assert report.notes == []


def test_no_room() -> None:
    report = recommend(BUDGET, instances=91)
    assert report.fleet_max_size == report.recommended_max_size == 0
    assert report.binding_rule is None
    assert report.verdict == VERDICT_NO_ROOM
    assert "no room" in report.notes[0]


def test_cores_rule() -> None:
    report = recommend(BUDGET, instances=4, server_cores=8, spindles=1)
    assert report.cores_connections == 17
    assert report.cores_max_size == 4  # 17 // 4
    assert (report.recommended_max_size, report.binding_rule) == (4, RULE_CORES)
    assert report.notes == []


def test_a_recommendation_of_one_says_it_serialises_a_threaded_app() -> None:
    # More instances than the cores rule has connections: 1 each, and why, and the way out.
    crowded = recommend(BUDGET, instances=40, server_cores=8)
    assert (crowded.recommended_max_size, crowded.binding_rule) == (1, RULE_CORES)
    assert crowded.verdict == VERDICT_FITS
    (note,) = crowded.notes
    assert note.startswith("max_size 1 serialises each instance: 40 instances share the 17")
    assert "PgBouncer" in note
    # A light load: Little's Law gives 1, and says the same.
    light = recommend(BUDGET, instances=1, rate=1, query_ms=1)
    assert (light.littles_max_size, light.binding_rule) == (1, RULE_LITTLE)
    assert light.notes[0].startswith("max_size 1 serialises each instance: the load keeps less")
    # Any larger recommendation says nothing of the kind.
    assert not any("serialises" in n for n in recommend(BUDGET, instances=45).notes)


def test_littles_law() -> None:
    # 200 requests/s x 30 ms = 6 busy on average, x1.5 headroom = 9.
    report = recommend(BUDGET, instances=4, rate=200, query_ms=30)
    assert report.busy_connections == pytest.approx(6.0)
    assert report.littles_max_size == 9
    assert (report.recommended_max_size, report.binding_rule) == (9, RULE_LITTLE)
    assert report.notes == []
    # The headroom beyond the budget: capped, fits, and queues at peaks.
    peaks = recommend(BUDGET, instances=4, rate=500, query_ms=40)  # 20 busy, 30 needed
    assert (peaks.recommended_max_size, peaks.binding_rule) == (22, RULE_FLEET)
    assert peaks.verdict == VERDICT_FITS
    assert peaks.notes == [
        "the load needs about 30 connections per instance (20.00 busy on average, x1.5"
        " headroom) but the fleet rule allows 22: requests will queue at peaks"
    ]
    # More busy on average than the budget allows: too small, whatever the size.
    heavy = recommend(BUDGET, instances=4, rate=2000, query_ms=30)
    assert heavy.littles_max_size == 90
    assert (heavy.recommended_max_size, heavy.binding_rule) == (22, RULE_FLEET)
    assert heavy.verdict == VERDICT_TOO_SMALL
    assert heavy.notes[0].startswith("TOO SMALL: the load needs about 90 connections")
    assert "requests would queue without bound" in heavy.notes[0]


# The issue's example: 12 instances, 200 requests/s each of 5 ms, an 8-core
# server with max_connections 300 (297 available), max_size 20 today.
EXAMPLE = ServerBudget(
    server_version=180000,
    max_connections=300,
    superuser_reserved_connections=3,
    reserved_connections=0,
    other_connections=0,
)
EXAMPLE_ARGS: dict[str, Any] = {
    "instances": 12,
    "rate": 200,
    "query_ms": 5,
    "server_cores": 8,
    "current_max_size": 20,
}


def test_the_cores_rule_limits_the_fleet_only_when_its_load_exceeds_the_cores() -> None:
    """12 instances keep 12 connections busy on average, within the 17 the
    cores serve at once: the load sets max_size (2), not the cores rule
    spread over 12 instances (1), and the budget (24) is no limit."""
    report = recommend(EXAMPLE, **EXAMPLE_ARGS)
    assert report.fleet_max_size == 24
    assert report.cores_max_size == 1
    assert report.littles_max_size == 2
    assert (report.recommended_max_size, report.binding_rule) == (2, RULE_LITTLE)
    assert report.over_committed is False
    assert report.verdict == VERDICT_FITS
    assert report.notes == []
    # Ten times the load: 120 busy on 17 cores' worth; the cores rule binds, and says so.
    saturated = recommend(EXAMPLE, **{**EXAMPLE_ARGS, "rate": 2000})
    assert (saturated.recommended_max_size, saturated.binding_rule) == (1, RULE_CORES)
    assert saturated.verdict == VERDICT_TOO_SMALL
    assert "more than the 17 queries the server's cores run at once" in saturated.notes[0]
    assert "serialises" in saturated.notes[1]


def test_over_commit_is_said_plainly() -> None:
    report = recommend(BUDGET, instances=4, current_max_size=30)
    assert report.current_connections == 120
    assert report.over_committed is True
    assert report.verdict == VERDICT_OVER_COMMITTED
    assert report.notes[-1].startswith("OVER-COMMITTED: 4 instances x max_size 30 = 120")
    assert "Lower max_size to 22" in report.notes[-1]
    fits = recommend(BUDGET, instances=4, current_max_size=22)
    assert fits.over_committed is False
    assert fits.verdict == VERDICT_FITS
    assert fits.notes == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instances": 0}, "instances must be an int >= 1"),
        ({"instances": 2, "server_cores": 0}, "server_cores must be an int >= 1"),
        ({"instances": 2, "spindles": -1}, "spindles must be an int >= 0"),
        ({"instances": 2, "rate": 10}, "rate and query_ms go together"),
        ({"instances": 2, "rate": -1, "query_ms": 5}, "rate must be a number greater than 0"),
        ({"instances": 2, "current_max_size": -1}, "current_max_size must be an int >= 0"),
    ],
)
def test_rule_arguments_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recommend(BUDGET, **kwargs)


def test_the_fleet_rule_is_what_the_server_accepts(
    budget_server: EmbeddedPostgres, app_dsn: str, app_name: str
) -> None:
    """3 instances as an ordinary role, each at the recommended max_size:
    every connection opens; one more is refused by the server."""
    report = size_fleet(budget_server.dsn, instances=3)
    assert report.recommended_max_size == USABLE // 3 == 5
    pools = [
        ConnectionPool(
            app_dsn,
            min_size=report.recommended_max_size,
            kwargs={"application_name": app_name},
            open=True,
        )
        for _ in range(3)
    ]
    try:
        for pool in pools:
            pool.wait(timeout=30)
        assert count_backends(budget_server.dsn, app_name) == 15
        with pytest.raises(e.OperationalError, match="reserved"):
            psycopg.connect(app_dsn, connect_timeout=10).close()
        assert size_fleet(budget_server.dsn, instances=3).recommended_max_size == 0
    finally:
        for pool in pools:
            pool.close()


# ---- budget_share --------------------------------------------------------------------------


def test_share_size() -> None:
    assert share_size(BUDGET, 0.25) == 24  # of the 97 usable, others not subtracted
    assert share_size(BUDGET, 1.0) == 97
    assert share_size(BUDGET, 0.001) == 1


@pytest.mark.parametrize("cls", [ConnectionPool, NullConnectionPool], ids=lambda c: c.__name__)
def test_budget_share_sizes_the_pool_when_it_opens(
    cls: type[Any], budget_server: EmbeddedPostgres
) -> None:
    pool = cls(budget_server.dsn, budget_share=0.5, open=False)
    assert pool.budget_share == 0.5
    with pool:
        assert pool.max_size == math.floor(0.5 * USABLE) == 7
        assert pool.get_stats()["pool_max"] == 7
    # A max_size given too caps the share.
    with cls(budget_server.dsn, budget_share=0.5, min_size=0, max_size=3, open=False) as capped:
        assert capped.max_size == 3


def test_budget_share_caps_min_size_and_fills_to_it(
    budget_server: EmbeddedPostgres, app_name: str
) -> None:
    with ConnectionPool(
        budget_server.dsn,
        min_size=12,
        budget_share=0.4,
        kwargs={"application_name": app_name},
    ) as pool:
        assert (pool.min_size, pool.max_size) == (6, 6)
        pool.wait()
        assert count_backends(budget_server.dsn, app_name) == 6


@pytest.mark.anyio
@pytest.mark.parametrize("cls", [AsyncConnectionPool, AsyncNullConnectionPool])
async def test_budget_share_async(cls: type[Any], budget_server: EmbeddedPostgres) -> None:
    async with cls(budget_server.dsn, budget_share=0.2, open=False) as pool:
        assert pool.max_size == 3
        async with pool.connection() as conn:
            cur = await conn.execute("select 1")
            assert await cur.fetchone() == (1,)


def test_budget_share_unreachable_server_keeps_the_given_size(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dsn = make_conninfo(host="127.0.0.1", port=free_port(), user="x", password=PASSWORD)
    with caplog.at_level("WARNING", logger="ferropool"):
        pool = ConnectionPool(dsn, min_size=0, max_size=5, budget_share=0.5, open=True)
        pool.close()
    assert pool.max_size == 5
    messages = [r.getMessage() for r in caplog.records]
    assert any("couldn't read the server's budget" in m for m in messages), messages
    assert not any(PASSWORD in m for m in messages)


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"budget_share": 0}, ValueError, r"budget_share must be in \(0, 1\], got 0"),
        ({"budget_share": 1.5}, ValueError, r"budget_share must be in \(0, 1\]"),
        ({"budget_share": "half"}, TypeError, "budget_share must be a number"),
        (
            {"budget_share": 0.5, "server": "pgbouncer-transaction"},
            ValueError,
            r"budget_share=0.5 cannot work with server='pgbouncer-transaction'",
        ),
    ],
)
def test_budget_share_is_checked(
    kwargs: dict[str, Any], exc: type[Exception], message: str
) -> None:
    for cls in (ConnectionPool, NullConnectionPool, AsyncConnectionPool, AsyncNullConnectionPool):
        with pytest.raises(exc, match=message):
            cls("", open=False, **kwargs)


# ---- the command line --------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferropool", "sizing", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def with_password(dsn: str) -> str:
    # Trust authentication never asks for it: it only must not be printed.
    return make_conninfo(dsn, password=PASSWORD)


def test_cli_recommends_and_exits_0_when_the_fleet_fits(
    budget_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    out = tmp_path / "sizing.json"
    result = run_cli(
        "--dsn", with_password(budget_server.dsn), "--instances", "3",
        "--rate", "100", "--query-ms", "20", "--current-max-size", "4",
        "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"max_connections                 {MAX_CONNECTIONS:>6}" in text
    assert rule_row(text, "fleet rule") == "5"
    assert "server cores unknown: pass --server-cores" in text
    assert rule_row(text, "Little's Law") == "3 <-"  # 100/s x 20 ms = 2 busy, x1.5
    assert "recommended max_size: 3 (set by Little's Law; the fleet rule allows up to 5)" in text
    assert "within the budget, 1 above the recommendation" in " ".join(text.split())
    assert text.rstrip().endswith("verdict: fits")
    assert PASSWORD not in result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert data["recommended_max_size"] == 3
    assert data["binding_rule"] == "Little's Law"
    assert data["verdict"] == "fits"
    assert data["budget"]["max_connections"] == MAX_CONNECTIONS
    assert data["budget"]["available"] == USABLE
    assert data["over_committed"] is False
    assert PASSWORD not in out.read_text()


def rule_row(text: str, rule: str) -> str:
    """The figure on a rule's row of the report, and "<-" if it sets max_size."""
    line = next(line for line in text.splitlines() if line.startswith(f"  {rule} "))
    # "  Little's Law    2  <-  200/s x ...": name, figure, mark in fixed columns.
    return f"{line[15:19].strip()} {line[19:23].strip()}".strip()


def test_cli_the_issue_example_gives_one_consistent_answer() -> None:
    """12 instances, 200 requests/s of 5 ms each, 8 server cores, max_size 20,
    on a server with max_connections 300: max_size 2 by Little's Law, within
    the budget, exit status 0; no recommendation of 1, no note blaming the
    budget, every line within 100 columns."""
    with EmbeddedPostgres(max_connections=300) as server:
        result = run_cli(
            "--dsn", server.dsn, "--instances", "12", "--rate", "200", "--query-ms", "5",
            "--server-cores", "8", "--current-max-size", "20",
        )  # fmt: skip
    text = result.stdout
    flat = " ".join(text.split())  # wrapped phrases, unwrapped
    assert result.returncode == 0, text + result.stderr
    assert "available to the fleet             297" in text
    assert rule_row(text, "fleet rule") == "24"
    assert rule_row(text, "cores rule") == "1"
    assert "no limit here: the fleet keeps 12.0 busy on average, within 17" in flat
    assert rule_row(text, "Little's Law") == "2 <-"
    assert "recommended max_size: 2 (set by Little's Law; the fleet rule allows up to 24)" in text
    assert "12 x 20 = 240 <= 297 available: within the budget, 18 above" in flat
    assert "max_size 1" not in text and "requests will queue" not in text
    assert text.rstrip().splitlines()[-1] == "verdict: fits"
    assert max(len(line) for line in text.splitlines()) <= 100
    # docs/fleets.md shows this run's output as it is.
    shown = (ROOT / "docs" / "fleets.md").read_text().split("```\nmax_size per instance", 1)[1]
    assert "max_size per instance" + shown.split("```", 1)[0] in text


@pytest.mark.parametrize(
    ("args", "verdict", "status"),
    [
        (["--instances", "3"], "fits", 0),
        (["--instances", "4", "--server-cores", "2", "--current-max-size", "10"],
         "over-committed", 1),
        (["--instances", "3", "--rate", "1000", "--query-ms", "10"], "too small", 1),
        (["--instances", "16"], "no room", 1),
    ],
)  # fmt: skip
def test_cli_exit_status_is_the_verdict(
    budget_server: EmbeddedPostgres, args: list[str], verdict: str, status: int
) -> None:
    result = run_cli("--dsn", budget_server.dsn, *args)
    assert result.returncode == status, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == f"verdict: {verdict}"
    assert max(len(line) for line in result.stdout.splitlines()) <= 100


def test_cli_says_when_the_fleet_over_commits(budget_server: EmbeddedPostgres) -> None:
    result = run_cli(
        "--dsn", budget_server.dsn, "--instances", "4", "--server-cores", "2",
        "--current-max-size", "10",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert rule_row(result.stdout, "cores rule") == "1 <-"  # 2 x 2 + 1 = 5 for 4 instances
    assert "OVER-COMMITTED: 4 instances x max_size 10 = 40 connections > 15 available" in (
        " ".join(result.stdout.split())
    )
    flat = " ".join(result.stdout.split())
    assert "max_size 1 serialises each instance: 4 instances share the 5" in flat


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert PASSWORD not in result.stdout + result.stderr


def test_cli_unreachable_server_is_one_clear_line() -> None:
    dsn = make_conninfo(host="127.0.0.1", port=free_port(), user="app", password=PASSWORD)
    result = run_cli("--dsn", dsn, "--instances", "2")
    assert_one_line_error(result, "ferropool sizing: error: cannot read the server's budget")
    assert "Connection refused" in result.stderr


def test_cli_usage_errors(budget_server: EmbeddedPostgres) -> None:
    dsn = with_password(budget_server.dsn)
    assert_one_line_error(
        run_cli("--dsn", dsn, "--instances", "2", "--rate", "10"), "--rate and --query-ms"
    )
    result = run_cli("--dsn", dsn, "--instances", "0")
    assert result.returncode == 2
    assert "must be at least 1" in result.stderr
    assert PASSWORD not in result.stderr
    result = run_cli("--instances", "2")
    assert result.returncode == 2
    assert "--dsn" in result.stderr
