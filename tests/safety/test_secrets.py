"""Passwords never appear in repr, str, logs or exception messages.

Every fault test that talks to a password-protected server
(test_faults_outage, _killed, _network, _connect and the TLS tests) runs
under ``secret_watch``: all "ferropool" and "psycopg" log records at DEBUG
and the text of every exception its requests met (message, repr, the whole
chain with tracebacks) are searched for the password when the test ends.
test_logging.py covers a pool's ordinary life. This module checks that the
watch itself finds a leak, the repr and str of everything a user can print,
and connection strings that make libpq quote parts of them back.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ferropool import ConnectionPool, NullConnectionPool, PoolTimeout
from ferropool.embedded import EmbeddedPostgres, free_port
from tests.fixtures.helpers import DEADLINE
from tests.fixtures.reliability import SecretWatch


def test_the_watch_finds_a_password_in_logs_and_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watch the fault tests rely on is not vacuous."""
    caplog.set_level(logging.DEBUG, logger="ferropool")
    secret = secrets.token_urlsafe(12)
    watch = SecretWatch(caplog)
    watch.protect(secret)
    assert watch.leaks() == []
    logging.getLogger("ferropool.test").debug("connecting with %s", secret)
    assert len(watch.leaks()) == 1
    try:
        raise RuntimeError("outer") from ValueError(f"inner {secret}")
    except RuntimeError as ex:
        watch.add(ex)  # found in the chain, not the message
    assert len(watch.leaks()) == 2
    caplog.clear()


def test_nothing_a_user_prints_shows_the_password(
    scram_server: EmbeddedPostgres, secret_watch: SecretWatch
) -> None:
    password = scram_server.password
    assert password
    secret_watch.protect(password)
    params = conninfo_to_dict(scram_server.dsn)
    uri = (
        f"postgresql://{scram_server.user}:{password}@{scram_server.host}:{scram_server.port}"
        f"/{scram_server.dbname}"
    )
    without = {k: v for k, v in params.items() if k != "password"}
    ways: list[tuple[Any, Any]] = [
        (scram_server.dsn, None),
        (uri, None),
        (make_conninfo(**without), {"password": password}),
        (lambda: scram_server.dsn, None),
        (make_conninfo(**without), lambda: {"password": password}),
    ]
    for conninfo, kwargs in ways:
        for cls, min_size in ((ConnectionPool, 1), (NullConnectionPool, 0)):
            with cls(conninfo, kwargs=kwargs, min_size=min_size, open=True) as pool:
                with pool.connection(timeout=DEADLINE) as conn:
                    conn.execute("select 1")
                    secret_watch.add(conn, conn.info, conn.pgconn)
                secret_watch.add(pool, pool.get_stats(), pool.name)
    secret_watch.add(scram_server)
    secret_watch.assert_clean()


def unquoted(password: str, port: int) -> str:
    """A conninfo built the naive way: the password pasted in unquoted."""
    return f"host=127.0.0.1 port={port} user=postgres password={password}"


# Connection strings that make libpq quote part of them back in its error.
MALFORMED: dict[str, Callable[[str, int], tuple[Any, Any]]] = {
    # A password with a space, unquoted: libpq says 'missing "=" after "<rest>"'.
    "conninfo_password_with_a_space": lambda pw, port: (unquoted(pw, port), None),
    "callable_conninfo_password_with_a_space": lambda pw, port: (
        lambda: unquoted(pw, port),
        None,
    ),
}

# libpq quotes a bad option's value back; here that value is the password,
# given through a callable. ferropool's own messages must not show it;
# psycopg's DEBUG logger repeats libpq's text verbatim, which ferropool does
# not own (test_logging covers the plain-string version end to end).
ECHOED: dict[str, Callable[[str, int], tuple[Any, Any]]] = {
    "callable_conninfo_echoed_option": lambda pw, port: (
        lambda: f"host=127.0.0.1 port={port} password={pw} sslmode={pw}",
        None,
    ),
    "callable_kwargs_echoed_option": lambda pw, port: (
        f"host=127.0.0.1 port={port}",
        lambda: {"password": pw, "sslmode": pw},
    ),
}


@pytest.mark.parametrize("case", list(ECHOED))
def test_an_echoed_password_from_a_callable_is_masked_in_ferropool_messages(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = secrets.token_urlsafe(12)
    conninfo, kwargs = ECHOED[case](password, free_port())
    with (
        caplog.at_level(logging.DEBUG, logger="ferropool"),
        ConnectionPool(conninfo, kwargs=kwargs, min_size=1, timeout=0.5, open=True) as pool,
    ):
        with pytest.raises(PoolTimeout) as info:
            pool.getconn()
        assert "last connection error" in str(info.value)
        assert password not in str(info.value)
        assert password not in repr(pool)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("ferropool")]
    assert ours, "the failed attempts were logged"
    assert not [m for m in ours if password in m]


@pytest.mark.parametrize("case", list(MALFORMED))
def test_libpq_quoting_the_connection_string_back_shows_no_password(
    case: str, secret_watch: SecretWatch
) -> None:
    first, second = secrets.token_urlsafe(9), secrets.token_urlsafe(9)
    password = f"{first} {second}"
    # Every word of it is secret.
    secret_watch.protect(first)
    secret_watch.protect(second)
    conninfo, kwargs = MALFORMED[case](password, free_port())
    with ConnectionPool(conninfo, kwargs=kwargs, min_size=1, timeout=0.5, open=True) as pool:
        with pytest.raises(PoolTimeout) as info:
            pool.getconn()
        secret_watch.add(info.value, pool)
    assert "last connection error" in str(info.value)
    secret_watch.assert_clean()
    # What psycopg itself says, for contrast: the pool must say no more.
    with pytest.raises(psycopg.Error) as direct:
        resolved = conninfo() if callable(conninfo) else conninfo
        extra = kwargs() if callable(kwargs) else (kwargs or {})
        psycopg.connect(resolved, connect_timeout=2, **extra)
    assert first in str(direct.value) or second in str(direct.value), (
        "libpq no longer quotes it back: the case tests nothing"
    )
