"""The README's test command on a machine that lacks some real components.

A test whose component is missing is skipped with one line saying how to
install it, and the run ends with a section grouping the skips by reason;
with FERROPOOL_FORBID_SKIPS=1, as in CI, the same run fails. The inner runs
hide wrk with FERROPOOL_TEST_WITHOUT, which makes ``require`` answer as on a
machine without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.components import COMPONENTS, FORBID_SKIPS, WITHOUT

ROOT = Path(__file__).resolve().parents[2]
NEEDS_WRK = "tests/cli/test_cli.py::test_wrk_loads_an_http_server"


def run_pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in (FORBID_SKIPS, WITHOUT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_missing_component_is_a_skip_with_its_install_line() -> None:
    result = run_pytest(NEEDS_WRK, **{WITHOUT: "wrk"})

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # The section, then the closing line.
    section = next(i for i, line in enumerate(lines) if "what this machine lacks" in line)
    assert "1 skipped" in lines[section]
    reason = COMPONENTS["wrk"].reason()
    assert reason == "wrk (HTTP load generator) is not installed: apt-get install wrk"
    assert lines[section + 1].split(maxsplit=1) == ["1", reason]
    assert lines[section + 2].strip() == "tests/cli/test_cli.py (1)"
    assert lines[-1].startswith("1 skipped")


def test_ci_fails_on_a_missing_component() -> None:
    result = run_pytest(NEEDS_WRK, **{WITHOUT: "wrk", FORBID_SKIPS: "1"})

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{COMPONENTS['wrk'].reason()} ({FORBID_SKIPS}=1: CI installs it)" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("1 failed")
