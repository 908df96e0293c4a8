"""The sync pools' public surface: what a psycopg_pool user relies on.

Constructor defaults and signatures are compared with psycopg_pool's own
classes, attribute by attribute, so a drift in either shows up here.
Argument validation, repr, exceptions, stats keys and the open/close rules
follow; everything runs against a real server.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
import pytest
from psycopg_pool.base import BasePool

import ferropool
import ferropool.errors
from ferropool import (
    ConnectionPool,
    NullConnectionPool,
    PoolClosed,
    PoolTimeout,
    TooManyRequests,
)
from ferropool.embedded import EmbeddedPostgres, free_port
from tests.fixtures.helpers import DEADLINE, Threads, wait_until

# ---- defaults and signatures ------------------------------------------------

# Attributes psycopg_pool documents on a pool object.
POOL_ATTRIBUTES = [
    "conninfo",
    "kwargs",
    "connection_class",
    "min_size",
    "max_size",
    "close_returns",
    "timeout",
    "max_waiting",
    "max_lifetime",
    "max_idle",
    "reconnect_timeout",
    "num_workers",
    "closed",
]

PAIRS = [
    pytest.param(ConnectionPool, psycopg_pool.ConnectionPool, id="ConnectionPool"),
    pytest.param(NullConnectionPool, psycopg_pool.NullConnectionPool, id="NullConnectionPool"),
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
@pytest.mark.parametrize(
    "args",
    [
        {},
        {"max_size": 6},
        {"name": "mine", "timeout": 2.5, "max_waiting": 7, "kwargs": {"autocommit": True}},
        {"max_lifetime": 10.0, "max_idle": 5.0, "reconnect_timeout": 1.0, "num_workers": 1},
    ],
    ids=["defaults", "max_size", "misc", "lifetimes"],
)
def test_constructor_matches_psycopg_pool(
    dsn: str, ours: type[Any], theirs: type[Any], args: dict[str, Any]
) -> None:
    a = ours(dsn, open=False, **args)
    b = theirs(dsn, open=False, **args)
    for attr in POOL_ATTRIBUTES:
        assert getattr(a, attr) == getattr(b, attr), attr
    if "name" in args:
        assert a.name == b.name
    for key in ("pool_min", "pool_max"):
        assert a.get_stats()[key] == b.get_stats()[key], key


def test_min_size_sets_max_size_like_psycopg_pool(dsn: str) -> None:
    a = ConnectionPool(dsn, open=False, min_size=2)
    b = psycopg_pool.ConnectionPool(dsn, open=False, min_size=2)
    assert (a.min_size, a.max_size) == (b.min_size, b.max_size) == (2, 2)
    a = ConnectionPool(dsn, open=False, min_size=1, max_size=5)
    b = psycopg_pool.ConnectionPool(dsn, open=False, min_size=1, max_size=5)
    assert (a.min_size, a.max_size) == (b.min_size, b.max_size) == (1, 5)


def test_generated_names_are_distinct(dsn: str) -> None:
    a = ConnectionPool(dsn, open=False)
    b = ConnectionPool(dsn, open=False)
    assert re.fullmatch(r"pool-\d+", a.name)
    assert re.fullmatch(r"pool-\d+", b.name)
    assert a.name != b.name


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
@pytest.mark.parametrize(
    "method",
    [
        "__init__",
        "open",
        "close",
        "wait",
        "getconn",
        "putconn",
        "connection",
        "resize",
        "check",
        "drain",
        "get_stats",
        "pop_stats",
        "check_connection",
        "reconnect_failed",
    ],
)
def test_signatures_match_psycopg_pool(ours: type[Any], theirs: type[Any], method: str) -> None:
    """Same parameter names, kinds and defaults: keyword callers keep working.

    ferropool's own options may follow psycopg_pool's, keyword-only and with
    defaults, so no psycopg_pool call changes meaning."""

    def shape(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    mine, reference = shape(getattr(ours, method)), shape(getattr(theirs, method))
    assert mine[: len(reference)] == reference
    for name, kind, default in mine[len(reference) :]:
        assert kind is inspect.Parameter.KEYWORD_ONLY, name
        assert default is not inspect.Parameter.empty, name


# ---- validation -------------------------------------------------------------

# (constructor arguments, expected exception, the parameter the message names)
INVALID = [
    ({"min_size": -1}, ValueError, "min_size"),
    ({"min_size": 1.5}, TypeError, "min_size"),
    ({"min_size": "2"}, TypeError, "min_size"),
    ({"min_size": True}, TypeError, "min_size"),
    ({"min_size": None}, TypeError, "min_size"),
    ({"min_size": 2**40}, ValueError, "min_size"),
    ({"max_size": -1}, ValueError, "max_size"),
    ({"min_size": 5, "max_size": 2}, ValueError, "max_size"),
    ({"min_size": 0, "max_size": 0}, ValueError, "max_size"),
    ({"max_size": 2.0}, TypeError, "max_size"),
    ({"max_size": 2**40}, ValueError, "max_size"),
    ({"max_size": 10**20}, ValueError, "max_size"),
    ({"timeout": -1}, ValueError, "timeout"),
    ({"timeout": float("nan")}, ValueError, "timeout"),
    ({"timeout": float("-inf")}, ValueError, "timeout"),
    ({"timeout": "1"}, TypeError, "timeout"),
    ({"timeout": None}, TypeError, "timeout"),
    ({"max_waiting": -1}, ValueError, "max_waiting"),
    ({"max_waiting": 1.0}, TypeError, "max_waiting"),
    ({"max_waiting": 10**30}, ValueError, "max_waiting"),
    ({"max_lifetime": 0}, ValueError, "max_lifetime"),
    ({"max_lifetime": -1}, ValueError, "max_lifetime"),
    ({"max_lifetime": float("-inf")}, ValueError, "max_lifetime"),
    ({"max_lifetime": float("nan")}, ValueError, "max_lifetime"),
    ({"max_lifetime": None}, TypeError, "max_lifetime"),
    ({"max_idle": 0}, ValueError, "max_idle"),
    ({"max_idle": -2.5}, ValueError, "max_idle"),
    ({"max_idle": "10"}, TypeError, "max_idle"),
    ({"reconnect_timeout": -1}, ValueError, "reconnect_timeout"),
    ({"reconnect_timeout": float("nan")}, ValueError, "reconnect_timeout"),
    ({"num_workers": 0}, ValueError, "num_workers"),
    ({"num_workers": 1.0}, TypeError, "num_workers"),
    ({"configure": 1}, TypeError, "configure"),
    ({"check": "SELECT 1"}, TypeError, "check"),
    ({"reset": 42}, TypeError, "reset"),
    ({"reconnect_failed": 3}, TypeError, "reconnect_failed"),
    ({"connection_class": int}, TypeError, "connection_class"),
    ({"connection_class": "psycopg.Connection"}, TypeError, "connection_class"),
    ({"name": 3}, TypeError, "name"),
    ({"close_returns": 1}, TypeError, "close_returns"),
    ({"open": "yes"}, TypeError, "open"),
]


def _value_named(message: str, value: object) -> bool:
    # Numbers may be shown normalised (-1 as -1.0), strings quoted.
    return str(value) in message or repr(value) in message


def _case_id(case: object) -> str | None:
    if isinstance(case, dict):
        return ",".join(f"{k}={v!r}"[:30] for k, v in case.items())
    return None


@pytest.mark.parametrize(("args", "exc", "param"), INVALID, ids=_case_id)
def test_invalid_constructor_argument(
    dsn: str, args: dict[str, Any], exc: type[Exception], param: str
) -> None:
    args = {"open": False, **args}
    with pytest.raises(exc) as info:
        ConnectionPool(dsn, **args)
    message = str(info.value)
    assert param in message
    assert _value_named(message, args[param])


@pytest.mark.parametrize("conninfo", [3, b"dbname=x password=secret"])
def test_invalid_conninfo_type(conninfo: object) -> None:
    # Only the type is named: a conninfo (even as bytes) may hold a password.
    with pytest.raises(TypeError, match=rf"conninfo.*{type(conninfo).__name__}") as info:
        ConnectionPool(conninfo, open=False)  # type: ignore[arg-type]
    assert "secret" not in str(info.value)


def test_invalid_kwargs_type(dsn: str) -> None:
    # As for conninfo, the value itself may hold a password: the type is named.
    with pytest.raises(TypeError, match=r"kwargs.*list"):
        ConnectionPool(dsn, open=False, kwargs=[("password", "x")])  # type: ignore[arg-type]


def test_invalid_null_pool_sizes(dsn: str) -> None:
    with pytest.raises(ValueError, match=r"min_size.*1"):
        NullConnectionPool(dsn, open=False, min_size=1)
    with pytest.raises(ValueError, match=r"max_size.*-1"):
        NullConnectionPool(dsn, open=False, max_size=-1)


@pytest.mark.parametrize(
    ("args", "exc", "param"),
    [
        ((-1,), ValueError, "min_size"),
        ((5, 2), ValueError, "max_size"),
        ((0, 0), ValueError, "max_size"),
        ((1.5,), TypeError, "min_size"),
        (("2",), TypeError, "min_size"),
        ((2, -3), ValueError, "max_size"),
        ((2, 2.0), TypeError, "max_size"),
        ((2, 2**40), ValueError, "max_size"),
        ((2, 10**20), ValueError, "max_size"),
    ],
)
def test_invalid_resize_leaves_pool_unchanged(
    dsn: str, args: tuple[Any, ...], exc: type[Exception], param: str
) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=3, open=True) as pool:
        pool.wait()
        before = pool.get_stats()
        with pytest.raises(exc, match=param):
            pool.resize(*args)
        assert (pool.min_size, pool.max_size) == (1, 3)
        assert pool.get_stats() == before


@pytest.mark.parametrize(
    ("attr", "value", "exc"),
    [
        ("max_waiting", -1, ValueError),
        ("max_waiting", "2", TypeError),
        ("max_lifetime", 0, ValueError),
        ("max_lifetime", None, TypeError),
        ("max_idle", -1, ValueError),
        ("reconnect_timeout", float("nan"), ValueError),
    ],
)
def test_invalid_setting_leaves_pool_unchanged(
    dsn: str, attr: str, value: object, exc: type[Exception]
) -> None:
    pool = ConnectionPool(dsn, open=False)
    before = getattr(pool, attr)
    with pytest.raises(exc) as info:
        setattr(pool, attr, value)
    assert attr in str(info.value)
    assert _value_named(str(info.value), value)
    assert getattr(pool, attr) == before


@pytest.mark.parametrize(
    ("method", "args", "exc"),
    [
        ("wait", {"timeout": -1}, ValueError),
        ("wait", {"timeout": "soon"}, TypeError),
        ("close", {"timeout": float("nan")}, ValueError),
        ("getconn", {"timeout": -1}, ValueError),
        ("getconn", {"timeout": "1"}, TypeError),
    ],
)
def test_invalid_method_timeout_leaves_pool_unchanged(
    dsn: str, method: str, args: dict[str, Any], exc: type[Exception]
) -> None:
    # A connection is idle, so a getconn that skipped validation would
    # succeed: the check must not depend on the pool's state.
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        pool.wait()
        before = pool.get_stats()
        with pytest.raises(exc, match="timeout"):
            getattr(pool, method)(**args)
        assert not pool.closed
        after = pool.get_stats()
        assert after["pool_available"] == before["pool_available"] == 1
        assert after["pool_size"] == before["pool_size"] == 1


def test_invalid_open_arguments_do_not_open(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1, open=False)
    with pytest.raises(ValueError, match="timeout"):
        pool.open(wait=True, timeout=-1)
    with pytest.raises(TypeError, match="wait"):
        pool.open(wait="yes")  # type: ignore[arg-type]
    assert pool.closed
    assert pool.get_stats()["pool_size"] == 0


# ---- repr and secrets -------------------------------------------------------


@pytest.fixture(scope="module")
def scram_server() -> Iterator[EmbeddedPostgres]:
    """A server that requires a password, so conninfo strings carry one."""
    with EmbeddedPostgres(auth="scram-sha-256") as server:
        yield server


def test_repr_format(dsn: str) -> None:
    pool = ConnectionPool(dsn, name="reporting", open=False)
    assert re.fullmatch(r"<ferropool\.pool\.ConnectionPool 'reporting' at 0x[0-9a-f]+>", repr(pool))
    null = NullConnectionPool(dsn, name="n", open=False)
    pattern = r"<ferropool\.null_pool\.NullConnectionPool 'n' at 0x[0-9a-f]+>"
    assert re.fullmatch(pattern, repr(null))


def test_repr_hides_password(scram_server: EmbeddedPostgres) -> None:
    password = scram_server.password
    assert password and password in scram_server.dsn
    with ConnectionPool(scram_server.dsn, min_size=1, open=True) as pool:
        # The password is really used: the server refuses connections without it.
        with pool.connection() as conn:
            assert conn.execute("select current_user").fetchone() == ("postgres",)
        assert password not in repr(pool)
        assert password not in str(pool)


def _scram_conninfo(server: EmbeddedPostgres) -> str:
    # passfile: a ~/.pgpass must not supply the password behind our back.
    return (
        f"host={server.host} port={server.port} user={server.user}"
        f" dbname={server.dbname} passfile=/dev/null"
    )


@pytest.mark.parametrize("where", ["conninfo", "uri", "kwargs"])
def test_wrong_password_never_shown(
    scram_server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    wrong = "Wr0ngPassw0rdToken"
    base = _scram_conninfo(scram_server)
    kwargs: dict[str, Any] | None = None
    if where == "conninfo":
        conninfo = f"{base} password={wrong}"
    elif where == "uri":
        conninfo = (
            f"postgresql://{scram_server.user}:{wrong}@{scram_server.host}:{scram_server.port}"
            f"/{scram_server.dbname}?passfile=/dev/null"
        )
    else:
        conninfo, kwargs = base, {"password": wrong}
    caplog.set_level(logging.DEBUG, logger="ferropool")
    pool = ConnectionPool(conninfo, kwargs=kwargs, min_size=1, open=True)
    try:
        with pytest.raises(PoolTimeout) as info:
            pool.wait(timeout=0.5)
    finally:
        pool.close()
    # The reason is given, the password is not.
    assert "password authentication failed" in str(info.value)
    assert wrong not in str(info.value)
    assert wrong not in repr(pool)
    assert caplog.records, "connection failures are logged"
    assert all(wrong not in r.getMessage() for r in caplog.records)


def test_password_echoed_by_libpq_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    # libpq quotes bad option values back; here the value is the password.
    secret = "S3cretEch0edToken"
    conninfo = f"host=127.0.0.1 port={free_port()} password={secret} sslmode={secret}"
    caplog.set_level(logging.DEBUG, logger="ferropool")
    pool = ConnectionPool(conninfo, min_size=1, open=True)
    try:
        with pytest.raises(PoolTimeout) as info:
            pool.wait(timeout=0.5)
    finally:
        pool.close()
    assert "sslmode" in str(info.value)
    assert secret not in str(info.value)
    assert all(secret not in r.getMessage() for r in caplog.records)


# ---- exceptions and stats ---------------------------------------------------


@pytest.mark.parametrize("exc", [PoolTimeout, PoolClosed, TooManyRequests])
def test_exceptions_are_psycopg_operational_errors(exc: type[Exception]) -> None:
    assert issubclass(exc, psycopg.OperationalError)
    assert issubclass(exc, psycopg.Error)
    assert exc.__name__ == getattr(psycopg_pool, exc.__name__).__name__
    assert getattr(ferropool, exc.__name__) is exc
    assert getattr(ferropool.errors, exc.__name__) is exc


def test_raised_exceptions_are_ferropool_classes(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        held = pool.getconn()
        # Caught as psycopg's own OperationalError, as psycopg_pool users do.
        with pytest.raises(psycopg.OperationalError) as info:
            pool.getconn(timeout=0.1)
        assert type(info.value) is PoolTimeout
        pool.putconn(held)
    with pytest.raises(psycopg.OperationalError) as info:
        pool.getconn()
    assert type(info.value) is PoolClosed


# Every key psycopg_pool can report: its counters and its measures.
PSYCOPG_POOL_STATS_KEYS = {
    value
    for key, value in vars(BasePool).items()
    if key.startswith("_") and key[1:].isupper() and isinstance(value, str)
}


# ferropool's own counters, reported after psycopg_pool's.
FERROPOOL_STATS_KEYS = {
    "connections_retired",
    "liveness_polls",
    "liveness_suspects",
    "keepalive_pings",
    "leaks_detected",
    "leaks_reclaimed",
    "failovers",
    "paused",
}


def test_stats_keys_match_psycopg_pool(dsn: str) -> None:
    """Every psycopg_pool key, with its meaning; ferropool's extra keys
    come after them."""
    assert len(PSYCOPG_POOL_STATS_KEYS) == 15
    expected = PSYCOPG_POOL_STATS_KEYS | FERROPOOL_STATS_KEYS
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        assert list(pool.get_stats())[:15] == sorted(
            PSYCOPG_POOL_STATS_KEYS, key=list(pool.get_stats()).index
        )
        assert set(pool.get_stats()) == expected
        with pool.connection():
            pass
        assert set(pool.get_stats()) == expected
        assert set(pool.pop_stats()) == expected
    with NullConnectionPool(dsn, open=True) as null:
        with null.connection():
            pass
        assert set(null.get_stats()) == expected


def test_pop_stats_resets_counters_not_measures(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=2, open=True) as pool:
        pool.wait()
        for _ in range(3):
            with pool.connection():
                pass
        popped = pool.pop_stats()
        assert popped["requests_num"] == 3
        assert popped["connections_num"] == 2
        after = pool.get_stats()
        assert after["requests_num"] == 0
        assert after["connections_num"] == 0
        assert (after["pool_min"], after["pool_max"]) == (2, 2)
        assert (after["pool_size"], after["pool_available"]) == (2, 2)


# ---- opening and closing ----------------------------------------------------


def test_not_open_pool_refuses_getconn(dsn: str) -> None:
    pool = ConnectionPool(dsn, open=False)
    assert pool.closed
    with pytest.raises(PoolClosed, match="not open"):
        pool.getconn()
    with pytest.raises(PoolClosed), pool.connection():
        pass


def test_close_on_never_opened_pool_is_a_noop(dsn: str) -> None:
    """As in psycopg_pool: close() before open() does not stop a later open()."""
    theirs = psycopg_pool.ConnectionPool(dsn, min_size=1, open=False)
    theirs.close()
    theirs.open()
    theirs.close()

    pool = ConnectionPool(dsn, min_size=1, open=False)
    pool.close()
    pool.close()
    pool.open(wait=True)
    try:
        with pool.connection() as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        pool.close()


def test_closed_pool_cannot_reopen(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1, open=True)
    pool.close()
    with pytest.raises(PoolClosed, match="cannot be reused"):
        pool.open()
    with pytest.raises(PoolClosed):
        pool.open(wait=True)
    assert pool.closed
    with pytest.raises(PoolClosed), pool:
        pass


def test_any_use_of_closed_pool_raises_pool_closed(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1, open=True)
    pool.wait()
    pool.close()
    assert pool.closed
    with pytest.raises(PoolClosed, match="closed"):
        pool.getconn()
    with pytest.raises(PoolClosed), pool.connection():
        pass
    with pytest.raises(PoolClosed):
        pool.wait()
    with pytest.raises(PoolClosed):
        pool.check()
    pool.close()  # closing again is harmless
    assert pool.get_stats()["pool_size"] == 0


def test_close_fails_waiting_clients(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1, open=True)
    held = pool.getconn()
    errors: list[BaseException] = []
    threads = Threads()

    def waiter() -> None:
        try:
            pool.getconn(timeout=60)
        except PoolClosed as ex:
            errors.append(ex)

    for _ in range(3):
        threads.start(waiter)
    wait_until(lambda: pool.get_stats()["requests_waiting"] == 3, what="3 waiters")
    pool.close()
    # Well before their 60 s timeout: close() wakes them.
    threads.join(DEADLINE)
    assert len(errors) == 3
    pool.putconn(held)
    assert held.closed


def test_connection_lent_at_close_is_closed_on_return(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1, open=True)
    conn = pool.getconn()
    pool.close()
    # Still usable by its borrower until given back, as in psycopg_pool.
    assert conn.execute("select 1").fetchone() == (1,)
    conn.rollback()
    pool.putconn(conn)
    assert conn.closed


def test_context_manager_opens_and_closes(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1, open=False)
    with pool as entered:
        assert entered is pool
        assert not pool.closed
        with pool.connection() as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    assert pool.closed
    with pytest.raises(PoolClosed):
        pool.getconn()


def test_context_manager_on_open_pool(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, open=True) as pool:
        pool.open()  # already open: nothing happens
        pool.wait()
        assert pool.get_stats()["pool_size"] == 1
    assert pool.closed


def test_context_manager_closes_on_error(dsn: str) -> None:
    with pytest.raises(ZeroDivisionError), ConnectionPool(dsn, min_size=1, open=True) as pool:
        1 / 0  # noqa: B018
    assert pool.closed


def test_open_wait_fills_min_size(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=3, open=False)
    pool.open(wait=True, timeout=DEADLINE)
    try:
        stats = pool.get_stats()
        assert stats["pool_available"] == stats["pool_size"] == 3
    finally:
        pool.close()


def test_open_none_warns_at_first_getconn(dsn: str) -> None:
    """psycopg_pool's deprecation of the implicit open, with its timing."""
    pool = ConnectionPool(dsn, min_size=1)  # no warning yet: this would raise
    try:
        assert not pool.closed, "open=None still opens the pool"
        with pytest.warns(DeprecationWarning, match="'open' parameter"):
            conn = pool.getconn()
        pool.putconn(conn)
        # Only once.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pool.connection():
                pass
    finally:
        pool.close()


def test_open_none_warns_at_wait(dsn: str) -> None:
    pool = ConnectionPool(dsn, min_size=1)
    try:
        with pytest.warns(DeprecationWarning, match="'open' parameter"):
            pool.wait()
    finally:
        pool.close()


def test_open_none_as_context_manager_does_not_warn(dsn: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ConnectionPool(dsn, min_size=1) as pool, pool.connection() as conn:
            conn.execute("select 1")
        with NullConnectionPool(dsn) as null, null.connection() as conn:
            conn.execute("select 1")


def test_concurrent_open_opens_once(dsn: str, app_name: str) -> None:
    pool = ConnectionPool(dsn, min_size=2, open=False, kwargs={"application_name": app_name})
    barrier = threading.Barrier(4)
    threads = Threads()

    def opener() -> None:
        barrier.wait()
        pool.open(wait=True, timeout=DEADLINE)

    for _ in range(4):
        threads.start(opener)
    try:
        threads.join()
        stats = pool.get_stats()
        assert stats["pool_size"] == 2
        assert stats["connections_num"] == 2
    finally:
        pool.close()
