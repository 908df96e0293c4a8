"""The ``server=`` pool option: what the pool's connections point at.

A pool in front of PostgreSQL may talk to it directly ("postgresql", the
default) or through PgBouncer. In PgBouncer's session mode a client keeps one
server connection for its whole life, so everything works as against
PostgreSQL. In transaction mode consecutive transactions of one client run on
whichever server connection is free, so nothing may outlive a transaction:

* psycopg's server-side prepared statements (a query run more than
  ``prepare_threshold`` times is prepared on one server connection and then
  executed on another: "prepared statement _pg3_0 does not exist") are turned
  off with the connect argument ``prepare_threshold=None``;
* ``reset="discard"`` (DISCARD ALL) would run on some other client's server
  connection: refused at construction;
* a ``configure`` callback that sets session state (SET, LISTEN, temporary
  tables, advisory locks) configures one server connection out of many:
  warned about at construction, with `SessionStateWarning`, unless the
  callback is marked `transaction_safe`.

The pool's own liveness and keepalive pings (an empty query) and
``check_connection`` hold nothing across transactions and work in every
mode. This module must never do I/O: it validates options and adjusts
connect arguments.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "SERVERS",
    "SessionStateWarning",
    "transaction_safe",
]

POSTGRESQL = "postgresql"
PGBOUNCER_TRANSACTION = "pgbouncer-transaction"
PGBOUNCER_SESSION = "pgbouncer-session"
SERVERS = (POSTGRESQL, PGBOUNCER_TRANSACTION, PGBOUNCER_SESSION)

F = TypeVar("F", bound=Callable[..., Any])

_SAFE_MARK = "_ferropool_transaction_safe"


class SessionStateWarning(UserWarning):
    """A feature that needs session state was asked of a pool behind
    PgBouncer in transaction mode, where sessions are not kept."""


def transaction_safe(fn: F) -> F:
    """Mark a ``configure`` callback as leaving no session state behind.

    For callbacks that only set client-side attributes (adapters, row
    factories, ``conn.read_only``) or run queries without lasting effect:
    a pool with ``server="pgbouncer-transaction"`` then does not warn.
    """
    setattr(fn, _SAFE_MARK, True)
    return fn


def is_transaction_safe(fn: object) -> bool:
    return bool(getattr(fn, _SAFE_MARK, False))


def server_option(value: object, *, reset: object, configure: object, stacklevel: int) -> str:
    """Validate ``server=`` against the other options; warn or raise for
    those that cannot work behind PgBouncer in transaction mode."""
    if not isinstance(value, str):
        raise TypeError(f"server must be one of {SERVERS}, got {value!r} ({type(value).__name__})")
    if value not in SERVERS:
        raise ValueError(f"server must be one of {SERVERS}, got {value!r}")
    if value != PGBOUNCER_TRANSACTION:
        return value
    if reset == "discard":
        raise ValueError(
            f"reset='discard' cannot work with server={value!r}: DISCARD ALL would run on"
            " whichever server connection PgBouncer picks, not on the session that made"
            " the state; let PgBouncer reset server connections (server_reset_query) or"
            " use server='pgbouncer-session'"
        )
    if configure is not None and not is_transaction_safe(configure):
        warnings.warn(
            f"configure callback with server={value!r}: PgBouncer runs each transaction on"
            " any server connection, so session state set by configure (SET, LISTEN,"
            " temporary tables, advisory locks) does not follow the connection. Set it per"
            " transaction (SET LOCAL), in PgBouncer's connect_query or with ALTER ROLE ..."
            " SET; mark a callback that sets no session state with"
            " @ferropool.pgbouncer.transaction_safe",
            SessionStateWarning,
            stacklevel=stacklevel,
        )
    return value


def connect_kwargs(server: str, kwargs: dict[str, Any]) -> None:
    """Adjust connect arguments in place for *server*: in transaction mode,
    no server-side prepared statements unless the caller chose a
    prepare_threshold (PgBouncer >= 1.21 with max_prepared_statements
    supports protocol-level prepared statements)."""
    if server == PGBOUNCER_TRANSACTION:
        kwargs.setdefault("prepare_threshold", None)
