"""What the pool must know about a DB-API driver, and nothing more.

A pool on a DB-API driver needs four answers about a connection: is it in a
transaction (so it must be rolled back before anyone else borrows it), is
it broken (so it must be discarded), which socket does it read (so the core
can poll an idle connection for a server hang-up at no round trip), and how
to ping it. Drivers answer differently, and some cannot answer the first
question at all without a round trip:

==========  ==========================================  ======================
driver      transaction state                           return of an idle conn
==========  ==========================================  ======================
psycopg2    ``conn.info.transaction_status`` (libpq)    free
psycopg 3   ``conn.pgconn.transaction_status`` (libpq)  free
pg8000      the ReadyForQuery status it tracks          free (its rollback()
            (``_in_transaction``, which its own         skips the round trip
            ``rollback()`` consults)                    too)
sqlite3     ``conn.in_transaction``                     free
PyMySQL     none reliable: ``server_status`` is only    one ``ROLLBACK`` round
            refreshed by OK packets, so after           trip per return
            ``SELECT ... FOR UPDATE`` under
            autocommit=0 it still says "no
            transaction" while row locks are held
other       none: UNKNOWN                               one ``rollback()``
==========  ==========================================  ======================

Everything here reads attributes the driver keeps in memory: no function
may send anything to the server except ``ping`` and ``rollback``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Status(enum.IntEnum):
    """A returned connection's state, as far as the driver can tell."""

    IDLE = 0  # no transaction open: check it in as it is
    ACTIVE = 1  # a command still running: it cannot be reused
    INTRANS = 2  # in a transaction, or a failed one: roll back first
    BROKEN = 3  # closed, or the server connection is lost: discard
    UNKNOWN = 4  # the driver cannot tell: roll back to be safe


# libpq's PQtransactionStatus values, shared by psycopg2 and psycopg 3.
_LIBPQ = {
    0: Status.IDLE,
    1: Status.ACTIVE,
    2: Status.INTRANS,
    3: Status.INTRANS,  # INERROR: a failed transaction, still to roll back
    4: Status.BROKEN,  # UNKNOWN: the connection is bad
}


@dataclass(frozen=True)
class Driver:
    """How the pool reads and resets one driver's connections."""

    name: str
    status: Callable[[Any], Status]
    socket: Callable[[Any], int | None]
    ping: Callable[[Any], None]
    rollback: Callable[[Any], None]

    def __repr__(self) -> str:
        return f"<ferropool driver profile {self.name!r}>"


