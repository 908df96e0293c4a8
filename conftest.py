"""Repository-wide pytest hook: in CI, a skipped test is a failed run.

Every test needs only components that CI installs (PostgreSQL, PgBouncer,
...), so a skip can only mean a missing install step. With
FERROPOOL_FORBID_SKIPS=1 (set by .ci/run) any skip fails the session.
"""

from __future__ import annotations

import os

import pytest

# Every fixture of the test suite, from one place: tests/fixtures/.
pytest_plugins = [
    "tests.fixtures.server",
    "tests.fixtures.fault_proxy",
    "tests.fixtures.fleet",
    "tests.fixtures.mariadb",
    "tests.fixtures.reliability",
]

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and os.environ.get("FERROPOOL_FORBID_SKIPS") == "1":
        listing = "\n  ".join(_skipped)
        print(f"\nFERROPOOL_FORBID_SKIPS: {len(_skipped)} test(s) skipped:\n  {listing}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
