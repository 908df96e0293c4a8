"""Read/write routing: one writer and read replicas behind one pool.

A routing pool holds a ferropool pool per server (`AsyncRoutingPool`
`AsyncConnectionPool`s, and the generated sync twin `ConnectionPool`s): the
writer (the primary) and
each reader (a streaming standby, a replica behind a load
balancer, or a PgBouncer in front of one). ``connection()`` borrows from the
writer; ``connection(readonly=True)`` from the next healthy reader, round
robin, and from the writer when no reader is healthy. Reader connections are
read-only sessions: ``default_transaction_read_only`` is set at connect
(psycopg's ``read_only`` too, which is all that works behind PgBouncer in
transaction mode), so a write sent to a reader fails with
``psycopg.errors.ReadOnlySqlTransaction`` even on a writable server.

A reader is *down* from the moment

* its pool's last connection attempt failed and it has no idle connection
  (looked at by every read and by `get_stats()`), or
* a read that waited ``reader_timeout`` (0.25 s) for one of its connections
  finds that so; the read then goes on to the next reader or the writer.
  A stopped server is usually found this way, by the first read after it
  went: a pool learns that its idle connections were closed when it is
  asked for one, and its attempt to replace them fails at once; or
* a block on one of its connections failed because the server went away.

Readers' pools poll a connection's socket at every checkout
(``liveness_bypass=0`` unless given), so a read that starts after a reader's
server has closed its connections is never lent one of them.

It is *up* again once its pool has opened a connection since (the pool's
workers keep retrying to reach min_size), or when a read retries it, at most
once per ``reader_retry`` seconds. Reads are never failed for a down reader;
only a read in flight on a server that goes away fails. A busy reader (every
connection lent, none failing) is waited for, up to the request's timeout,
like any pool: overflowing onto the writer would overload it exactly when the
replicas are saturated. A reader whose connection attempts hang rather than
fail (a black-holed host) is only found down once an attempt fails: give
readers a libpq ``connect_timeout``.

This module must never hold a lock while waiting for a connection, nor let a
reader's failure fail a read that another member can serve. It reads its
members' health through their runners (ferropool.runner.registry), never
their private state.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from time import monotonic
from typing import Any, TypedDict, cast

import psycopg

from . import _core
from .context_async import end_block
from .errors import PoolTimeout
from .pgbouncer import PGBOUNCER_TRANSACTION, POSTGRESQL, transaction_safe
from .pool_async import AsyncConnectionPool
from .runner import checks, registry
from .runner.base import RunnerBase
from .runner.runner_async import AsyncRunner
from .scope_async import AsyncOpenClose

__all__ = ["AsyncRoutingPool", "RoutingStats"]

logger = logging.getLogger("ferropool")

_names = itertools.count(1)


def reader_configure(
    server: str, configure: Callable[[Any], Awaitable[None]] | None
) -> Callable[[Any], Awaitable[None]]:
    """A configure callback making a reader's sessions read-only, then
    running the user's *configure*."""

    async def configure_reader(conn: Any) -> None:
        if server != PGBOUNCER_TRANSACTION:
            # Server side: covers autocommit statements too.
            await conn.execute("SET default_transaction_read_only = on")
            if not conn.autocommit:
                await conn.commit()
        # Client side: psycopg starts each transaction with BEGIN READ ONLY,
        # which holds behind PgBouncer in transaction mode as well.
        await conn.set_read_only(True)
        if configure is not None:
            await configure(conn)

    if configure is None:
        transaction_safe(configure_reader)
    return configure_reader


class RoutingStats(TypedDict):
    """`RoutingPool.get_stats()`: each member's pool stats, and routing's."""

    writer: dict[str, int]
    readers: list[dict[str, int]]


class _Reader:
    """A reader pool and its health."""

    __slots__ = ("down", "marked_down", "pool", "reads", "retry_at", "runner")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.runner: RunnerBase[Any] = registry.runner_of(pool)
        self.down = False
        self.retry_at = 0.0
        self.reads = 0
        self.marked_down = 0

    def failing(self) -> bool:
        """The pool's last connection attempt failed and it has nothing idle."""
        return self.runner.last_connect_error is not None and self.runner.idle == 0

    def recovered(self) -> bool:
        """The pool's last connection attempt succeeded (the core clears the
        error then) and it has a connection idle. After a server went away
        the pool retired every connection opened before, so an idle one was
        opened since."""
        return self.runner.last_connect_error is None and self.runner.idle > 0


