"""Repository-wide pytest hooks: what was skipped, and in CI, a skip fails the run.

A test whose real component (MariaDB, Debian's PostgreSQL with TLS,
PgBouncer, ...) is not installed is skipped with a one-line reason saying
how to install it (tests/fixtures/components.py), and the run ends with a
section listing the skips by reason. CI installs every component, so there
a skip can only mean a missing install step: with FERROPOOL_FORBID_SKIPS=1
(set by .ci/run) a missing component fails its tests and any other skip
fails the session.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

# Every fixture of the test suite, from one place: tests/fixtures/.
pytest_plugins = [
    "tests.fixtures.server",
    "tests.fixtures.fault_proxy",
    "tests.fixtures.fleet",
    "tests.fixtures.mariadb",
    "tests.fixtures.reliability",
]

FORBID_SKIPS = "FERROPOOL_FORBID_SKIPS"

# Skip reason -> node ids of the tests skipped for it, in the order they ran.
_skipped: dict[str, list[str]] = defaultdict(list)


def pytest_report_header() -> str:
    """Which ferropool the run tests: the source tree's build or an installed wheel."""
    import ferropool

    return f"ferropool {ferropool.__version__} from {Path(ferropool.__file__).parent}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped[_reason(report)].append(report.nodeid)


def _reason(report: pytest.TestReport) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason").
    if isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)


@pytest.hookimpl(trylast=True)  # the last section, just before the short summary
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _skipped:
        return
    total = sum(len(ids) for ids in _skipped.values())
    terminalreporter.write_sep("=", f"{total} skipped: what this machine lacks")
    for reason, ids in sorted(_skipped.items(), key=lambda item: -len(item[1])):
        modules: dict[str, int] = defaultdict(int)
        for nodeid in ids:
            modules[nodeid.split("::")[0]] += 1
        where = ", ".join(f"{module} ({count})" for module, count in modules.items())
        terminalreporter.write_line(f"{len(ids):>4}  {reason}")
        terminalreporter.write_line(f"      {where}")
    if os.environ.get(FORBID_SKIPS) == "1":
        terminalreporter.write_line(f"{FORBID_SKIPS}=1: a skipped test fails the run.")
    else:
        terminalreporter.write_line("Install what is named above and run again to run them.")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and os.environ.get(FORBID_SKIPS) == "1":
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
