"""The masking functions and the secret watch, without a pool.

scrub, describe and secrets_of (ferropool.runner.secrets) mask a password
where it stands as a password in a message, and only there; the cases are
messages libpq, psycopg and ferropool really write. SecretWatch
(tests/fixtures/reliability.py) is what the fault and secrets scenarios
rely on to find a leak: its own test shows it finds one. The same
behaviour through the pools, sync and async, is test_secrets_async.py and
its generated twin test_secrets.py.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pytest

from ferropool.runner.secrets import describe, scrub, secrets_of
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


# ---- scrub, describe, secrets_of ------------------------------------------------

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