class _Routing:
    """Members, health and stats: nothing here waits or does I/O."""

    def __init__(
        self,
        writer: Any,
        readers: Sequence[Any],
        *,
        reader_timeout: float,
        reader_retry: float,
        reader_options: Mapping[str, Any] | None,
        name: str | None,
        options: dict[str, Any],
    ) -> None:
        self.reader_timeout = checks.seconds("reader_timeout", reader_timeout, positive=True)
        self.reader_retry = checks.seconds("reader_retry", reader_retry, positive=True)
        if isinstance(readers, (str, bytes)) or not isinstance(readers, Sequence):
            raise TypeError(f"readers must be a list of conninfo strings, got {readers!r:.40}")
        for key in ("open", "name"):
            if key in options or key in (reader_options or {}):
                raise TypeError(
                    f"{key} is a {type(self).__name__} argument, not a member pool option"
                )
        self.name: str = checks.name(name) or f"routing-{next(_names)}"
        self.writer: AsyncConnectionPool[Any] = AsyncConnectionPool(
            writer, name=f"{self.name}-writer", open=False, **options
        )
        self.timeout: float = self.writer.timeout
        opts = {**options, **(reader_options or {})}
        # Readers poll their socket at every checkout (one non-blocking
        # syscall) rather than trusting a connection used in the last half
        # second: a read right after a reader's server went away then finds
        # it closed, instead of being lent it and failing.
        opts.setdefault("liveness_bypass", 0.0)
        server = opts.get("server", POSTGRESQL)
        opts["configure"] = reader_configure(server, opts.get("configure"))
        self._readers = [
            _Reader(AsyncConnectionPool(r, name=f"{self.name}-reader-{i}", open=False, **opts))
            for i, r in enumerate(readers)
        ]
        self._next = itertools.count()
        self._lock = threading.Lock()  # counters and health transitions only
        self._reads_fallback = 0

    def __repr__(self) -> str:
        cls = type(self).__name__
        return f"<ferropool.{cls} {self.name!r} readers={len(self._readers)}>"

    @property
    def closed(self) -> bool:
        return bool(self.writer.closed)

    # ---- choosing ------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> tuple[float, float]:
        timeout = self.timeout if timeout is None else checks.seconds("timeout", timeout)
        return timeout, monotonic() + timeout

    def _candidates(self) -> Iterator[_Reader]:
        """The readers a read may try now, in round-robin order; each is
        looked at only when the previous one could not serve."""
        n = len(self._readers)
        start = next(self._next) if n > 1 else 0
        for k in range(n):
            reader = self._readers[(start + k) % n]
            if self._usable(reader):
                yield reader

    def _served(self, reader: _Reader | None) -> None:
        with self._lock:
            if reader is None:
                self._reads_fallback += 1
            else:
                reader.reads += 1

    def _timed_out(self, reader: _Reader, ex: PoolTimeout) -> bool:
        """A wait on *reader* ran out: True (and down) if it can't connect,
        False if it is only busy."""
        if reader.failing() or reader.down:
            self._mark_down(reader, str(ex))
            return True
        return False

    # ---- health ------------------------------------------------------------------

    def _refresh(self, reader: _Reader) -> bool:
        """Update *reader*'s health from its pool's state; True if up."""
        if not reader.down:
            if reader.failing():
                self._mark_down(reader, reader.runner.last_connect_error or "")
                return False
            return True
        # Down: up again once its pool connected since it went down.
        if reader.recovered():
            self._mark_up(reader)
            return True
        return False

    def _usable(self, reader: _Reader) -> bool:
        """Whether a read may try *reader* now."""
        if self._refresh(reader):
            return True
        now = monotonic()
        with self._lock:
            if now < reader.retry_at:
                return False
            # One read in reader_retry tries it (a pool with min_size=0
            # does not reconnect by itself).
            reader.retry_at = now + self.reader_retry
        return True

    def _mark_down(self, reader: _Reader, reason: str) -> None:
        with self._lock:
            was_down, reader.down = reader.down, True
            reader.retry_at = monotonic() + self.reader_retry
            if was_down:
                return
            reader.marked_down += 1
        logger.warning(
            "routing pool %r: reader %r is down (%s); reads go to %s",
            self.name,
            reader.pool.name,
            reason,
            "the other readers or the writer" if len(self._readers) > 1 else "the writer",
        )

    def _mark_up(self, reader: _Reader) -> None:
        with self._lock:
            if not reader.down:
                return
            reader.down = False
        logger.info("routing pool %r: reader %r is up again", self.name, reader.pool.name)

    def _block_failed(self, reader: _Reader, conn: Any, exc: BaseException) -> None:
        """A block on *reader*'s connection raised *exc*: the server went away?"""
        if reader.runner.is_failover(exc, conn) or conn.closed:
            self._mark_down(reader, reader.runner.describe(exc))

    def _member(self, conn: Any) -> Any:
        lender = registry.runner_of(self.writer).driver.lender(conn)
        if lender is None or (
            lender is not self.writer and not any(lender is r.pool for r in self._readers)
        ):
            raise ValueError(
                f"can't return connection to routing pool {self.name!r}: it doesn't come"
                " from any of its members (or was already returned)"
            )
        return lender

    # ---- stats -----------------------------------------------------------------

    def get_stats(self) -> RoutingStats:
        """``{"writer": {...}, "readers": [{...}, ...]}``: each member's
        pool stats, plus ``reads_fallback`` (reads the writer served because
        no reader was up) for the writer, and ``reads`` (reads served),
        ``healthy`` (1 or 0) and ``marked_down`` (times it went down) for
        each reader."""
        return self._stats(reset=False)

    def pop_stats(self) -> RoutingStats:
        """`get_stats`, then reset the counters."""
        return self._stats(reset=True)

    def _stats(self, *, reset: bool) -> RoutingStats:
        writer: dict[str, int] = self.writer.pop_stats() if reset else self.writer.get_stats()
        readers = []
        for r in self._readers:
            stats: dict[str, int] = r.pool.pop_stats() if reset else r.pool.get_stats()
            healthy = self._refresh(r)
            with self._lock:
                stats["reads"] = r.reads
                stats["marked_down"] = r.marked_down
                if reset:
                    r.reads = r.marked_down = 0
            stats["healthy"] = int(healthy)
            readers.append(stats)
        with self._lock:
            writer["reads_fallback"] = self._reads_fallback
            if reset:
                self._reads_fallback = 0
        return {"writer": writer, "readers": readers}