def _fileno(conn: Any) -> int | None:
    fileno = getattr(conn, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except Exception:
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _sock_fileno(sock: Any) -> int | None:
    return None if sock is None else _fileno(sock)


def _select_one(conn: Any, driver_status: Callable[[Any], Status]) -> None:
    """Ping with ``SELECT 1``; end the transaction it may have opened."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT 1")
        cur.fetchall()
    finally:
        cur.close()
    if driver_status(conn) != Status.IDLE:
        conn.rollback()


def _plain_rollback(conn: Any) -> None:
    conn.rollback()


# ---- psycopg2 -----------------------------------------------------------


def _psycopg2_status(conn: Any) -> Status:
    if conn.closed:
        return Status.BROKEN
    # get_transaction_status() is conn.info.transaction_status without
    # building an info object (17 ns instead of 90).
    return _LIBPQ.get(conn.get_transaction_status(), Status.BROKEN)


def _psycopg2_rollback(conn: Any) -> None:
    # psycopg2 skips rollback() in autocommit mode, even when a BEGIN sent
    # by hand left the server in a transaction: send the ROLLBACK itself.
    if conn.autocommit:
        with conn.cursor() as cur:
            cur.execute("ROLLBACK")
    else:
        conn.rollback()


PSYCOPG2 = Driver(
    name="psycopg2",
    status=_psycopg2_status,
    socket=_fileno,
    ping=lambda conn: _select_one(conn, _psycopg2_status),
    rollback=_psycopg2_rollback,
)


# ---- psycopg 3 ----------------------------------------------------------


def _psycopg_status(conn: Any) -> Status:
    if conn.closed:
        return Status.BROKEN
    return _LIBPQ.get(conn.pgconn.transaction_status, Status.BROKEN)


def _psycopg_socket(conn: Any) -> int | None:
    try:
        fd = conn.pgconn.socket
    except Exception:
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _psycopg_ping(conn: Any) -> None:
    from .._ping import ping

    ping(conn)


PSYCOPG = Driver(
    name="psycopg",
    status=_psycopg_status,
    socket=_psycopg_socket,
    ping=_psycopg_ping,
    rollback=_plain_rollback,
)


# ---- pg8000 -------------------------------------------------------------


def _pg8000_status(conn: Any) -> Status:
    # pg8000 sets _usock to None when closed, and records the status byte of
    # every ReadyForQuery in _transaction_status; its own rollback() and
    # cursor.execute() decide from _in_transaction.
    if getattr(conn, "_usock", None) is None:
        return Status.BROKEN
    in_transaction = getattr(conn, "_in_transaction", None)
    if not isinstance(in_transaction, bool):
        return Status.UNKNOWN
    return Status.INTRANS if in_transaction else Status.IDLE


PG8000 = Driver(
    name="pg8000",
    status=_pg8000_status,
    socket=lambda conn: _sock_fileno(getattr(conn, "_usock", None)),
    ping=lambda conn: _select_one(conn, _pg8000_status),
    rollback=_plain_rollback,
)


# ---- PyMySQL ------------------------------------------------------------


def _pymysql_status(conn: Any) -> Status:
    # `open` is False once PyMySQL dropped the socket (closed, or a network
    # error). Its server_status is not trusted for transactions: see above.
    return Status.UNKNOWN if conn.open else Status.BROKEN


def _pymysql_ping(conn: Any) -> None:
    conn.ping(reconnect=False)


PYMYSQL = Driver(
    name="pymysql",
    status=_pymysql_status,
    socket=lambda conn: _sock_fileno(getattr(conn, "_sock", None)),
    ping=_pymysql_ping,
    rollback=_plain_rollback,
)


# ---- sqlite3 ------------------------------------------------------------


def _sqlite3_status(conn: Any) -> Status:
    try:
        return Status.INTRANS if conn.in_transaction else Status.IDLE
    except Exception:  # ProgrammingError: closed
        return Status.BROKEN


SQLITE3 = Driver(
    name="sqlite3",
    status=_sqlite3_status,
    socket=lambda conn: None,
    ping=lambda conn: _select_one(conn, _sqlite3_status),
    rollback=_plain_rollback,
)


# ---- anything else --------------------------------------------------------


def _generic_status(conn: Any) -> Status:
    closed = getattr(conn, "closed", False)
    if closed is True or (isinstance(closed, int) and not isinstance(closed, bool) and closed):
        return Status.BROKEN
    return Status.UNKNOWN


GENERIC = Driver(
    name="generic",
    status=_generic_status,
    socket=_fileno,
    ping=lambda conn: _select_one(conn, _generic_status),
    rollback=_plain_rollback,
)


_BY_MODULE = {
    "psycopg2": PSYCOPG2,
    "psycopg": PSYCOPG,
    "pg8000": PG8000,
    "pymysql": PYMYSQL,
    "sqlite3": SQLITE3,
}

DRIVERS = {d.name: d for d in (*_BY_MODULE.values(), GENERIC)}


def detect(conn: Any) -> Driver:
    """The profile for *conn*'s driver, from the module of its class (or a
    base class: drivers allow connection subclasses)."""
    for klass in type(conn).__mro__:
        top = klass.__module__.partition(".")[0]
        driver = _BY_MODULE.get(top)
        if driver is not None:
            return driver
    return GENERIC


def resolve(driver: str | Driver | None) -> Driver | None:
    """A `driver` argument: a profile, a name from DRIVERS, or None (detect)."""
    if driver is None or isinstance(driver, Driver):
        return driver
    if isinstance(driver, str):
        try:
            return DRIVERS[driver]
        except KeyError:
            raise ValueError(
                f"driver must be one of {sorted(DRIVERS)} or a Driver, got {driver!r}"
            ) from None
    raise TypeError(f"driver must be a str, a Driver or None, got {type(driver).__name__}")
