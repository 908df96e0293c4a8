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

`DbapiDriver` is what the runner talks to (ferropool.runner.driver's
protocol): it connects with the user's ``connect()`` and answers through the
profile of the connections' driver. Everything here reads attributes the
driver keeps in memory: no function may send anything to the server except
``ping``, ``rollback`` and ``commit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

from ..runner.failover import is_failover_message
from ..runner.ping import ping
from ..runner.psycopg_driver import PsycopgDriver
from ..runner.status import Status
from ..sizing import ServerBudget

logger = logging.getLogger("ferropool")

C = TypeVar("C")

# libpq's PQtransactionStatus values, shared by psycopg2 and psycopg 3.
_LIBPQ = {
    0: Status.IDLE,
    1: Status.ACTIVE,
    2: Status.INTRANS,
    3: Status.INERROR,
    4: Status.BROKEN,  # UNKNOWN: the connection is bad
}


@dataclass(frozen=True)
class Profile:
    """How the pool reads and resets one DB-API driver's connections."""

    name: str
    status: Callable[[Any], Status]
    socket: Callable[[Any], int | None]
    ping: Callable[[Any], None]
    rollback: Callable[[Any], None]

    # The connection's last server error text, where the driver keeps one.
    error_message: Callable[[Any], str] = lambda conn: ""

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


def _libpq_error(conn: Any) -> str:
    pgconn = getattr(conn, "pgconn", None)
    if pgconn is not None:  # psycopg 3
        message = pgconn.error_message
        return message.decode("utf-8", "replace") if isinstance(message, bytes) else ""
    info = getattr(conn, "info", None)  # psycopg2 >= 2.8
    message = getattr(info, "error_message", None)
    return message if isinstance(message, str) else ""


PSYCOPG2 = Profile(
    name="psycopg2",
    status=_psycopg2_status,
    socket=_fileno,
    ping=lambda conn: _select_one(conn, _psycopg2_status),
    rollback=_psycopg2_rollback,
    error_message=_libpq_error,
)


# ---- psycopg 3 ----------------------------------------------------------


# psycopg 3 connections read as the psycopg driver of ConnectionPool reads them.
PSYCOPG = Profile(
    name="psycopg",
    status=PsycopgDriver.status,
    socket=PsycopgDriver.socket,
    ping=ping,
    rollback=_plain_rollback,
    error_message=_libpq_error,
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


PG8000 = Profile(
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


PYMYSQL = Profile(
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


SQLITE3 = Profile(
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


GENERIC = Profile(
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


def detect(conn: Any) -> Profile:
    """The profile for *conn*'s driver, from the module of its class (or a
    base class: drivers allow connection subclasses)."""
    for klass in type(conn).__mro__:
        top = klass.__module__.partition(".")[0]
        driver = _BY_MODULE.get(top)
        if driver is not None:
            return driver
    return GENERIC


def resolve(driver: str | Profile | None) -> Profile | None:
    """A `driver` argument: a profile, a name from DRIVERS, or None (detect)."""
    if driver is None or isinstance(driver, Profile):
        return driver
    if isinstance(driver, str):
        try:
            return DRIVERS[driver]
        except KeyError:
            raise ValueError(
                f"driver must be one of {sorted(DRIVERS)} or a Profile, got {driver!r}"
            ) from None
    raise TypeError(f"driver must be a str, a Profile or None, got {type(driver).__name__}")


class DbapiDriver(Generic[C]):
    """The runner's driver for DB-API connections opened by ``connect()``."""

    marks_connections = False

    def __init__(
        self, connect: Callable[[], C], profile: Profile | None, secrets: list[str]
    ) -> None:
        if not callable(connect):
            raise TypeError(f"connect must be callable, got {type(connect).__name__}")
        self._connect = connect
        # Detected from the first connection when not given.
        self.profile = profile
        self._secrets = [s for s in secrets if s]

    def _profile(self, conn: Any) -> Profile:
        profile = self.profile
        if profile is None:
            profile = self.profile = detect(conn)
        return profile

    def status(self, conn: C) -> Status:
        return self._profile(conn).status(conn)

    def socket(self, conn: C) -> int | None:
        return self._profile(conn).socket(conn)

    def lend(self, conn: C, owner: object | None) -> None:
        """DB-API connections carry no mark (many cannot take attributes)."""

    def lender(self, conn: C) -> object | None:
        return None

    def set_block(self, conn: C, block: object | None) -> None:
        """DB-API connections are never given back inside their block."""

    def block_of(self, conn: C) -> object | None:
        return None

    def describe(self, conn: C) -> str:
        return f"<{type(conn).__module__}.{type(conn).__name__} [{self.status(conn).name}]>"

    @staticmethod
    def sqlstate(exc: BaseException) -> str | None:
        # psycopg 3 and pg8000 name it sqlstate; psycopg2 pgcode.
        for attr in ("sqlstate", "pgcode"):
            value = getattr(exc, attr, None)
            if isinstance(value, str):
                return value
        return None

    def server_gone(self, conn: C) -> bool:
        try:
            return is_failover_message(self._profile(conn).error_message(conn))
        except Exception:
            return False

    @staticmethod
    def is_connect_timeout(exc: BaseException) -> bool:
        return False

    def secrets(self) -> list[str]:
        return self._secrets

    def connect(self, timeout: float | None) -> C:
        conn = self._connect()
        self._profile(conn)
        return conn

    def ping(self, conn: C) -> None:
        self._profile(conn).ping(conn)

    def rollback(self, conn: C) -> None:
        self._profile(conn).rollback(conn)

    @staticmethod
    def commit(conn: Any) -> None:
        conn.commit()

    def remember_session(self, conn: C) -> None:
        """Nothing to note: DB-API pools reset with a callback only."""

    def discard_session(self, conn: C) -> NoReturn:
        raise NotImplementedError("DB-API pools reset with a callback, not reset='discard'")

    def read_budget(self) -> ServerBudget:
        raise NotImplementedError("DB-API pools cannot read a server budget")

    def close(self, conn: C) -> None:
        try:
            conn.close()  # type: ignore[attr-defined]
        except Exception as ex:
            logger.debug("error closing connection: %s", ex.__class__.__name__)

    def abort(self, conn: C) -> None:
        self.close(conn)
