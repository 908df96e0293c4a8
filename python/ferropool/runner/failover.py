"""Which errors mean the server is going away or changed role.

After such an error every connection opened before it is suspect: the
server shut down, restarted, was failed over, or was promoted/demoted. The
pool then retires all of them at once (idle ones now, lent ones when they
come back), instead of discovering them dead one request at a time.
"""

from __future__ import annotations

# Class 08: connection exceptions. 57P01 admin_shutdown (also what
# pg_terminate_backend sends), 57P02 crash_shutdown, 57P03 cannot_connect_now.
_SHUTDOWN = frozenset({"57P01", "57P02", "57P03"})
# 25006 read_only_sql_transaction: a write reached a standby.
_READ_ONLY = "25006"

# libpq's texts for the same events, for connections that broke without a
# psycopg exception reaching the pool (returned with putconn()).
_SHUTDOWN_TEXTS = (
    "terminating connection due to administrator command",
    "terminating connection because of crash of another server process",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
)


def is_failover_sqlstate(sqlstate: str | None, *, expect_primary: bool) -> bool:
    """True if an error with *sqlstate* says the server went away or changed role."""
    if sqlstate is None:
        return False
    if sqlstate.startswith("08") or sqlstate in _SHUTDOWN:
        return True
    return expect_primary and sqlstate == _READ_ONLY


def is_failover_message(message: str) -> bool:
    """True if a broken connection's last libpq error is a shutdown."""
    return any(text in message for text in _SHUTDOWN_TEXTS)
