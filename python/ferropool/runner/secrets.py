"""Keeping passwords out of messages, and only passwords.

libpq's own errors do not echo passwords, but a malformed connection string
makes a parser split a password and quote a piece of it back: the rest of
an unquoted password with a space ('missing "=" after "rest"'), the part of
a URI password after an unencoded ``@`` (it becomes the host: "failed to
resolve host 'rest@db'"), a password with a raw ``%`` in a URI query
('invalid percent-encoded token: "pa%ss"'). User callbacks may format
anything. Every message the pool logs or raises about connecting goes
through ``scrub`` first.

A secret is masked where it stands as a secret: after ``password=`` (in a
conninfo string or a URI query), in a URI's userinfo, and wherever its text,
or a piece a parser could split off it, stands as a whole token, between the
characters connection-string parsers split at and the quotes libpq puts
around what it echoes. Never inside other text: with ``password=1`` the host
``127.0.0.1`` stays readable, and a password equal to the user name (the
classic postgres/postgres) does not hide the user name, which messages show
anyway. This module must never return or log a secret it was given.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

MASK = "********"

# Parameters whose values are secrets, in kwargs.
_SECRET_KEYS = ("password", "sslpassword")
# Parameters naming what a connection is (messages show them): a password
# equal to one of them is shown with it.
_IDENTITY_KEYS = ("user", "dbname", "host", "hostaddr", "port")

# conninfo keyword=value: password=value, password = 'quoted value'; also
# sslpassword, PGPASSWORD=... (not within a URI query: see _QUERY).
_KEYWORD = re.compile(r"(?<![?&\w])(\w*password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# URI query: ?password=value&next=... (the value ends at & or #).
_QUERY = re.compile(r"([?&]\w*password=)([^&#\s'\"]*)", re.IGNORECASE)
# URI userinfo: scheme://user:secret@host. The secret runs to the last "@"
# before the host (an unencoded "@" in a password is a common mistake),
# that is to an "@" followed by a host part: no other "@" before the
# path, query, a quote, a space or the end.
_URI = re.compile(r"(\w[\w+.-]*://[^:/\s'\"]*:)([^\s'\"/]*?)(@)(?=[^@/?#\s'\"]*(?:[/?#\s'\"]|$))")
# Where connection-string parsers split, and the quotes libpq echoes
# within: a secret or a piece of one is masked only as a whole token
# between these (or the ends of the message), never inside other text.
_SPLIT = r"\s'\"`=@:/?&#,;()\[\]<>\\"
_OPTION = re.compile(r"([A-Za-z_]\w*)\s*=")


@functools.cache
def _defaults() -> tuple[frozenset[str], dict[str, str]]:
    """libpq's option names, and its defaults for the identity options."""
    try:
        options = psycopg.pq.Conninfo.get_defaults()
    except Exception:
        return frozenset(), {}
    names = frozenset(o.keyword.decode() for o in options)
    defaults = {
        o.keyword.decode(): o.val.decode("utf-8", "replace")
        for o in options
        if o.keyword.decode() in _IDENTITY_KEYS and o.val
    }
    return names, defaults


def _is_option(word: str) -> bool:
    """*word* starts a libpq option (``sslmode=...``), or a near miss of
    one (``sslmdoe=...``, a typo rather than a piece of a password)."""
    m = _OPTION.match(word)
    if m is None:
        return False
    names, _ = _defaults()
    key = m.group(1).lower()
    return key in names or bool(difflib.get_close_matches(key, names, n=1, cutoff=0.75))


def _pieces(word: str) -> list[str]:
    """*word* and what a parser splitting it at "=" or unquoting it would quote."""
    pieces = [word, word.strip("'"), *word.split("=")]
    return [p for p in pieces if p]


def _decoded(value: str) -> list[str]:
    """A URI part and, if it differs, its percent-decoded text."""
    try:
        text = unquote(value, errors="strict")
    except UnicodeDecodeError:
        return [value]
    return [value] if text == value else [value, text]


def _spilled(rest: Iterable[str]) -> list[str]:
    """Words following an unquoted password that are part of it as its
    author meant it, up to the next option: a parser reads them as
    options or values of their own, and may quote them back."""
    found: list[str] = []
    for word in rest:
        if _is_option(word):
            break
        found += _pieces(word)
    return found


def secrets_of(conninfo: str, kwargs: Mapping[str, Any] | None) -> list[str]:
    """The secrets of a conninfo string and connect kwargs: password values
    and the pieces a parser could split off them, less a password equal to
    the user, database, host or port the connection is known by."""
    found: list[str] = []
    for key in _SECRET_KEYS:
        value = kwargs.get(key) if kwargs else None
        if isinstance(value, str):
            found.append(value)
    for m in _KEYWORD.finditer(conninfo):
        value = m.group(2)
        if value.startswith("'"):
            found.append(re.sub(r"\\(.)", r"\1", value[1:-1]))
        else:
            found.append(value)
            found += _spilled(conninfo[m.end() :].split())
    for m in _QUERY.finditer(conninfo):
        found += _decoded(m.group(2))
        found += _spilled(conninfo[m.end() :].split("#")[0].split("&")[1:])
    for m in _URI.finditer(conninfo):
        secret = m.group(2)
        found += _decoded(secret)
        if "@" in secret:
            found += [p for p in secret.split("@") if p]
    innocent = _innocent(conninfo, kwargs)
    return [s for s in dict.fromkeys(found) if s and s not in innocent]


def _innocent(conninfo: str, kwargs: Mapping[str, Any] | None) -> set[str]:
    """The password as libpq reads it, if it equals what the connection is
    known by (its user, database, host or port): messages name those, and
    masking them would show which one the password is."""
    names, defaults = _defaults()
    options = {k: v for k, v in (kwargs or {}).items() if k in names and v is not None}
    try:
        params = conninfo_to_dict(conninfo, **options)
    except Exception:
        return set()  # malformed: libpq may quote any piece of it
    password = params.get("password")
    if not isinstance(password, str) or not password:
        return set()
    known: set[str] = set()
    for key in _IDENTITY_KEYS:
        value = params.get(key, defaults.get(key))
        if value is not None:
            known.update(str(value).split(","))
    if "dbname" not in params and "user" in params:
        known.add(str(params["user"]))  # libpq's default database
    return {password} if password in known else set()


def describe(ex: BaseException, secrets: Iterable[str] = ()) -> str:
    """An exception as a one-line message safe to log and raise."""
    return scrub(str(ex).strip() or ex.__class__.__name__, secrets)


def scrub(message: str, secrets: Iterable[str] = ()) -> str:
    """``message`` with passwords masked where they stand as passwords: after
    ``password=``, in a URI's userinfo, and the given *secrets* (from
    `secrets_of`) where they stand as whole tokens."""
    message = _KEYWORD.sub(lambda m: m.group(1) + MASK, message)
    message = _QUERY.sub(lambda m: m.group(1) + MASK, message)
    message = _URI.sub(lambda m: m.group(1) + MASK + m.group(3), message)
    tokens = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not tokens:
        return message
    alternatives = "|".join(re.escape(s) for s in tokens)
    standing = re.compile(rf"(?<![^{_SPLIT}])(?:{alternatives})(?![^{_SPLIT}])")
    return standing.sub(MASK, message)
