"""Every front end gets every safety feature: failover drain, leak reports and
pause work through the DB-API pool and SQLAlchemy's FerroPool as they do
through ConnectionPool (one runner under all of them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, create_engine, exc, text
from sqlalchemy.engine import URL

from ferropool import ConnectionPool, PoolTimeout
from ferropool.adapters.dbapi import Pool
from ferropool.contrib.sqlalchemy import FerroPool
from tests.fixtures.helpers import DEADLINE, terminate_backend, wait_until


@pytest.fixture
def dbapi_pool(dsn: str) -> Iterator[Pool[Any]]:
    with Pool(lambda: psycopg2.connect(dsn), min_size=3, leak_timeout=0.2) as pool:
        pool.wait(timeout=DEADLINE)
        yield pool


@pytest.fixture
def engine(dsn: str) -> Iterator[Engine]:
    params = conninfo_to_dict(dsn)
    url = URL.create(
        "postgresql+psycopg2",
        username=str(params.get("user", "postgres")),
        password=params.get("password"),  # type: ignore[arg-type]
        host=str(params.get("host", "127.0.0.1")),
        port=int(params.get("port", 5432)),
        database=str(params.get("dbname", "postgres")),
    )
    engine = create_engine(
        url, poolclass=FerroPool, pool_size=3, max_overflow=0, pool_timeout=0.2, leak_timeout=0.2
    )
    try:
        yield engine
    finally:
        engine.dispose()


def pids_of(pool: Any, n: int) -> set[int]:
    conns = [pool.getconn(timeout=DEADLINE) for _ in range(n)]
    try:
        return {c.info.backend_pid for c in conns}
    finally:
        for c in conns:
            pool.putconn(c)


# ---- failover drain --------------------------------------------------------------------


def test_failover_drain_through_the_dbapi_pool(dsn: str, dbapi_pool: Pool[Any]) -> None:
    """A block failing because the server went away retires every connection
    opened before it, not only its own."""
    before = pids_of(dbapi_pool, 3)
    with pytest.raises(psycopg2.OperationalError), dbapi_pool.connection() as conn:
        terminate_backend(dsn, conn.info.backend_pid)
        conn.cursor().execute("select 1")
    wait_until(lambda: dbapi_pool.get_stats()["pool_available"] == 3, what="refilled")
    assert dbapi_pool.get_stats()["failovers"] == 1
    assert not pids_of(dbapi_pool, 3) & before


def test_failover_drain_through_ferropool_on_sqlalchemy(dsn: str, engine: Engine) -> None:
    with engine.connect() as first, engine.connect() as second:
        before = {c.execute(text("select pg_backend_pid()")).scalar_one() for c in (first, second)}
    with pytest.raises(exc.OperationalError), engine.connect() as conn:
        terminate_backend(dsn, conn.execute(text("select pg_backend_pid()")).scalar_one())
        conn.execute(text("select 1"))
    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        after = {x.execute(text("select pg_backend_pid()")).scalar_one() for x in (a, b, c)}
    assert not after & before


# ---- leak reports ----------------------------------------------------------------------


def held_too_long(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "connection held for" in r.getMessage()]


def test_leak_report_through_the_dbapi_pool(
    dbapi_pool: Pool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    conn = dbapi_pool.getconn(timeout=DEADLINE)
    try:
        wait_until(lambda: held_too_long(caplog), what="a leak report")
    finally:
        dbapi_pool.putconn(conn)
    [report] = held_too_long(caplog)
    assert "test_leak_report_through_the_dbapi_pool" in report, "names the borrower's code"
    assert dbapi_pool.get_stats()["leaks_detected"] == 1


def test_leak_report_through_ferropool_on_sqlalchemy(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ferropool")
    with engine.connect():
        wait_until(lambda: held_too_long(caplog), what="a leak report")
    assert len(held_too_long(caplog)) == 1
    assert engine.pool.get_stats()["leaks_detected"] == 1  # type: ignore[attr-defined]


# ---- pause ---------------------------------------------------------------------------


@pytest.mark.parametrize("front_end", ["ConnectionPool", "dbapi.Pool"])
def test_pause_holds_back_checkouts(dsn: str, front_end: str) -> None:
    pool: Any = (
        ConnectionPool(dsn, min_size=1, open=True)
        if front_end == "ConnectionPool"
        else Pool(lambda: psycopg2.connect(dsn), min_size=1)
    )
    with pool:
        pool.wait(timeout=DEADLINE)
        pool.pause()
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.1)
        pool.resume()
        pool.putconn(pool.getconn(timeout=DEADLINE))
        assert pool.get_stats()["requests_errors"] == 1


def test_pause_through_ferropool_on_sqlalchemy(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("select 1"))
    pool: FerroPool = engine.pool  # type: ignore[assignment]
    pool.pause()
    with pytest.raises(exc.TimeoutError):
        engine.connect()
    pool.resume()
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar_one() == 1


# ---- the server down -------------------------------------------------------------------


def test_ferropool_on_sqlalchemy_raises_the_drivers_error_when_connecting_fails(
    dsn: str,
) -> None:
    """As QueuePool: "database down" is the driver's OperationalError (wrapped
    by SQLAlchemy), raised without waiting out pool_timeout."""
    params = conninfo_to_dict(dsn)
    url = URL.create(
        "postgresql+psycopg2",
        username=str(params.get("user", "postgres")),
        host="127.0.0.1",
        port=1,  # nothing listens there
        database="postgres",
    )
    engine = create_engine(url, poolclass=FerroPool, pool_size=2, pool_timeout=DEADLINE * 10)
    try:
        for _ in range(3):
            with pytest.raises(exc.OperationalError) as caught:
                engine.connect()
            assert isinstance(caught.value.orig, psycopg2.OperationalError)
    finally:
        engine.dispose()
