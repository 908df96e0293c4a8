"""A connect error no retry will fix: how often each pool tries, and logs it.

A wrong password, or a database that does not exist, for a window (CI 6 s,
long 60 s), ferropool and psycopg_pool side by side on the same server:
failed logins (the server's cost, and what locks accounts and trips
intrusion detection) and WARNING lines, per minute. ferropool retries such
an error after 1 s, doubling up to 60 s, and logs a run of identical errors
once, then once a minute; psycopg_pool retries after 1 s, doubling. Then the
cause is fixed and ferropool says, once, that it connects again. Figures
for RELIABILITY.md; only ferropool's are asserted.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from typing import Any

import psycopg_pool
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ferropool import ConnectionPool
from ferropool.cli.embedded import EmbeddedPostgres
from tests.fixtures.helpers import DEADLINE, wait_until
from tests.fixtures.reliability import by_mode, report, time_limit

MIN_SIZE = 2
WINDOW = by_mode(6.0, 60.0)


def conninfo_for(server: EmbeddedPostgres, cause: str, state: dict[str, bool]) -> Any:
    """A callable conninfo that fails by *cause* until state["fixed"]."""
    params = conninfo_to_dict(server.dsn)
    params["passfile"] = "/dev/null"  # no ~/.pgpass behind the test's back
    wrong = dict(params)
    if cause == "wrong password":
        wrong["password"] = "wrong-" + secrets.token_urlsafe(12)
    else:
        wrong["dbname"] = "no_such_database_" + secrets.token_hex(4)

    def conninfo() -> str:
        return make_conninfo(**(params if state["fixed"] else wrong))

    return conninfo


def connect_warnings(caplog: pytest.LogCaptureFixture, logger: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == logger
        and r.levelno == logging.WARNING
        and "error connecting" in r.getMessage()
    )


@pytest.mark.parametrize("cause", ["wrong password", "unknown database"])
@time_limit(60, 300)
def test_a_permanent_error_is_retried_slowly_and_logged_once(
    scram_server: EmbeddedPostgres, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    figures: dict[str, dict[str, float]] = {}
    for contender, cls in (
        ("ferropool", ConnectionPool),
        ("psycopg_pool", psycopg_pool.ConnectionPool),
    ):
        caplog.clear()
        state = {"fixed": False}
        logger = "ferropool" if contender == "ferropool" else "psycopg.pool"
        with cls(conninfo_for(scram_server, cause, state), min_size=MIN_SIZE, open=False) as pool:
            time.sleep(WINDOW)
            attempts = pool.get_stats().get("connections_errors", 0)
            lines = connect_warnings(caplog, logger)
            state["fixed"] = True
            if contender == "ferropool":
                # Fixed: the next attempt (within the backoff reached) connects.
                wait_until(
                    lambda: pool.get_stats()["pool_available"] == MIN_SIZE,
                    timeout=DEADLINE + 60,
                    what="connected again",
                )
                again = [r for r in caplog.records if "connected again" in r.getMessage()]
                assert len(again) == 1, [r.getMessage() for r in again]
        figures[contender] = {
            "attempts_per_min": attempts * 60 / WINDOW,
            "warnings_per_min": lines * 60 / WINDOW,
        }
        if contender == "ferropool":
            # 1 s, 2 s, 4 s...: about log2(window) + 1 attempts per slot.
            assert attempts <= MIN_SIZE * (math.log2(WINDOW) + 2), attempts
            # One line for the run of identical errors (plus a summary a minute).
            assert lines <= 1 + WINDOW // 60, lines
    for contender, f in figures.items():
        report(
            "retry_permanent_error",
            contender,
            cause=cause,
            window_s=WINDOW,
            attempts_per_min=f["attempts_per_min"],
            warnings_per_min=f["warnings_per_min"],
        )
