"""Logging: standard logging under "ferropool", quiet on the hot path, and
never a password.

Every record from every logger is captured (root handler at DEBUG) and
formatted with its exception and stack, as a production log would be, while
the pools go through their whole life against a server that requires a
password (SCRAM-SHA-256): connecting, lending, rollbacks, failing hooks and
resets, a terminated backend, resizing, draining, closing, and connection
failures with a wrong password given in a conninfo string, a URI or kwargs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

import ferropool
from ferropool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    ConnectionPool,
    NullConnectionPool,
    PoolTimeout,
)
from ferropool.cli.embedded import EmbeddedPostgres, free_port
from tests.fixtures.helpers import DEADLINE, backend_pid, terminate_backend, wait_until

PACKAGE_DIR = os.path.dirname(os.path.abspath(ferropool.__file__))
WRONG = "Wr0ngSecretForLogTests"


class Capture(logging.Handler):
    """Every record, formatted as a production handler would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.records_lock = threading.Lock()
        self.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(threadName)s %(message)s")
        )

    def emit(self, record: logging.LogRecord) -> None:
        with self.records_lock:
            self.records.append(record)

    def texts(self) -> list[str]:
        with self.records_lock:
            records = list(self.records)
        out = []
        for r in records:
            text = self.format(r)
            if r.stack_info:
                text += r.stack_info
            out.append(text + repr(r.args) + repr(vars(r)))
        return out

    def clear(self) -> None:
        with self.records_lock:
            self.records.clear()


@pytest.fixture
def logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    old_level = root.level
    ferro = logging.getLogger("ferropool")
    old_ferro = ferro.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    ferro.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
        ferro.setLevel(old_ferro)


@pytest.fixture(scope="module")
def scram() -> Iterator[EmbeddedPostgres]:
    """A server that requires a password: every conninfo carries one."""
    with EmbeddedPostgres(auth="scram-sha-256") as server:
        yield server


def assert_secret_free(logs: Capture, *secrets: str, errors: Sequence[BaseException] = ()) -> None:
    texts = logs.texts()
    for secret in secrets:
        leaked = [t for t in texts if secret in t]
        assert not leaked, f"password in {len(leaked)} log records, e.g. {leaked[0][:300]}"
        for ex in errors:
            assert secret not in str(ex) and secret not in repr(ex), f"password in {ex!r}"


def assert_on_ferropool_logger(logs: Capture) -> None:
    """Records made by the package's code are on the "ferropool" logger."""
    with logs.records_lock:
        ours = [r for r in logs.records if r.pathname.startswith(PACKAGE_DIR)]
    assert {r.name for r in ours} <= {"ferropool"}, {r.name for r in ours}


def plain_conninfo(server: EmbeddedPostgres) -> str:
    # passfile: a ~/.pgpass must not supply the password behind our back.
    return (
        f"host={server.host} port={server.port} user={server.user}"
        f" dbname={server.dbname} passfile=/dev/null"
    )


def test_a_pools_whole_life_logs_no_password(scram: EmbeddedPostgres, logs: Capture) -> None:
    password = scram.password
    assert password and password in scram.dsn

    def failing_hook(conn: Any) -> None:
        # A user hook that puts the conninfo in its error.
        raise RuntimeError(f"hook failed on {scram.dsn}")

    def failing_reset(conn: Any) -> None:
        raise RuntimeError("reset failed")

    errors: list[BaseException] = []
    with ConnectionPool(
        # lifo: the connection whose backend is killed below is the one lent
        # next, so its error (not a background ping) meets the failover.
        scram.dsn,
        min_size=2,
        max_size=3,
        name="life",
        open=True,
        on_checkout=failing_hook,
        lifo=True,
    ) as pool:
        pool.wait(timeout=DEADLINE)
        with pool.connection() as conn:
            conn.execute("select 1")
        conn = pool.getconn()
        conn.execute("select 1")  # left in a transaction: rolled back on return
        pool.putconn(conn)
        with pytest.raises(psycopg.errors.UndefinedTable) as info, pool.connection() as conn:
            conn.execute("select * from no_such_table")
        errors.append(info.value)
        # A backend killed by the server: a failover drain, then refills.
        with pool.connection() as conn:
            pid = backend_pid(conn)
        terminate_backend(scram.dsn, pid)
        for _ in range(3):
            try:
                with pool.connection() as conn:
                    conn.execute("select 1")
            except psycopg.OperationalError as ex:
                errors.append(ex)
        pool.check()
        pool.resize(1, 2)
        pool.drain()
        pool.pause()
        pool.resume()
        wait_until(lambda: pool.get_stats()["pool_available"] >= 1, what="a refill")
        errors.append(PoolTimeout(str(pool)))
    with (
        ConnectionPool(scram.dsn, min_size=1, reset=failing_reset, open=True) as pool,
        pool.connection() as conn,
    ):
        conn.execute("select 1")
    with NullConnectionPool(scram.dsn, open=True) as null:
        null.wait(timeout=DEADLINE)
        with null.connection() as conn:
            conn.execute("select 1")

    text = "\n".join(logs.texts())
    # The interesting events were logged (the test is not vacuous)...
    assert "hook failed" in text
    assert "rolling back returned connection" in text
    assert "error resetting connection" in text
    assert "server went away" in text
    assert "resized" in text
    # ...and the password never was.
    assert_secret_free(logs, password, errors=errors)
    assert_on_ferropool_logger(logs)


