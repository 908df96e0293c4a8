"""Keeping passwords out of messages.

libpq's own errors do not echo passwords, but a malformed conninfo string
can make it quote fragments of the string back ("missing "=" after ..."),
and user callbacks may format anything. Every message the pool logs or
raises about connecting goes through ``scrub`` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "********"

# password=value, password='quoted value', and URI userinfo user:secret@
_KEYWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URI = re.compile(r"(://[^:/@\s]*:)([^@\s]+)(@)")


def secrets_of(conninfo: str, kwargs: Mapping[str, Any] | None) -> list[str]:
    """Password values found in a conninfo string and connect kwargs."""
    found: list[str] = []
    if kwargs and isinstance(kwargs.get("password"), str):
        found.append(kwargs["password"])
    for m in _KEYWORD.finditer(conninfo):
        found.append(m.group(2).strip("'"))
        if not m.group(2).startswith("'"):
            # An unquoted value with a space: libpq reads the next words as
            # keywords and may quote them back ("missing = after ..."). They
            # are part of the password until the next real keyword=value.
            for word in conninfo[m.end() :].split():
                if "=" in word:
                    break
                found.append(word)
    for m in _URI.finditer(conninfo):
        found.append(m.group(2))
    return [s for s in found if s]


def describe(ex: BaseException, secrets: Iterable[str] = ()) -> str:
    """An exception as a one-line message safe to log and raise."""
    return scrub(str(ex).strip() or ex.__class__.__name__, secrets)


def scrub(message: str, secrets: Iterable[str] = ()) -> str:
    """``message`` with known secrets and anything shaped like one masked."""
    for s in sorted(set(secrets), key=len, reverse=True):
        message = message.replace(s, MASK)
    message = _KEYWORD.sub(lambda m: m.group(1) + MASK, message)
    return _URI.sub(lambda m: m.group(1) + MASK + m.group(3), message)