class AsyncRoutingPool(_Routing, AsyncOpenClose):
    """A writer pool and reader pools, chosen per request.

    ``AsyncRoutingPool(writer, readers, **options)``: *writer* and each of
    *readers* is a conninfo string (or a callable returning one); *options*
    are `AsyncConnectionPool` options given to every member, *reader_options* overrides some
    of them for the readers (e.g. their own ``server=``, or a smaller
    ``min_size``). Open it with ``await pool.open()`` or ``async with``.
    """

    def __init__(
        self,
        writer: str | Callable[[], str],
        readers: Sequence[str | Callable[[], str]] = (),
        *,
        reader_timeout: float = 0.25,
        reader_retry: float = 5.0,
        reader_options: Mapping[str, Any] | None = None,
        name: str | None = None,
        open: bool = False,
        **options: Any,
    ) -> None:
        checks.flag("open", open)
        super().__init__(
            writer,
            readers,
            reader_timeout=reader_timeout,
            reader_retry=reader_retry,
            reader_options=reader_options,
            name=name,
            options=options,
        )
        if open:
            if True:  # ASYNC
                raise TypeError(
                    f"{type(self).__name__} opens on a running loop: use `await pool.open()`"
                    " or `async with`, not open=True"
                )
            else:
                self.open()

    @property
    def readers(self) -> tuple[AsyncConnectionPool[Any], ...]:
        return tuple(r.pool for r in self._readers)

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open every member. With *wait*, wait for the writer's min_size
        connections (PoolTimeout, and everything closed, if not ready in
        *timeout*); readers are never waited for: reads use the writer until
        a reader is up."""
        await self.writer.open()
        for r in self._readers:
            await r.pool.open()
        if wait:
            try:
                await self.writer.wait(timeout)
            except BaseException:
                await self.close()
                raise

    async def close(self, timeout: float = 5.0) -> None:
        """Close every member."""
        await self.writer.close(timeout)
        for r in self._readers:
            await r.pool.close(timeout)

    def connection(
        self, timeout: float | None = None, *, readonly: bool = False
    ) -> _core.AsyncBlock[Any] | AsyncRoutedContext:
        """Lend a connection for a block: from the writer, or with
        *readonly* from a healthy reader (the writer if none is).
        Commits on success, rolls back on error, as `AsyncConnectionPool`."""
        if not readonly:
            return self.writer.connection(timeout)
        return AsyncRoutedContext(self, timeout)

    async def getconn(self, timeout: float | None = None, *, readonly: bool = False) -> Any:
        """Borrow a connection; give it back with `putconn`."""
        if not readonly:
            return await self.writer.getconn(timeout)
        return (await self._getconn_read(timeout))[1]

    async def putconn(self, conn: Any) -> None:
        """Give back a connection from `getconn`, to the member that lent it."""
        await self._member(conn).putconn(conn)

    async def _getconn_read(self, timeout: float | None) -> tuple[_Reader | None, Any]:
        """A connection from the next healthy reader, else the writer."""
        timeout, deadline = self._deadline(timeout)
        for reader in self._candidates():
            conn = await self._try_reader(reader, deadline)
            if conn is not None:
                self._served(reader)
                return reader, conn
        left = deadline - monotonic()
        if left <= 0:
            raise PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec")
        conn = await self.writer.getconn(left)
        self._served(None)
        return None, conn

    async def _try_reader(self, reader: _Reader, deadline: float) -> Any:
        """A connection from *reader*, or None (marking it down) if it
        cannot connect. A reader that is only busy is waited for."""
        pool = reader.pool
        while True:
            left = deadline - monotonic()
            if left <= 0:
                raise PoolTimeout(f"couldn't get a connection from {pool.name!r} in time")
            try:
                conn = await pool.getconn(min(self.reader_timeout, left))
            except PoolTimeout as ex:
                if self._timed_out(reader, ex):
                    return None
                continue  # busy, and healthy: keep waiting for it
            except psycopg.OperationalError as ex:
                self._mark_down(reader, reader.runner.describe(ex))
                return None
            if reader.down:
                self._mark_up(reader)
            return conn

    async def check(self) -> None:
        """Check every member's idle connections."""
        await self.writer.check()
        for r in self._readers:
            await r.pool.check()


