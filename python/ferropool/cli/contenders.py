"""The contenders a benchmark compares, each opened the same way.

Four ways for an application to get a connection: open a new one per
request, psycopg_pool, SQLAlchemy's QueuePool, and ferropool. All get the
same conninfo and size, are filled before any timing starts and closed
afterwards, and are driven through the same three methods (``Pool`` in
workloads), so no loop favours one. Each tags its connections with an
application_name of its own, so that the server can tell whose backends it
holds. The optional packages (psycopg_pool, SQLAlchemy) are imported only
when a contender needs them.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Final, Literal

import psycopg
from psycopg.conninfo import make_conninfo

from .errors import CliError
from .workloads import Pool

__all__ = [
    "CONTENDERS",
    "FERROPOOL",
    "NEW_CONNECTION",
    "POOL_KINDS",
    "PSYCOPG_POOL",
    "SQLALCHEMY",
    "ContenderKind",
    "NewConnectionPerRequest",
    "PoolKind",
    "application_name",
    "configuration",
    "open_contender",
    "open_pool",
    "require",
]

ContenderKind = Literal[
    "new connection per request", "psycopg_pool", "SQLAlchemy QueuePool", "ferropool"
]
PoolKind = Literal["ferropool", "psycopg_pool"]

# No pool at all: what each request pays without one.
NEW_CONNECTION: Final = "new connection per request"
PSYCOPG_POOL: Final = "psycopg_pool"
SQLALCHEMY: Final = "SQLAlchemy QueuePool"
FERROPOOL: Final = "ferropool"
CONTENDERS: Final[tuple[ContenderKind, ...]] = (NEW_CONNECTION, PSYCOPG_POOL, SQLALCHEMY, FERROPOOL)
# The two the pytest-benchmark suite compares.
POOL_KINDS: Final[tuple[PoolKind, ...]] = (FERROPOOL, PSYCOPG_POOL)

APPLICATION_NAME_PREFIX: Final = "ferropool-bench/"
_SLUGS: Final = {
    NEW_CONNECTION: "new-connection",
    PSYCOPG_POOL: "psycopg_pool",
    SQLALCHEMY: "sqlalchemy",
    FERROPOOL: "ferropool",
}

# Filling a pool of 16 over SCRAM and TLS takes well under a second; a pool
# not ready after this long means the server is in trouble.
_FILL_TIMEOUT = 60.0

# pip distribution of each optional module the bench may need.
_DISTRIBUTIONS: Final = {
    "psycopg_pool": "psycopg-pool",
    "sqlalchemy": "sqlalchemy",
    "waitress": "waitress",
    "matplotlib": "matplotlib",
}


def require(module: str, needed_for: str, alternative: str = "") -> None:
    """Raise CliError naming the pip command if *module* is not installed."""
    if importlib.util.find_spec(module) is None:
        dist = _DISTRIBUTIONS.get(module, module)
        raise CliError(
            f"{module} is needed for {needed_for} and is not installed: "
            f"pip install {dist} (or pip install 'ferropool[bench]')"
            + (f"; or {alternative}" if alternative else "")
        )


def application_name(kind: str) -> str:
    """The application_name a contender's connections carry at the server."""
    return APPLICATION_NAME_PREFIX + _SLUGS.get(kind, kind)


def configuration(kind: ContenderKind, *, safe: bool = False) -> str:
    """How *kind* is set up, in its own API's words, for the report."""
    if kind == NEW_CONNECTION:
        return "psycopg.connect() and close() per request"
    if not safe:
        return "default configuration"
    if kind == PSYCOPG_POOL:
        return "check=ConnectionPool.check_connection"
    if kind == SQLALCHEMY:
        return "pre_ping=True"
    return "default configuration"


