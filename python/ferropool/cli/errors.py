"""Errors the command line reports as one line and exit status 2.

A CliError is a problem the user can fix (a bad DSN, a server that is not
there, a missing package), so it is shown without a traceback. Its message
must never hold a password: build it with ``safe_message``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..runner.secrets import scrub

__all__ = ["CliError", "safe_message"]


class CliError(Exception):
    """An error shown to the user as one line, exit status 2."""


def safe_message(error: BaseException, secrets: Iterable[str] = ()) -> str:
    """*error* as a single line with passwords masked."""
    text = str(error).strip() or type(error).__name__
    # libpq spreads one error over several lines ("...failed: Connection
    # refused\n\tIs the server running..."): join them.
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return scrub(text, secrets)