class AsyncRoutedContext:
    """What ``AsyncRoutingPool.connection(readonly=True)`` returns."""

    __slots__ = ("_conn", "_member", "_pool", "_reader", "_timeout")

    def __init__(self, pool: AsyncRoutingPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._reader: _Reader | None = None
        self._member: AsyncConnectionPool[Any] | None = None
        self._conn: Any = None

    async def __aenter__(self) -> Any:
        if self._member is not None:
            raise RuntimeError(
                f"this connection() context of routing pool {self._pool.name!r} is already"
                " in use: call pool.connection() for each block"
            )
        reader, conn = await self._pool._getconn_read(self._timeout)
        self._reader = reader
        self._member = reader.pool if reader is not None else self._pool.writer
        self._conn = conn
        return conn

    async def __aexit__(self, exc_type: object, exc_val: BaseException | None, *_: object) -> None:
        member, conn, self._member, self._conn = self._member, self._conn, None, None
        assert member is not None
        if exc_val is not None and self._reader is not None:
            self._pool._block_failed(self._reader, conn, exc_val)
        # The member's own block ending: commit or roll back, then return
        # (or retire, if the server went away) the connection.
        runner = cast("AsyncRunner[Any]", registry.runner_of(member))
        await end_block(member, runner, conn, exc_val)
