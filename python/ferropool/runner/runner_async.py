"""The runner: one pool's life, written once for every front end.

Every pool class (ConnectionPool and its async and null variants, the DB-API
and psycopg2 pools, SQLAlchemy's FerroPool, the routing pool's members) is
a thin shell over a runner, which owns the Rust core, the maintenance
workers and every rule around lending: open, fill, wait, check, lend,
return (roll back, reset, or discard), validate, retire on failover, report
leaks, pause, resize, close, and start over after fork. It talks to
connections only through a driver (``driver_async``): psycopg 3, or any
DB-API driver.

The sync runner is generated from the async one (tools/async_to_sync.py). The shells
keep the one-call fast path (a checkout or a return of a healthy idle
connection) and come here for everything else.

Rules this module keeps, whatever a borrower, a callback or a signal does:
a connection the pool holds is always given back to the core, discarded,
or closed, before any exception leaves (a cancellation or Ctrl-C
included); no lock is held while user code or the driver runs; nothing
logged or raised shows a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import warnings
from collections.abc import Callable
from functools import partial
from time import monotonic
from typing import Any, TypeVar, cast

from .. import _core
from .._core import ActionKind
from ..errors import PoolClosed, PoolTimeout
from . import checks
from .acompat import AEvent, amaybe, asleep, aspawn
from .base import CHECK_BACKOFF_START, RunnerBase
from .status import Status
from .workers_async import AsyncWorkers

logger = logging.getLogger("ferropool")

C = TypeVar("C")


class AsyncRunner(RunnerBase[C]):
    """One pool's core, workers and rules, over one driver."""

    workers: AsyncWorkers
    if True:  # ASYNC
        _ready_waiters: list[asyncio.Future[None]]

    def new_workers(self) -> None:
        """The workers and the lock opening and closing decide under (nothing
        is awaited in it): at creation, and anew in a fork child, since
        threads and locks do not survive fork()."""
        self.workers = AsyncWorkers(self)
        self._lock = threading.Lock()
        if True:  # ASYNC
            self._ready_waiters = []

    def __del__(self) -> None:
        core = getattr(self, "core", None)
        if core is None or not core.is_open:
            return
        # Dropped without close(): no loop to await on, release the sockets now.
        for conn in core.close():
            self.driver.abort(conn)

    # ---- opening and closing --------------------------------------------------

    async def open(self) -> None:
        """Open the core and start the workers; with budget_share, size the
        pool first. Opening an open pool does nothing; a closed pool raises
        PoolClosed."""
        if self._open_core():
            await self._start()
        else:
            self.workers.ensure_running()

    def _open_core(self) -> bool:
        """Open the core; True if this call opened it."""
        with self._lock:
            if self.core.is_open:
                return False
            self.core.open()
            return True

    async def _start(self) -> None:
        if self.budget_share is not None:
            try:
                budget = await self.driver.read_budget()
            except Exception as ex:
                self.apply_budget(None, self.describe(ex))
            else:
                self.apply_budget(budget, None)
        if self.core.is_open:
            self.workers.start()

    async def open_filled(self) -> None:
        """Open, opening min_size connections on the calling thread (or task)
        first and raising the driver's error if one fails, as psycopg2's
        pools do in their constructor; then start the workers."""
        if not self._open_core():
            return
        try:
            while self.core.available < self.core.min_size:
                action = self.core.next_action(0.0)
                if action is None:
                    break
                kind, ticket = action.kind, action.ticket
                if kind == ActionKind.CREATE and ticket is not None:
                    t0 = monotonic()
                    try:
                        new = await self._connect()
                    except BaseException as ex:
                        self.core.connect_failed(ticket, self.describe(ex))
                        raise
                    if not self.core.connected(
                        ticket, new, monotonic() - t0, self.driver.socket(new)
                    ):
                        await self.driver.close(new)
                elif kind == ActionKind.CLOSE:
                    await self.close_connection(cast(C, action.conn), action.reason or "")
                elif kind == ActionKind.VALIDATE and ticket is not None:
                    await self.validate(ticket)
        except BaseException:
            await self._close_all(self.core.close(), "pool closed")
            raise
        self.workers.start()

    if True:  # ASYNC

        def open_soon(self) -> None:
            """Open from a constructor (psycopg_pool's open=True): the core
            now, the workers (after budget_share) in a task on the running loop."""
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                owner = type(self.owner).__name__
                raise RuntimeError(f"{owner} open with no running loop") from None
            if self._open_core():
                aspawn(self._start, (), f"{self.name}-open")

    def warn_implicit_open(self) -> None:
        """A pool opened by its constructor with open=None is used: warn as
        psycopg_pool does."""
        cls = type(self.owner).__name__
        if True:  # ASYNC
            message = (
                f"opening the async pool {cls} in the constructor is deprecated and will"
                " not be supported anymore in a future release. Please use `await"
                f" pool.open()`, or use the pool as context manager using: `async with"
                f" {cls}(...) as pool: `..."
            )
            category: type[Warning] = RuntimeWarning
        else:
            message = (
                f"the default for the {cls} 'open' parameter will become 'False' in a"
                " future release. Please use open={True|False} explicitly, or use the"
                f" pool as context manager using: `with {cls}(...) as pool: ...`"
            )
            category = DeprecationWarning
        warnings.warn(message, category, stacklevel=checks.caller_stacklevel())

    async def close(self, timeout: float) -> None:
        """Close the pool: waiting and future requests get PoolClosed, idle
        connections are closed now, lent ones when returned. Waits up to
        *timeout* seconds for the workers."""
        with self._lock:
            if not self.core.is_open:
                return
            conns = self.core.close()
        self._notify_ready()
        logger.debug("pool %r closed", self.name)
        await self._close_all(conns, "pool closed")
        await self.workers.join(timeout)

    async def wait(self, timeout: float) -> None:
        """Wait until min_size connections are ready; close the pool and
        raise PoolTimeout (naming the last connection error) if not."""
        self.require_open()
        self.workers.ensure_running()
        logger.info("waiting for pool %r initialization", self.name)
        null = self.settings.null
        ready = await self._probe(timeout) if null else await self._wait_ready(timeout)
        if not ready:
            error = self.init_timeout(timeout)
            await self.close(timeout=5.0)
            raise error
        logger.info("pool %r is ready to use", self.name)

    async def _wait_ready(self, timeout: float) -> bool:
        if True:  # ASYNC
            # On the loop, no thread: woken when a connection is added or the
            # pool closes; a short re-check covers connections returned by
            # borrowers.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                if self.core.available >= self.core.min_size:
                    return True
                left = deadline - loop.time()
                if left <= 0 or not self.core.is_open:
                    return False
                fut: asyncio.Future[None] = loop.create_future()
                self._ready_waiters.append(fut)
                try:
                    await asyncio.wait_for(fut, min(left, 0.1))
                except asyncio.TimeoutError:
                    pass
                finally:
                    if fut in self._ready_waiters:
                        self._ready_waiters.remove(fut)
        else:
            return self.core.wait_ready(timeout)

    def _notify_ready(self) -> None:
        if True:  # ASYNC
            for fut in list(self._ready_waiters):
                # A closed loop: nobody is waiting there.
                if not fut.done():
                    with contextlib.suppress(RuntimeError):
                        fut.get_loop().call_soon_threadsafe(_resolve, fut)

    async def _probe(self, timeout: float) -> bool:
        """A null pool's wait(): open and close one connection on a worker,
        retrying failed attempts (logged, counted) until *timeout*."""
        done = AEvent()
        deadline = monotonic() + timeout
        aspawn(self._probe_attempts, (deadline, done), f"{self.name}-wait")
        return await done.wait_timeout(timeout)

    async def _probe_attempts(self, deadline: float, done: AEvent) -> None:
        delay = 0.05
        while self.core.is_open and monotonic() < deadline:
            try:
                conn = await self._take(deadline)
            except Exception as ex:
                if monotonic() >= deadline or not self.core.is_open:
                    return
                self.failures.failed(self.describe(ex))
                await asleep(min(delay, max(deadline - monotonic(), 0.0)))
                delay = min(delay * 2, 1.0)
                continue
            await self._checkin(conn)
            done.set()
            return

    # ---- borrowing (the slow path) ------------------------------------------------

    async def getconn(self, conn: C | None, timeout: float | None) -> C:
        """A connection for a borrower: *conn* (what the shell's fast path
        took, still to check) or one waited for, checked if `check` is set,
        marked as lent, with its lease tracked and on_checkout run."""
        if self.implicit_open:
            self.require_open()
        self.workers.ensure_running()
        if timeout is None:
            timeout = self.timeout
        deadline = monotonic() + timeout
        backoff = 0.0
        while True:
            if conn is None:
                try:
                    conn = await self._take(deadline)
                except PoolTimeout:
                    # The core times its own queueing, which began after the
                    # request did (a busy loop, a failed check's backoff):
                    # name the request's timeout, as psycopg_pool does.
                    raise PoolTimeout(self.timed_out(timeout)) from None
            failure = await self._lend(conn)
            if failure is None:
                return conn
            # A failing check usually means the server is in trouble: pace
            # the retries rather than spin through the pool.
            conn = None
            left = deadline - monotonic()
            backoff = backoff * 2 if backoff else CHECK_BACKOFF_START
            if left <= 0:
                raise PoolTimeout(self.timed_out(timeout))
            await asleep(min(backoff, left))

    async def _lend(self, conn: C) -> Exception | None:
        """Check *conn* and lend it; None once lent. A connection failing the
        check is discarded and the failure returned."""
        failure: Exception | None = None
        try:
            if self.settings.check is not None:
                try:
                    await amaybe(self.settings.check(conn))
                except Exception as ex:
                    failure = ex
            if failure is None:
                self.driver.lend(conn, self.owner)
                if self.leases is not None:
                    self.leases.track(conn)
                await self._hook("on_checkout", conn)
                return None
        except BaseException:
            # Interrupted before the borrower got it: it goes back.
            self.driver.lend(conn, None)
            if self.leases is not None:
                self.leases.untrack(conn)
            await self._give_back(conn)
            raise
        logger.info("connection failed check: %s", failure.__class__.__name__)
        try:
            await self._hook("on_error", failure, conn)
        finally:
            await self._discard(conn, returned=False, exc=failure)
        return failure

    async def _take(self, deadline: float) -> C:
        """Wait in the core's FIFO queue, up to *deadline*; for a null pool
        with spare capacity, open the connection here."""
        got = await self._queue(deadline)
        if isinstance(got, _core.Ticket):
            return await self._connect_for_caller(got, deadline)
        conn: C = got
        return conn

    async def _queue(self, deadline: float) -> Any:
        left = max(deadline - monotonic(), 0.0)
        if True:  # ASYNC
            # Queued in the core with a callback completing a future: woken by
            # the handoff itself, never by polling; the loop is never blocked.
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            got = self.core.wait_async(left, partial(_wake, loop, fut))
            if not isinstance(got, _core.Waiting):
                return got
            timer = loop.call_later(left, _resolve, fut)
            try:
                await fut
            except BaseException:
                # Cancelled: never leave with a connection; one granted
                # meanwhile goes back to the pool (or, closed, is closed).
                conn = got.cancel()
                if conn is not None:
                    await self.driver.close(conn)
                raise
            finally:
                timer.cancel()
            return got.finish()
        else:
            return self.core.wait(left)

    async def _connect_for_caller(self, ticket: _core.Ticket, deadline: float) -> C:
        """Null pools: open the request's own connection on its ticket."""
        t0 = monotonic()
        error: BaseException | None = None
        try:
            conn = await self._connect(timeout=deadline - t0)
        except BaseException as ex:
            error = self.caller_connect_failed(ticket, ex)
            if not isinstance(ex, Exception):
                raise
        if error is not None:
            # Raised here, outside the handler, so that the error does not
            # carry the original (whose text may hold a secret) as context.
            raise error
        if not self.core.connected_to_caller(
            ticket, conn, monotonic() - t0, self.driver.socket(conn)
        ):
            await self.driver.close(conn)
            raise PoolClosed(f"the pool {self.name!r} is already closed")
        return conn

    # ---- returning -----------------------------------------------------------------

    async def putconn(self, conn: C, *, rollback_unknown: bool = True) -> None:
        """Take back a connection its borrower returned (already unmarked):
        on_checkin, then rolled back if in a transaction (or, where the driver
        cannot tell, if *rollback_unknown*), reset, and kept; discarded if it
        is broken, busy or still not idle after all that."""
        if self.leases is not None:
            self.leases.untrack(conn)
        try:
            keep = await self._recycle(conn, rollback_unknown)
        except BaseException:
            # Interrupted mid-way: its state is unknown, it cannot be reused.
            await self._discard(conn, returned=True)
            raise
        if keep:
            await self._checkin(conn)
        else:
            await self._discard(conn, returned=True)

    async def _recycle(self, conn: C, rollback_unknown: bool) -> bool:
        """Make a returned connection reusable; False if it must be discarded."""
        await self._hook("on_checkin", conn)
        status = self.driver.status(conn)
        if status == Status.ACTIVE:
            logger.warning("closing returned connection: %s", self.describe_conn(conn))
            return False
        if status == Status.BROKEN:
            logger.warning("discarding closed connection: %s", self.describe_conn(conn))
            return False
        if status.in_transaction or (status == Status.UNKNOWN and rollback_unknown):
            if status.in_transaction:
                logger.warning("rolling back returned connection: %s", self.describe_conn(conn))
            try:
                await self.driver.rollback(conn)
            except Exception as ex:
                logger.warning(
                    "rollback failed: %s: %s. Discarding connection %s",
                    ex.__class__.__name__,
                    self.describe(ex),
                    self.describe_conn(conn),
                )
                return False
            if self.driver.status(conn) not in (Status.IDLE, Status.UNKNOWN):
                return False
        if self.settings.reset is not None:
            return await self._reset(conn)
        return True

    async def _reset(self, conn: C) -> bool:
        """Run the reset (a callback, or "discard"); False if it failed."""
        reset = self.settings.reset
        try:
            if reset == "discard":
                await self.driver.discard_session(conn)
            elif callable(reset):
                await amaybe(reset(conn))
            self.require_idle(conn, "reset", reset)
        except Exception as ex:
            logger.warning("error resetting connection: %s", self.describe(ex))
            await self._hook("on_error", ex, conn)
            return False
        return True

    async def putconn_failed(self, conn: C, exc: BaseException) -> None:
        """Take back a connection whose block failed because the server went
        away or changed role: retire it and every sibling opened before."""
        if self.leases is not None:
            self.leases.untrack(conn)
        try:
            await self._hook("on_checkin", conn)
            await self._hook("on_error", exc, conn)
        finally:
            await self._discard(conn, returned=False, exc=exc)

    async def checkin(self, conn: C) -> None:
        """Hand a returned idle connection back to the core (close it if the
        core retires it)."""
        if self.leases is not None:
            self.leases.untrack(conn)
        await self._checkin(conn)

    async def _checkin(self, conn: C) -> None:
        try:
            reason = self.core.checkin(conn)
        except ValueError:
            if not self.forked:
                raise
            # Lent before this process forked: its socket points at /dev/null.
            await self.driver.close(conn)
            return
        if reason is not None:
            await self.close_connection(conn, reason)

    async def _give_back(self, conn: C) -> None:
        """Return a connection the pool lent itself (a check, a ping, an
        interrupted checkout): kept if idle, else discarded."""
        if self.driver.status(conn) == Status.IDLE:
            await self._checkin(conn)
        else:
            await self._discard(conn, returned=False)

    async def discard(self, conn: C, exc: BaseException | None = None) -> None:
        """A borrower gives back a connection that must not be reused."""
        if self.leases is not None:
            self.leases.untrack(conn)
        await self._discard(conn, returned=True, exc=exc)

    async def _discard(self, conn: C, *, returned: bool, exc: BaseException | None = None) -> None:
        """Take back a broken connection and close it; if it broke because
        the server went away, retire all its siblings too. *returned*: its
        borrower gave it back bad (returns_bad) rather than the pool found it
        broken (connections_lost)."""
        # Failover first: it recognises the connection (still counted) and
        # does nothing if an earlier failover already retired it.
        siblings = self.failover_conns(conn, exc) if self.is_failover(exc, conn) else []
        try:
            self.core.discard(conn, returned=returned)
        except ValueError:
            await self._close_all(siblings, "failover")
            if not self.forked:
                raise
            # Lent before this process forked: its socket points at /dev/null.
            await self.driver.close(conn)
            return
        try:
            await self.close_connection(conn, "broken")
        finally:
            await self._close_all(siblings, "failover")

    # ---- closing ---------------------------------------------------------------------

    async def close_connection(self, conn: C, reason: str) -> None:
        """Close a connection the core no longer counts."""
        logger.debug("closing %s connection in pool %r", reason, self.name)
        try:
            await self._hook("on_close", conn, reason)
        finally:
            await self.driver.close(conn)

    async def _close_all(self, conns: list[C], reason: str) -> None:
        """Close *conns*; if interrupted, the rest are closed at once."""
        for i, conn in enumerate(conns):
            try:
                await self.close_connection(conn, reason)
            except BaseException:
                for rest in conns[i + 1 :]:
                    self.driver.abort(rest)
                raise

    # ---- maintenance ----------------------------------------------------------------

    async def resize(self, min_size: int, max_size: int) -> None:
        self.workers.ensure_running()
        await self._close_all(self.resize_core(min_size, max_size), "resized")
        logger.info("resized %r to min_size=%s max_size=%s", self.name, min_size, max_size)

    async def drain(self) -> None:
        """Replace every connection: idle ones now, lent ones when returned."""
        self.workers.ensure_running()
        await self._close_all(self.core.drain(), "drained")

    async def check(self, check_connection: Callable[[C], Any]) -> None:
        """Run *check_connection* on every idle connection now; replace
        those that fail."""
        self.require_open()
        self.workers.ensure_running()
        conns = self.core.take_for_check()
        try:
            while conns:
                conn = conns[-1]
                try:
                    await amaybe(check_connection(conn))
                except Exception as ex:
                    logger.warning("discarding broken connection: %s", self.describe_conn(conn))
                    conns.pop()
                    await self._hook("on_error", ex, conn)
                    await self._discard(conn, returned=False, exc=ex)
                else:
                    conns.pop()
                    await self._give_back(conn)
        finally:
            # Interrupted: every connection taken for the check goes back.
            for conn in conns:
                await self._give_back(conn)

    # ---- the workers' side ------------------------------------------------------------

    async def _connect(self, timeout: float | None = None) -> C:
        """A new connection, configured, not yet counted by the core."""
        conn: C = await self.driver.connect(timeout)
        try:
            configure = self.settings.configure
            if configure is not None:
                # Marked as pooled while configure runs, so `with conn:`
                # inside it does not close the connection.
                self.driver.lend(conn, self.owner)
                await amaybe(configure(conn))
                self.require_idle(conn, "configure", configure)
                self.driver.lend(conn, None)
                if self.settings.reset == "discard":
                    await self.driver.remember_session(conn)
            else:
                self.driver.lend(conn, None)
            await self._hook("on_connect", conn)
        except BaseException:
            await self.driver.close(conn)
            raise
        return conn

    async def open_connection(self, ticket: _core.Ticket) -> None:
        """Open a connection on *ticket* and hand it to the core."""
        t0 = monotonic()
        try:
            conn = await self._connect()
        except Exception as ex:
            await self._hook("on_error", ex, None)
            if self.connect_failed(ticket, ex):
                await self._reconnect_failed()
            return
        except BaseException as ex:
            # Cancelled, or a callback raised SystemExit: the ticket must not
            # be lost, or its capacity would be counted forever.
            self.core.connect_failed(ticket, self.describe(ex))
            raise
        if self.core.connected(ticket, conn, monotonic() - t0, self.driver.socket(conn)):
            self.failures.succeeded()
            self._notify_ready()
        else:
            await self.driver.close(conn)

    async def _reconnect_failed(self) -> None:
        owner = self.owner
        if owner is None:
            return
        try:
            await amaybe(owner.reconnect_failed())
        except Exception as ex:
            logger.warning("reconnect_failed callback failed: %s", self.describe(ex))

    async def validate(self, ticket: _core.Ticket) -> None:
        """Ping a connection whose socket looked suspect, or that is due for a
        keepalive ping; keep it if it answers, replace it if not."""
        conn = self.core.claim_validation(ticket)
        if conn is None:
            return
        try:
            await self.driver.ping(conn)
        except Exception as ex:
            logger.info("pool %r: connection failed its ping: %s", self.name, self.describe(ex))
            await self._hook("on_error", ex, conn)
            await self._discard(conn, returned=False, exc=ex)
        except BaseException:
            await self._give_back(conn)
            raise
        else:
            await self._give_back(conn)

    async def on_leak(self, key: int, held: float, first: bool) -> None:
        """A lease outlived leak_timeout: report it; reclaim a lost connection."""
        if self.leases is None:
            return
        conn = self.leases.overdue(key, held, first)
        if conn is not None:
            self.core.reclaim(conn)
            await self.close_connection(conn, "leaked")

    async def _hook(self, name: str, *args: Any) -> None:
        """Run a user hook (plain or coroutine); a failure is logged and
        changes nothing."""
        hook = getattr(self.settings.hooks, name)
        if hook is None:
            return
        try:
            await amaybe(hook(*args))
        except Exception as ex:
            logger.warning("pool %r: %s hook failed: %s", self.name, name, self.describe(ex))

    def restart_after_fork(self, was_open: bool) -> None:
        # The core restarted open (if it was): only the workers are new.
        self.new_workers()
        if was_open:
            if True:  # ASYNC
                pass  # no loop runs in the child yet: started by ensure_running
            else:
                self.workers.start()


if True:  # ASYNC

    def _resolve(fut: asyncio.Future[None]) -> None:
        if not fut.done():
            fut.set_result(None)

    def _wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
        """Called by the core, from any thread, when a wait is resolved."""
        if asyncio._get_running_loop() is loop:
            # On the loop's own thread (a return from another task): no
            # self-pipe round trip.
            _resolve(fut)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve, fut)
