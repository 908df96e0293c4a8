"""SQLAlchemy on ferropool: ``create_engine(url, poolclass=FerroPool)``.

``FerroPool`` is a ``sqlalchemy.pool.Pool``: SQLAlchemy keeps doing what
its pools do (pre-ping, reset on return, invalidation, pool events, the
dialect's per-connection set-up) and ferropool's core does the pooling
(lock-free lending, FIFO waiters, background connecting, lifetimes, server
hang-up detection, stats). It runs on any DB-API dialect: postgresql
(psycopg, psycopg2, pg8000), mysql+pymysql, ... through
`ferropool.adapters.dbapi.Pool`, whose connections are opened with the
engine's own creator.

Why a pool class rather than ``creator=`` with ``NullPool`` and a
``close_returns=True`` ferropool: with NullPool every checkout is a new
SQLAlchemy connection record, so the dialect's connect events (type
registration, isolation level) run on every checkout, ``record.info`` lasts
one checkout, and ``invalidate()`` calls ``close()``, which close_returns
turns into a return: the connection SQLAlchemy declared bad goes back to
the pool. Here a record lives as long as its DBAPI connection (connect
events run once per connection), and whatever SQLAlchemy closes
(``invalidate()``, a failed pre-ping, a failed connect event, a detached
connection) is discarded from ferropool (``returns_bad``), never reused.

How SQLAlchemy's semantics map onto ferropool:

- ``pool_pre_ping=True``: SQLAlchemy pings at checkout; a failed ping
  discards that connection and, as SQLAlchemy does for every pool,
  retires every connection opened before now (ferropool's ``drain()``).
  A record's first checkout is pinged too: the connection may have sat
  idle in ferropool.
- reset on return (``pool_reset_on_return``): SQLAlchemy's rollback (or
  commit) runs before the connection reaches ferropool, which then skips
  its own rollback; a connection still in a transaction by its driver's
  account is rolled back anyway, and a broken one discarded.
- ``invalidate()`` and disconnect errors: the connection is closed and
  discarded from ferropool; a disconnect error retires every connection
  opened before it (``drain()``).
- ``pool_size`` is ferropool's min_size (opened in the background at the
  first checkout, rather than one by one on demand), ``pool_size +
  max_overflow`` its max_size; connections above pool_size close after
  ``max_idle`` seconds idle (QueuePool closes them at once).
  ``pool_timeout``: the FIFO wait (``sqlalchemy.exc.TimeoutError``).
  ``pool_recycle`` sets max_lifetime (default 3600 s, with jitter);
  ``engine.dispose()`` closes the ferropool and opens a new one.
- ferropool-specific options, passed to ``create_engine`` as is:
  ``min_size`` (overrides pool_size), ``max_idle``, ``max_lifetime``,
  ``max_waiting``, ``liveness_bypass``, ``keepalive_interval``,
  ``num_workers``, ``leak_timeout``. ``pool_use_lifo=True`` lends the
  connection returned last first (QueuePool's LIFO); by default use is
  spread over the idle connections. Waiting requests are served in arrival
  order either way.

A detached connection (``connection.detach()``) keeps its ferropool slot
until it is closed, when it is discarded.

``do_connect`` listeners run where ferropool opens the connection, on a
worker thread, before SQLAlchemy has a record for it: each attempt gets a
connection record of its own (``conn_rec``, as SQLAlchemy documents), and
what the listener puts in its ``info`` (and ``record_info``) is moved to the
record SQLAlchemy builds for that connection, so it is on ``conn.info`` as
with QueuePool. Listeners may change ``cargs`` and ``cparams`` as usual.

Connection errors surface as with QueuePool: ferropool's workers connect in
the background, and a checkout that finds connecting failing (the server
down, a wrong password) raises the driver's error, which SQLAlchemy wraps
as ``OperationalError``, instead of waiting out ``pool_timeout``. A pool
that is only busy (every connection lent) waits, and raises
``sqlalchemy.exc.TimeoutError``.

Every safety feature of ferropool's pools works here too: liveness checks
and keepalive pings, failover drain, leak reports (``leak_timeout``),
``pause()`` / ``resume()``, lifetimes, fork safety, ``get_stats()``.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import exc
from sqlalchemy.pool import Pool
from sqlalchemy.pool.base import _ConnectionRecord

from ..adapters.dbapi import Pool as DbapiPool
from ..errors import PoolClosed, PoolTimeout, TooManyRequests
from ..runner import registry

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
    from sqlalchemy.pool.base import _CreatorFnType, _CreatorWRecFnType

__all__ = ["FerroPool"]

# Names of pools without a pool_logging_name: sqlalchemy-1, sqlalchemy-2...
_numbers = itertools.count(1)

# How long a checkout waits at a time while the pool is opening connections,
# before it looks whether connecting fails.
_CONNECTING_SLICE = 0.05


class FerroPool(Pool):
    """A SQLAlchemy pool whose connections are pooled by ferropool's core."""

    def __init__(
        self,
        creator: _CreatorFnType | _CreatorWRecFnType,
        pool_size: int = 5,
        max_overflow: int = 10,
        timeout: float = 30.0,
        min_size: int | None = None,
        max_idle: float = 10 * 60.0,
        max_lifetime: float | None = None,
        max_waiting: int = 0,
        liveness_bypass: float | None = 0.5,
        keepalive_interval: float | None = 60.0,
        num_workers: int = 2,
        leak_timeout: float | None = None,
        use_lifo: bool = False,
        recycle: int = -1,
        **kw: Any,
    ) -> None:
        # SQLAlchemy's own recycle check is off: ferropool retires expired
        # connections itself, at checkout and at return.
        super().__init__(creator, recycle=-1, **kw)
        if max_overflow < 0:
            raise exc.ArgumentError(
                f"FerroPool needs a bounded size: max_overflow must be >= 0, got {max_overflow}"
            )
        if pool_size <= 0 and min_size is None:
            raise exc.ArgumentError(
                f"FerroPool needs a bounded size: pool_size must be > 0, got {pool_size}"
            )
        if max_lifetime is None:
            max_lifetime = float(recycle) if recycle > 0 else 60 * 60.0
        self._args: dict[str, Any] = {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "timeout": timeout,
            "min_size": min_size,
            "max_idle": max_idle,
            "max_lifetime": max_lifetime,
            "max_waiting": max_waiting,
            "liveness_bypass": liveness_bypass,
            "keepalive_interval": keepalive_interval,
            "num_workers": num_workers,
            "leak_timeout": leak_timeout,
            "use_lifo": use_lifo,
        }
        self._pool_size = pool_size
        self._timeout = timeout
        # The record of each connection ferropool lent us at least once, by
        # id(connection); dropped when ferropool closes the connection.
        self._records: dict[int, _ConnectionRecord] = {}
        # A connection taken from ferropool in _do_get, for the new record's
        # creator call on the same thread.
        self._handoff = threading.local()
        # The record a worker gave the creator (do_connect listeners) for
        # each connection SQLAlchemy has no record for yet, by id(connection);
        # its info moves to SQLAlchemy's record in _borrow.
        self._connect_records: dict[int, _ConnectionRecord] = {}
        self._open_lock = threading.Lock()
        self._opened = False
        self.ferropool: DbapiPool[Any] = DbapiPool(
            self._connect,
            min_size=pool_size if min_size is None else min_size,
            max_size=pool_size + max_overflow,
            timeout=timeout,
            open=False,
            name=self._orig_logging_name or f"sqlalchemy-{next(_numbers)}",
            # SQLAlchemy resets (reset_on_return) before the connection is
            # returned: no second rollback on drivers that cannot tell.
            rollback_on_return=False,
            max_waiting=max_waiting,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            num_workers=num_workers,
            liveness_bypass=liveness_bypass,
            keepalive_interval=keepalive_interval,
            leak_timeout=leak_timeout,
            lifo=use_lifo,
            on_close=self._forget,
        )
        self._runner = registry.runner_of(self.ferropool)

    # ---- creator plumbing ----------------------------------------------------

    def _should_wrap_creator(
        self, creator: _CreatorFnType | _CreatorWRecFnType
    ) -> _CreatorWRecFnType:
        # Pool.__init__ (and any later `pool._creator = ...`) lands here.
        # SQLAlchemy's records call _invoke_creator for a connection: ours
        # borrows from ferropool, whose workers call the real creator.
        self._raw_creator = super()._should_wrap_creator(creator)
        return self._borrow

    def _connect(self) -> DBAPIConnection:
        """ferropool's workers: open a DBAPI connection with the engine's creator.

        The creator hands its record to ``do_connect`` listeners, which may
        read and write it (``conn_rec.info``): a real, unconnected record,
        not None, kept until SQLAlchemy's own record for the connection
        exists (`_borrow`).
        """
        record = _ConnectionRecord(self, connect=False)
        conn = self._raw_creator(record)
        record.dbapi_connection = conn
        self._connect_records[id(conn)] = record
        return conn

    def _borrow(self, rec: ConnectionPoolEntry) -> DBAPIConnection:
        conn = getattr(self._handoff, "conn", None)
        if conn is None:
            # A record reconnecting (after invalidate() or a failed pre-ping).
            conn = self._take()
        else:
            self._handoff.conn = None
        self._records[id(conn)] = cast(_ConnectionRecord, rec)
        self._adopt_connect_record(rec, conn)
        return cast("DBAPIConnection", conn)

    def _adopt_connect_record(self, rec: ConnectionPoolEntry, conn: Any) -> None:
        """What do_connect listeners wrote to the record of *conn*'s connect
        attempt goes to *rec*, the record SQLAlchemy lends it with: ``info``
        belongs to the DBAPI connection, ``record_info`` is merged in as a
        listener writing to *rec* itself would have left it."""
        opened = self._connect_records.pop(id(conn), None)
        if opened is None or opened.dbapi_connection is not conn:
            return
        opened.dbapi_connection = None
        rec.info.update(opened.info)
        if opened.record_info and rec.record_info is not None:
            rec.record_info.update(opened.record_info)

    def _take(self) -> Any:
        if not self._opened:
            with self._open_lock:
                if not self._opened:
                    self.ferropool.open()
                    self._opened = True
        deadline = time.monotonic() + self._timeout
        while True:
            left = deadline - time.monotonic()
            # While the pool is still opening connections, wait in short
            # slices: a failing connect must surface as the driver's error
            # (QueuePool connects on the caller's thread and raises it).
            stats = self.ferropool.get_stats()
            growing = stats["pool_size"] < stats["pool_max"]
            try:
                return self.ferropool.getconn(
                    timeout=max(0.0, min(left, _CONNECTING_SLICE) if growing else left)
                )
            except (PoolTimeout, TooManyRequests) as ex:
                failure = self._runner.connect_failure()
                if failure is not None:
                    raise failure from None
                if deadline - time.monotonic() <= 0 or isinstance(ex, TooManyRequests):
                    raise exc.TimeoutError(
                        f"FerroPool {self.ferropool.name!r}: no connection within"
                        f" {self._timeout} s ({ex})",
                        code="3o7r",
                    ) from None
            except PoolClosed as ex:
                raise exc.InvalidRequestError(f"FerroPool is disposed: {ex}") from None

    def pause(self) -> None:
        """Hold back new checkouts until resume() (see ferropool's pools)."""
        self.ferropool.pause()

    def resume(self) -> None:
        self.ferropool.resume()

    def _forget(self, conn: Any, reason: str) -> None:
        """ferropool closes *conn*: its records go with it."""
        self._records.pop(id(conn), None)
        self._connect_records.pop(id(conn), None)

    # ---- Pool interface ----------------------------------------------------------

    def _do_get(self) -> ConnectionPoolEntry:
        conn = self._take()
        record = self._records.get(id(conn))
        if record is not None and record.dbapi_connection is conn:
            return record
        # A connection new to SQLAlchemy: a record for it, whose creation
        # runs the connect events (the dialect's set-up) once.
        self._handoff.conn = conn
        try:
            record = cast(_ConnectionRecord, self._create_connection())
        finally:
            leftover = getattr(self._handoff, "conn", None)
            self._handoff.conn = None
            if leftover is not None:  # the creator was never called
                self.ferropool.putconn(leftover)
        # It may have been idle in ferropool for a while: let pre-ping
        # check it rather than trust it as freshly opened.
        record.fresh = False
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        conn = record.dbapi_connection
        if conn is None:
            # Invalidated (already discarded from ferropool) or detached
            # (discarded when the detached connection is closed).
            return
        self.ferropool.putconn(conn)

    def _close_connection(self, connection: DBAPIConnection, *, terminate: bool = False) -> None:
        try:
            super()._close_connection(connection, terminate=terminate)
        finally:
            # Whatever SQLAlchemy closes is gone for ferropool too: counted
            # as a bad return, its slot reopened by the workers.
            with contextlib.suppress(ValueError):  # not lent by ferropool (any more)
                self.ferropool.putconn(connection, close=True)

    def _invalidate(
        self,
        connection: PoolProxiedConnection,
        exception: BaseException | None = None,
        _checkin: bool = True,
    ) -> None:
        # SQLAlchemy's "invalidate every connection opened before now" is
        # ferropool's drain: idle ones closed now, lent ones when returned.
        rec = getattr(connection, "_connection_record", None)
        if not rec or self._invalidate_time < rec.starttime:
            self._invalidate_time = time.time()
            self.ferropool.drain()
        if _checkin and getattr(connection, "is_valid", False):
            connection.invalidate(exception)

    def recreate(self) -> FerroPool:
        self.logger.info("Pool recreating")
        args = dict(self._args)
        return self.__class__(
            self._creator,
            recycle=-1,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            pre_ping=self._pre_ping,
            _dispatch=self.dispatch,
            dialect=self._dialect,
            **args,
        )

    def dispose(self) -> None:
        """Close ferropool's idle connections now, lent ones when returned."""
        with self._open_lock:
            self._opened = True  # a disposed pool is not reopened
        self.ferropool.close()
        self._records.clear()
        self._connect_records.clear()
        self.logger.info("Pool disposed. %s", self.status())

    def status(self) -> str:
        stats = self.ferropool.get_stats()
        return (
            f"FerroPool {self.ferropool.name!r} size: {stats['pool_size']}"
            f" (min {stats['pool_min']}, max {stats['pool_max']})"
            f" idle: {stats['pool_available']} waiting: {stats['requests_waiting']}"
        )

    # QueuePool's introspection methods, for tools that call them.

    def size(self) -> int:
        return self._pool_size

    def timeout(self) -> float:
        return self._timeout

    def checkedin(self) -> int:
        return self.ferropool.get_stats()["pool_available"]

    def checkedout(self) -> int:
        stats = self.ferropool.get_stats()
        return stats["pool_size"] - stats["pool_available"]

    def overflow(self) -> int:
        return max(self.ferropool.get_stats()["pool_size"] - self._pool_size, 0)

    # ---- ferropool's figures -------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """ferropool's counters (psycopg_pool's keys)."""
        return self.ferropool.get_stats()

    def pop_stats(self) -> dict[str, int]:
        return self.ferropool.pop_stats()
