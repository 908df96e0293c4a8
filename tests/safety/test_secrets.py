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

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ferropool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    ConnectionPool,
    NullConnectionPool,
    PoolTimeout,
)
from ferropool.embedded import EmbeddedPostgres, free_port
from ferropool.runner.secrets import MASK, describe, scrub, secrets_of
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


# ---- masked where they stand as secrets, and only there ---------------------------

POOLS = [ConnectionPool, NullConnectionPool, AsyncConnectionPool, AsyncNullConnectionPool]
NULL_POOLS = (NullConnectionPool, AsyncNullConnectionPool)


def request_error(cls: Any, conninfo: str) -> BaseException:
    """What a request meets on a *cls* pool whose every connect fails:
    PoolTimeout naming the last connection error, or (null pools, which
    connect on the request's behalf) the connection error itself."""
    sizes: dict[str, Any] = {} if cls in NULL_POOLS else {"min_size": 1}
    if cls in (AsyncConnectionPool, AsyncNullConnectionPool):

        async def run() -> BaseException:
            async with cls(conninfo, timeout=0.5, open=False, **sizes) as pool:
                with pytest.raises(psycopg.Error) as info:
                    await pool.getconn()
            return info.value

        return asyncio.run(run())
    with (
        cls(conninfo, timeout=0.5, open=True, **sizes) as pool,
        pytest.raises(psycopg.Error) as info,
    ):
        pool.getconn()
    return info.value


# Connection strings that put the password, or part of it, where libpq or
# psycopg quote it back: (conninfo from the two halves of a password and a
# port, what the message must still show).
MISPARSED: dict[str, tuple[Callable[[str, str, int], str], str]] = {
    # An unencoded "@" in a URI password: the rest becomes the host, which
    # psycopg fails to resolve and quotes ("failed to resolve host '...'").
    "uri_password_with_an_at_sign": (
        lambda a, b, port: f"postgresql://postgres:{a}@{b}@127.0.0.1:{port}/postgres",
        "@127.0.0.1",
    ),
    # A raw "%" in a URI query password, another parameter after it:
    # 'invalid percent-encoded token: "<password>"'.
    "uri_query_password_with_a_raw_percent": (
        lambda a, b, port: (
            f"postgresql://postgres@127.0.0.1:{port}/postgres?password={a}%zz{b}&sslmode=disable"
        ),
        "invalid percent-encoded token",
    ),
}