@pytest.mark.parametrize("where", ["conninfo", "uri", "kwargs"])
def test_connect_failures_log_no_password(
    scram: EmbeddedPostgres, logs: Capture, where: str
) -> None:
    kwargs: dict[str, Any] | None = None
    if where == "conninfo":
        conninfo = f"{plain_conninfo(scram)} password={WRONG}"
    elif where == "uri":
        conninfo = (
            f"postgresql://{scram.user}:{WRONG}@{scram.host}:{scram.port}"
            f"/{scram.dbname}?passfile=/dev/null"
        )
    else:
        conninfo, kwargs = plain_conninfo(scram), {"password": WRONG}
    errors: list[BaseException] = []

    pool = ConnectionPool(conninfo, kwargs=kwargs, min_size=1, open=True)
    try:
        with pytest.raises(PoolTimeout) as info:
            pool.wait(timeout=0.5)
        errors.append(info.value)
    finally:
        pool.close()
    null = NullConnectionPool(conninfo, kwargs=kwargs, open=True)
    try:
        with pytest.raises(psycopg.OperationalError) as info2:
            null.getconn(timeout=DEADLINE)
        errors.append(info2.value)
    finally:
        null.close()

    async def run_async() -> None:
        apool = AsyncConnectionPool(conninfo, kwargs=kwargs, min_size=1, open=False)
        await apool.open()
        try:
            with pytest.raises(PoolTimeout) as info3:
                await apool.wait(timeout=0.5)
            errors.append(info3.value)
        finally:
            await apool.close()
        anull = AsyncNullConnectionPool(conninfo, kwargs=kwargs, open=False)
        await anull.open()
        try:
            with pytest.raises(psycopg.OperationalError) as info4:
                await anull.getconn(timeout=DEADLINE)
            errors.append(info4.value)
        finally:
            await anull.close()

    asyncio.run(run_async())
    assert "password authentication failed" in str(errors[0])
    warnings = [r for r in logs.records if r.levelno >= logging.WARNING]
    assert any("error connecting" in r.getMessage() for r in warnings)
    assert_secret_free(logs, WRONG, errors=errors)
    assert_on_ferropool_logger(logs)


def test_password_echoed_by_libpq_stays_out_of_logs(logs: Capture) -> None:
    # libpq quotes a bad option's value back; here that value is the password.
    conninfo = f"host=127.0.0.1 port={free_port()} password={WRONG} sslmode={WRONG}"
    pool = ConnectionPool(conninfo, min_size=1, open=True)
    try:
        with pytest.raises(PoolTimeout) as info:
            pool.wait(timeout=0.5)
    finally:
        pool.close()

    async def run_async() -> BaseException:
        apool = AsyncConnectionPool(conninfo, min_size=1, open=False)
        await apool.open()
        try:
            with pytest.raises(PoolTimeout) as info2:
                await apool.wait(timeout=0.5)
            return info2.value
        finally:
            await apool.close()

    async_error = asyncio.run(run_async())
    assert "sslmode" in str(info.value)
    assert any("sslmode" in t for t in logs.texts()), "the failure was logged"
    assert_secret_free(logs, WRONG, errors=[info.value, async_error])


def test_hot_path_logs_nothing(dsn: str, logs: Capture) -> None:
    with ConnectionPool(dsn, min_size=4, open=True) as pool:
        pool.wait(timeout=DEADLINE)
        logs.clear()
        me = threading.get_ident()
        for _ in range(2000):
            pool.putconn(pool.getconn())
        for i in range(2000):
            with pool.connection() as conn:
                if i % 100 == 0:
                    conn.execute("select 1")
        assert pool.get_stats()["requests_num"] == 4000
        with logs.records_lock:
            records = list(logs.records)
    assert not [r for r in records if r.levelno >= logging.INFO], [r.getMessage() for r in records]
    # Not even DEBUG from the borrowing thread.
    assert not [r for r in records if r.thread == me]


def test_async_and_null_hot_paths_log_nothing_at_info(dsn: str, logs: Capture) -> None:
    async def run() -> None:
        async with AsyncConnectionPool(dsn, min_size=4) as pool:
            await pool.wait(timeout=DEADLINE)
            logs.clear()
            for _ in range(1000):
                await pool.putconn(await pool.getconn())
            for _ in range(200):
                async with pool.connection():
                    pass

    asyncio.run(run())
    with NullConnectionPool(dsn, open=True) as null:
        for _ in range(10):
            with null.connection() as conn:
                conn.execute("select 1")
    with logs.records_lock:
        records = list(logs.records)
    noisy = [r for r in records if r.levelno >= logging.INFO and r.name == "ferropool"]
    assert not noisy, [r.getMessage() for r in noisy]