@contextmanager
def open_contender(
    kind: ContenderKind,
    conninfo: str,
    size: int,
    *,
    safe: bool = False,
    max_open: int | None = None,
) -> Iterator[Pool]:
    """An open contender holding *size* ready connections (min_size = max_size).

    *safe* turns on the liveness check each pool offers at checkout (none
    for ferropool: its default configuration is what is measured). For a
    new connection per request, *max_open* bounds how many exist at once,
    as the pools' size bounds theirs.
    """
    tagged = make_conninfo(conninfo, application_name=application_name(kind))
    if kind == NEW_CONNECTION:
        yield NewConnectionPerRequest(tagged, max_open)
    elif kind == FERROPOOL:
        with _ferropool(tagged, size) as pool:
            yield pool
    elif kind == PSYCOPG_POOL:
        with _psycopg_pool(tagged, size, safe) as pool:
            yield pool
    elif kind == SQLALCHEMY:
        with _sqlalchemy(tagged, size, safe) as pool:
            yield pool
    else:
        raise ValueError(f"unknown contender {kind!r}")


def open_pool(kind: PoolKind, conninfo: str, size: int) -> AbstractContextManager[Pool]:
    """An open ferropool or psycopg_pool of *size* ready connections (for benches/)."""
    return open_contender(kind, conninfo, size)


@contextmanager
def _ferropool(conninfo: str, size: int) -> Iterator[Pool]:
    import ferropool

    pool = ferropool.ConnectionPool(
        conninfo, min_size=size, max_size=size, open=False, name="bench-ferropool"
    )
    pool.open(wait=True, timeout=_FILL_TIMEOUT)
    try:
        yield pool
    finally:
        pool.close()


@contextmanager
def _psycopg_pool(conninfo: str, size: int, safe: bool) -> Iterator[Pool]:
    import psycopg_pool

    pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
        conninfo,
        min_size=size,
        max_size=size,
        open=False,
        name="bench-psycopg_pool",
        check=psycopg_pool.ConnectionPool.check_connection if safe else None,
    )
    pool.open(wait=True, timeout=_FILL_TIMEOUT)
    try:
        yield pool
    finally:
        pool.close()


@contextmanager
def _sqlalchemy(conninfo: str, size: int, safe: bool) -> Iterator[Pool]:
    from sqlalchemy.pool import QueuePool

    options: dict[str, Any] = {}
    if safe:
        # A bare pool has no dialect to ping with; the psycopg dialect is
        # what an Engine would pass (its ping is the empty statement ";").
        from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

        options = {"pre_ping": True, "dialect": PGDialect_psycopg()}  # type: ignore[no-untyped-call]

    def creator() -> Any:  # SQLAlchemy's DBAPIConnection protocol, which psycopg's fits
        return psycopg.connect(conninfo)

    pool = QueuePool(creator, pool_size=size, max_overflow=0, **options)
    try:
        # QueuePool connects lazily: borrow every connection once to fill it.
        for fairy in [pool.connect() for _ in range(size)]:
            fairy.close()
        yield SQLAlchemyPool(pool)
    finally:
        pool.dispose()


class SQLAlchemyPool:
    """SQLAlchemy's QueuePool through the methods the loops use.

    The loops get the psycopg connection itself, not SQLAlchemy's proxy
    (whose attribute access goes through ``__getattr__``): an application
    using the pool directly would do the same. On return QueuePool rolls
    back an open transaction, as the other pools commit one.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def getconn(self, timeout: float | None = None) -> Any:
        return self._pool.connect()

    def putconn(self, conn: Any) -> None:
        conn.close()

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        fairy = self._pool.connect()
        try:
            yield fairy.dbapi_connection
        finally:
            fairy.close()


class NewConnectionPerRequest:
    """No pool: every borrow opens a connection, every return closes it.

    With *max_open*, at most that many are open at once, the others wait:
    "16 connections shared by 64 threads" then holds for this contender too,
    and the server is not asked for more backends than the pools use.
    """

    def __init__(self, conninfo: str, max_open: int | None = None) -> None:
        self._conninfo = conninfo
        self._slots = threading.BoundedSemaphore(max_open) if max_open else None

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        if self._slots is not None:
            self._slots.acquire()
        try:
            return psycopg.connect(self._conninfo)
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.close()
        finally:
            if self._slots is not None:
                self._slots.release()

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        conn = self.getconn()
        try:
            # psycopg's own block: commit (or roll back on error), then close.
            with conn:
                yield conn
        finally:
            if self._slots is not None:
                self._slots.release()