@pytest.mark.parametrize("cls", POOLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", list(MISPARSED))
def test_a_misparsed_password_is_masked_in_errors_and_logs(
    case: str, cls: Any, secret_watch: SecretWatch, caplog: pytest.LogCaptureFixture
) -> None:
    # psycopg's own DEBUG record of the failed host resolution quotes the
    # host as it is: psycopg's, not ferropool's to mask.
    caplog.set_level(logging.INFO, logger="psycopg")
    first, second = secrets.token_hex(6), secrets.token_hex(6)
    secret_watch.protect(first)
    secret_watch.protect(second)
    template, shown = MISPARSED[case]
    conninfo = template(first, second, free_port())
    error = request_error(cls, conninfo)
    secret_watch.add(error)
    assert shown in str(error)
    # Nor in what the error carries: a masked copy keeps no unmasked
    # original as its context or cause.
    for linked in (error.__context__, error.__cause__):
        if linked is not None:
            secret_watch.add(linked)
    if cls not in NULL_POOLS:  # their workers log each failed attempt
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(shown in w for w in warnings), warnings
    secret_watch.assert_clean()
    # What psycopg itself says, for contrast: the case must quote a piece.
    with pytest.raises(psycopg.Error) as direct:
        psycopg.connect(conninfo, connect_timeout=2)
    assert first in str(direct.value) or second in str(direct.value), (
        "nothing is quoted back: the case tests nothing"
    )


@pytest.mark.parametrize("cls", POOLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("password", "shown"),
    [
        # The user name is postgres too: the message names the user.
        ("postgres", 'password authentication failed for user "postgres"'),
        # "1" is in the host and the port: both stay as they are.
        ("1", 'connection to server at "127.0.0.1", port {port} failed'),
    ],
)
def test_a_wrong_password_does_not_garble_the_message(
    scram_server: EmbeddedPostgres, cls: Any, password: str, shown: str
) -> None:
    conninfo = (
        f"host={scram_server.host} port={scram_server.port} user={scram_server.user}"
        f" dbname={scram_server.dbname} passfile=/dev/null password={password}"
    )
    error = request_error(cls, conninfo)
    assert "password authentication failed" in str(error)
    assert shown.format(port=scram_server.port) in str(error)
    assert MASK not in str(error)


# (conninfo, kwargs, a message about it, what must not show, what must show)
ScrubCase = tuple[str, "dict[str, Any] | None", str, list[str], list[str]]
SCRUB: dict[str, ScrubCase] = {
    "uri_at_sign_host": (
        "postgresql://u:Pa55@w0rd@db.example/app",
        None,
        "failed to resolve host 'w0rd@db.example': Name or service not known",
        ["Pa55", "w0rd"],
        ["host '", "@db.example'"],
    ),
    "uri_at_sign_echoed_whole": (
        "postgresql://u:Pa55@w0rd@db.example/app",
        None,
        'in URI: "postgresql://u:Pa55@w0rd@db.example/app"',
        ["Pa55", "w0rd"],
        ['"postgresql://u:', '@db.example/app"'],
    ),
    "uri_userinfo_percent_encoded": (
        "postgresql://u:p%40ss@db/app",
        None,
        "password p@ss, as given: postgresql://u:p%40ss@db/app",
        ["p@ss", "p%40ss"],
        ["@db/app"],
    ),
    "query_raw_percent": (
        "postgresql://u@db/app?password=pa%zzss&sslmode=require",
        None,
        'invalid percent-encoded token: "pa%zzss"',
        ["pa%zzss"],
        ["invalid percent-encoded token"],
    ),
    "query_unencoded_ampersand": (
        "postgresql://u@db/app?password=pa&ssw0rd&sslmode=require",
        None,
        'missing key/value separator "=" in URI query parameter: "ssw0rd"',
        ["ssw0rd"],
        ["URI query parameter"],
    ),
    "query_echoed": (
        "postgresql://u@db/app?password=s3cret&sslmode=require",
        None,
        "using postgresql://u@db/app?password=s3cret&sslmode=require",
        ["s3cret"],
        ["&sslmode=require"],
    ),
    "unquoted_space": (
        "host=db password=abc s3cret",
        None,
        'missing "=" after "s3cret" in connection info string',
        ["s3cret"],
        ['missing "=" after "'],
    ),
    "unquoted_space_then_equals": (
        "host=db password=abc s3cret=x1 sslmode=require",
        None,
        'invalid connection option "s3cret"',
        ["s3cret"],
        ["invalid connection option"],
    ),
    "echoed_as_another_option": (
        "host=db",
        {"password": "s3cret", "sslmode": "s3cret"},
        'invalid sslmode value: "s3cret"',
        ["s3cret"],
        ["sslmode"],
    ),
    "keyword_context_without_secrets": (
        "",
        None,
        "unrecognized arguments: host=db password=s3cret sslpassword='a b' PGPASSWORD=x9",
        ["s3cret", "a b", "x9"],
        ["host=db"],
    ),
    "password_equal_to_the_user": (
        "host=127.0.0.1 user=postgres password=postgres",
        None,
        'password authentication failed for user "postgres"',
        [],
        ['for user "postgres"'],
    ),
    "password_equal_to_the_user_in_kwargs": (
        "host=127.0.0.1",
        {"user": "app", "password": "app", "row_factory": object()},
        'database "app" does not exist',
        [],
        ['database "app"'],
    ),
    "password_inside_the_host": (
        "host=127.0.0.1 port=5432 password=1",
        None,
        'connection to server at "127.0.0.1", port 5432 failed: Connection refused',
        [],
        ['"127.0.0.1", port 5432'],
    ),
    "password_as_a_token": (
        "host=127.0.0.1 port=5432 password=1",
        None,
        "retrying: 1 (given)",
        ["1 "],
        ["retrying: "],
    ),
    "misspelled_keyword_before": (
        "hots=127.0.0.1 password=s3cret",
        None,
        'invalid connection option "hots"',
        [],
        ['"hots"'],
    ),
    "misspelled_keyword_after": (
        "host=db password=s3cret sslmdoe=require",
        None,
        'invalid connection option "sslmdoe"',
        [],
        ['"sslmdoe"'],
    ),
}


@pytest.mark.parametrize("case", list(SCRUB))
def test_scrub_masks_secrets_where_they_stand(case: str) -> None:
    conninfo, kwargs, message, hidden, shown = SCRUB[case]
    clean = scrub(message, secrets_of(conninfo, kwargs))
    assert [h for h in hidden if h in clean] == [], clean
    assert [s for s in shown if s not in clean] == [], clean
    assert describe(RuntimeError(message), secrets_of(conninfo, kwargs)) == clean


def test_secrets_of_lists_the_pieces_a_parser_splits_off() -> None:
    assert set(secrets_of("postgresql://u:a@b@c@db/app", None)) >= {"a@b@c", "a", "b", "c"}
    assert set(secrets_of("host=db password=abc def=x1 port=5", None)) >= {"abc", "def", "x1"}
    assert "5" not in secrets_of("host=db password=abc def=x1 port=5", None)
    assert set(secrets_of("host=db", {"password": "k1", "sslpassword": "k2"})) == {"k1", "k2"}
    assert secrets_of("host=db password='it\\'s quoted'", None) == ["it's quoted"]
    # A password equal to the user name is the user name's, in messages.
    assert secrets_of("user=postgres password=postgres", None) == []
    assert secrets_of("user=app password=postgres", None) == ["postgres"]
