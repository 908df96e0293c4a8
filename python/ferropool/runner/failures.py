"""Connection failures: which ones will not fix themselves, and logging them
without a flood.

A wrong password, an unknown role or database, a bad connection option
fail the same way on every attempt: retrying them fast only locks accounts
and trips intrusion detection, so the core backs off further for them
(`is_permanent`). A refused, reset or timed-out connection, or a server
shutting down, is retried fast: the pool must be back within half a second
of the server.

`FailureLog` logs the first failure of a kind at WARNING, counts identical
repeats and reports them at most once per `REPEAT_EVERY` seconds ("...
repeated 12 times"), and says once when connecting works again. Nothing
here may block or hold its lock while logging.
"""

from __future__ import annotations

import logging
import re
import threading
from time import monotonic

logger = logging.getLogger("ferropool")

# SQLSTATEs of errors no retry will fix: class 28 (invalid authorization:
# a wrong password, an unknown role), 3D000 (unknown database), 42704 (an
# unrecognised setting in `options`), 22023 (a setting's invalid value).
_PERMANENT_CLASSES = ("28",)
_PERMANENT = frozenset({"3D000", "42704", "22023"})

# Identical failures are summed up in one line at most this often.
REPEAT_EVERY = 60.0


# What the server says for the same errors, where libpq gives a failed
# connection no SQLSTATE (psycopg's connect errors carry none): the FATAL
# messages of PostgreSQL's English catalogue. A server speaking another
# language is retried as for a transient error: fast, never wrongly slow.
_PERMANENT_TEXTS = (
    "authentication failed for user",  # password, ident, peer, certificate
    "no pg_hba.conf entry for",
    "is not permitted to log in",
    "unrecognized configuration parameter",
    "invalid value for parameter",
)
_DOES_NOT_EXIST = re.compile(r'(role|database) ".*" does not exist')


def is_permanent(sqlstate: str | None, *, client_side: bool, message: str = "") -> bool:
    """Whether a failed connect will fail again however soon it is retried.
    *client_side*: the driver refused the connection parameters before
    reaching a server (a malformed conninfo, an unknown option); *message*:
    the error's text, for errors without a SQLSTATE."""
    if client_side:
        return True
    if sqlstate is not None:
        return sqlstate.startswith(_PERMANENT_CLASSES) or sqlstate in _PERMANENT
    return any(text in message for text in _PERMANENT_TEXTS) or bool(
        _DOES_NOT_EXIST.search(message)
    )


class FailureLog:
    """One pool's connection failures, as log lines a person can read."""

    def __init__(self, pool: str) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._message: str | None = None
        self._repeats = 0
        self._failures = 0
        self._reported_at = 0.0

    def failed(self, message: str) -> None:
        """Log a failed attempt: a new error at once, repeats in summary."""
        now = monotonic()
        with self._lock:
            self._failures += 1
            if message == self._message:
                self._repeats += 1
                if now - self._reported_at < REPEAT_EVERY:
                    return
                repeats, self._repeats, self._reported_at = self._repeats, 0, now
            else:
                repeats = 0
                self._message, self._repeats, self._reported_at = message, 0, now
        if repeats:
            logger.warning(
                "error connecting in %r: %s (repeated %d times in %.0f s)",
                self._pool,
                message,
                repeats,
                REPEAT_EVERY,
            )
        else:
            logger.warning("error connecting in %r: %s", self._pool, message)

    def succeeded(self) -> None:
        """A connection was opened: say so once after a run of failures."""
        with self._lock:
            if not self._failures:
                return
            failures, last = self._failures, self._message
            self._failures, self._repeats, self._message = 0, 0, None
        logger.warning(
            "pool %r connected again after %d failed attempts (last error: %s)",
            self._pool,
            failures,
            last,
        )
