"""Type stubs for the native module built from rust/ferropool-py.

Checked against the built module by ``python -m mypy.stubtest
ferropool._core``: every name, signature and property here exists there,
and nothing public there is missing here.
"""

from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, ClassVar, Final, Generic, TypeVar, final

from typing_extensions import Self, disjoint_base

__all__ = [
    "MAX_POOL_SIZE",
    "Action",
    "ActionKind",
    "AsyncBlock",
    "AsyncLender",
    "Block",
    "ConnectOutcome",
    "Core",
    "Leak",
    "Lender",
    "Ready",
    "Ticket",
    "Waiting",
]

_C = TypeVar("_C")
_T = TypeVar("_T")

MAX_POOL_SIZE: Final[int]
"""The largest max_size the core accepts."""

@final
class Ticket:
    """A claim on a reserved slot: open a connection and report it back
    (connected(), connect_failed()), or, for a validation, ping it."""

    def __repr__(self) -> str: ...

@final
class ActionKind:
    """What a maintenance worker must do (``Action.kind``)."""

    CREATE: ClassVar[ActionKind]
    """Open a connection on ``ticket``; report with connected() or
    connect_failed()."""
    CLOSE: ClassVar[ActionKind]
    """Close ``conn`` (no longer counted) for ``reason``."""
    VALIDATE: ClassVar[ActionKind]
    """Ping the connection of ``ticket`` (claim_validation()), then give it
    back with checkin() or discard()."""
    LEAK: ClassVar[ActionKind]
    """A lease outlived leak_timeout: see ``leak``."""
    STOP: ClassVar[ActionKind]
    """The pool closed and nothing is left to do: the worker exits."""
    def __int__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Leak:
    """A lease held past leak_timeout (``Action.leak``)."""

    @property
    def key(self) -> int:
        """The connection's key: id() of the connection object."""
    @property
    def held(self) -> float:
        """Seconds the lease has been held."""
    @property
    def first(self) -> bool:
        """True the first time this lease is reported; later sweeps repeat
        the action while the lease lasts."""

@final
class Action:
    """One piece of maintenance work, from next_action()."""

    @property
    def kind(self) -> ActionKind: ...
    @property
    def ticket(self) -> Ticket | None:
        """CREATE and VALIDATE: the slot to work on."""
    @property
    def conn(self) -> Any | None:
        """CLOSE: the connection to close."""
    @property
    def reason(self) -> str | None:
        """CLOSE: why ("idle", "expired", "max_uses", "drained", "resized",
        "broken" or "pool closed")."""
    @property
    def leak(self) -> Leak | None:
        """LEAK: the lease held too long."""

@final
class ConnectOutcome:
    """What follows a failed connection attempt (connect_failed())."""

    RETRY: ClassVar[ConnectOutcome]
    """Another attempt is scheduled, after a backoff."""
    GAVE_UP: ClassVar[ConnectOutcome]
    """Attempts failed for reconnect_timeout: call reconnect_failed. The
    pool keeps trying to reach min_size."""
    CLOSED: ClassVar[ConnectOutcome]
    """The pool closed: nothing more is tried."""
    NOT_NEEDED: ClassVar[ConnectOutcome]
    """Resized below what was reserved: no retry needed."""
    def __int__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Waiting:
    """A queued request whose end is signalled by a callback (event loops):
    finish() once signalled or at the holder's own deadline, or cancel()."""

    def finish(self) -> Any:
        """The granted connection, or (null pools) a Ticket to open one on;
        PoolTimeout if none came in time, PoolClosed if the pool closed."""
    def cancel(self) -> Any | None:
        """Stop waiting. A connection granted meanwhile goes back to the pool
        (capacity to the next waiter); if the pool closed meanwhile, the
        connection is returned for the caller to close."""
    @property
    def resolved(self) -> bool:
        """Granted, closed or abandoned (or begun before a fork)."""

@final
class Core:
    """One pool's core: slots, the FIFO waiter queue, capacity, lifetimes,
    counters. Payloads are connection objects, found on return by their
    address. Every setting is a required keyword: the defaults are the
    Python layer's. Durations are in seconds; ``None`` turns an optional
    one off."""

    def __new__(
        cls,
        *,
        name: str,
        min_size: int,
        max_size: int,
        max_waiting: int,
        max_lifetime: float,
        max_idle: float,
        reconnect_timeout: float,
        null: bool,
        max_uses: int,
        max_connecting: int,
        lifo: bool,
        lifetime_jitter: float,
        liveness_bypass: float | None,
        keepalive_interval: float | None,
        leak_timeout: float | None,
    ) -> Self: ...
    def restart_after_fork(self) -> list[int]:
        """In a fork child: start over with an empty pool from the current
        settings, open if the inherited one was; the inherited pool and its
        connections are kept alive, untouched. Returns their sockets, to
        point at /dev/null. RuntimeError in the process that made the pool."""
    def open(self) -> None:
        """Start accepting requests; min_size connections are queued for the
        workers to open, and the hang-up watch starts. PoolClosed if the
        pool was closed."""
    def set_fast_path(self, slow_checkout: bool, slow_checkin: bool) -> None:
        """Which borrows take the runner's slow path: a checkout when
        *slow_checkout* (a check, an on_checkout hook, leak tracking, an
        implicit open), a return when *slow_checkin* (a reset, an
        on_checkin hook, leak tracking). Read by the pools' hot path
        (Lender, AsyncLender) without a Python attribute lookup."""
    @property
    def fast_path(self) -> tuple[bool, bool]:
        """The flags set by set_fast_path(), as (slow_checkout, slow_checkin)."""
    def checkout(self) -> Any | None:
        """Fast path: an idle connection, or None if the request must wait
        (nothing idle, someone queued, a pause, a null pool)."""
    def wait(self, timeout: float) -> Any:
        """Wait up to *timeout* seconds in FIFO order, with the GIL released:
        a connection, or (null pools with capacity, found at once or granted
        while waiting) a Ticket to open one on. PoolTimeout, PoolClosed,
        TooManyRequests; a signal handler's exception (main thread) after
        any connection granted meanwhile went back to the pool."""
    def wait_async(self, timeout: float, waker: Callable[[], object]) -> Any:
        """Queue without blocking: a connection (one became available), a
        Ticket (null pools with capacity), or a Waiting whose *waker* is
        called, from any thread, once the wait is resolved."""
    def checkin(self, conn: Any) -> str | None:
        """Give back a lent connection: None if kept (idle, or handed to a
        waiter), else the reason the caller must close it. ValueError for a
        connection this pool did not lend (the pool is unchanged)."""
    def discard(self, conn: Any, returned: bool) -> None:
        """Give back a broken connection, for the caller to close; counted as
        returns_bad if *returned* (broken by its borrower), else as
        connections_lost. A replacement is opened if needed."""
    def next_action(self, timeout: float) -> Action | None:
        """The next maintenance action, waiting up to *timeout* seconds with
        the GIL released; None on timeout."""
    def claim_validation(self, ticket: Ticket) -> Any | None:
        """The connection of a VALIDATE ticket, lent to the pool itself for a
        ping; give it back with checkin() or discard(conn, False). None if
        the ticket is stale."""
    def reclaim(self, conn: Any) -> None:
        """Take back a lent connection whose borrower dropped it without
        returning it (counted in leaks_reclaimed); the caller closes it."""
    def failover_from(self, conn: Any) -> list[Any] | None:
        """The server went away under *conn*: retire every connection opened
        before now and return the idle ones to close; None if *conn* itself
        predates the last drain (one server event drains once)."""
    def pause(self) -> None:
        """Hold back new checkouts (they queue) until resume()."""
    def resume(self) -> None:
        """Serve the requests queued during a pause, oldest first."""
    def connected(self, ticket: Ticket, conn: Any, took: float, fd: int | None = None) -> bool:
        """Report *conn*, opened on a CREATE *ticket* in *took* seconds, with
        its socket *fd*. False if the pool no longer wants it (closed, or the
        ticket is from before a fork): the caller closes it."""
    def connect_failed(
        self, ticket: Ticket, message: str, permanent: bool = False
    ) -> ConnectOutcome:
        """Report a failed attempt on *ticket* (*message* free of secrets):
        what follows it. *permanent*: the error will come back however soon
        the attempt is retried (a wrong password, an unknown role or
        database, an invalid option), so retries back off from 1 s doubling
        to 60 s instead of from 50 ms to 400 ms. A success resets the
        backoff; either way the pool gives up after reconnect_timeout."""
    def connected_to_caller(
        self, ticket: Ticket, conn: Any, took: float, fd: int | None = None
    ) -> bool:
        """Null pools: the caller opened *conn* on its own *ticket*; it is
        lent to the caller. False if the pool closed meanwhile, or the ticket
        is from before a fork (the caller closes it)."""
    def connect_failed_caller(self, ticket: Ticket, message: str) -> None:
        """Null pools: the caller's own attempt failed; its capacity goes to
        the oldest queued request, if any."""
    def close(self) -> list[Any]:
        """Close the pool: waiters get PoolClosed, workers get STOP once
        their queue is empty, the hang-up watch stops; returns the idle
        connections for the caller to close (lent ones are closed when
        returned). Nothing happens to a pool never opened."""
    def drain(self) -> list[Any]:
        """Retire every connection opened so far: returns the idle ones to
        close (replacements are queued); lent ones are retired on return."""
    def resize(self, min_size: int, max_size: int) -> list[Any]:
        """Change the sizes; returns idle connections above max_size to
        close. ValueError (pool unchanged) for sizes psycopg_pool refuses."""
    def take_for_check(self) -> list[Any]:
        """Lend every idle connection to the pool itself for a health check;
        give each back with checkin() or discard(conn, False)."""
    def wait_ready(self, timeout: float) -> bool:
        """Wait until min_size connections are idle (True), or the pool
        closed or *timeout* seconds passed (False)."""
    def stats(self, reset: bool = False) -> dict[str, int]:
        """Counters and measures with psycopg_pool's keys, then ferropool's;
        *reset* zeroes the counters after reading them."""
    def histograms(self, reset: bool = False) -> dict[str, tuple[list[float], list[int], float]]:
        """wait_time, usage_time and connect_time: (upper bounds in seconds,
        cumulative counts with +Inf last, sum in seconds)."""
    @property
    def name(self) -> str: ...
    @property
    def min_size(self) -> int: ...
    @property
    def max_size(self) -> int:
        """max_size as configured (0: no bound, null pools)."""
    @property
    def size(self) -> int:
        """Idle + in use + being opened."""
    @property
    def available(self) -> int:
        """Idle connections."""
    @property
    def waiting(self) -> int:
        """Requests queued."""
    @property
    def is_open(self) -> bool:
        """Accepting requests: False before open() and after close()."""
    @property
    def was_opened(self) -> bool:
        """open() was called, even if the pool is closed since."""
    @property
    def max_connecting(self) -> int:
        """Connections opened at once to serve waiting requests."""
    @property
    def lifo(self) -> bool:
        """True: the connection returned last is lent first; False: use is
        spread over the idle connections."""
    max_waiting: int
    """Requests allowed to queue at once; 0: no bound."""
    max_lifetime: float
    """Seconds before a connection opened from now on is retired."""
    max_idle: float
    """Seconds an idle connection above min_size is kept."""
    reconnect_timeout: float
    """Seconds of failed attempts before GAVE_UP."""
    max_uses: int
    """Checkouts before a connection is retired; 0: no bound."""
    liveness_bypass: float | None
    """Idle seconds after which a checkout polls the socket; None: off."""
    keepalive_interval: float | None
    """Idle seconds after which a connection is pinged; None: off."""
    leak_timeout: float | None
    """Lease seconds after which a LEAK action reports it; None: off."""
    @property
    def paused(self) -> bool:
        """Between pause() and resume()."""
    @property
    def last_connect_error(self) -> str | None:
        """The last error met opening a connection, since the last success."""

@disjoint_base
class Lender(Generic[_C]):
    """The native base of ``ConnectionPool``: getconn, putconn and
    connection() in Rust. A borrow of an idle connection and its return are
    one call each; anything more comes back to the subclass's
    ``_getconn_slow``, ``_putconn_slow``, ``_enter_block`` and
    ``_exit_block`` and to the runner bound with ``_bind``."""

    def __new__(cls, *_args: Any, **_kwargs: Any) -> Self:
        """Accepts (and ignores) the subclass's constructor arguments."""
    @classmethod
    def __class_getitem__(cls, _item: Any) -> type[Self]:
        """Subscripting the class (for type checkers) gives the class."""
    def _bind(self, core: Core, runner: Any, overridden: bool) -> None:
        """Bind the pool to its *core* and *runner* (the slow path);
        *overridden*: its class overrides getconn or putconn, so blocks call
        them. Once, from the subclass's __init__."""
    @property
    def close_returns(self) -> bool:
        """True: a connection's close() gives it back to the pool instead
        of closing it (psycopg reads this)."""
    @close_returns.setter
    def close_returns(self, value: bool) -> None: ...
    def getconn(self, timeout: float | None = None) -> _C:
        """Borrow a connection; give it back with `putconn()`.

        Prefer `connection()`. Waits up to *timeout* (or `self.timeout`)
        seconds, raising PoolTimeout.
        """
    def putconn(self, conn: _C) -> None:
        """Give back a connection borrowed with `getconn()`."""
    def connection(self, timeout: float | None = None) -> Block[_C]:
        """Context manager lending a connection for the duration of a block.

        Waits up to *timeout* (or `self.timeout`) seconds, raising
        PoolTimeout. On exit the transaction is committed, or rolled back if
        the block raised, and the connection goes back to the pool (replaced
        if it is broken).
        """

@disjoint_base
class AsyncLender(Generic[_C]):
    """The native base of ``AsyncConnectionPool``: connection() and the fast
    path of getconn and putconn (``_getconn``, ``_putconn``), returning
    awaitables (already done when the fast path did everything)."""

    def __new__(cls, *_args: Any, **_kwargs: Any) -> Self:
        """Accepts (and ignores) the subclass's constructor arguments."""
    @classmethod
    def __class_getitem__(cls, _item: Any) -> type[Self]:
        """Subscripting the class (for type checkers) gives the class."""
    def _bind(self, core: Core, runner: Any, overridden: bool) -> None:
        """Bind the pool to its *core* and *runner* (the slow path);
        *overridden*: its class overrides getconn or putconn, so blocks call
        them. Once, from the subclass's __init__."""
    @property
    def close_returns(self) -> bool:
        """True: a connection's close() gives it back to the pool instead
        of closing it (psycopg reads this)."""
    @close_returns.setter
    def close_returns(self, value: bool) -> None: ...
    def _getconn(self, timeout: float | None = None) -> Awaitable[_C]:
        """The fast path of getconn(): an awaitable giving the connection."""
    def _putconn(self, conn: _C) -> Awaitable[None]:
        """The fast path of putconn(): an awaitable finishing the return."""
    def connection(self, timeout: float | None = None) -> AsyncBlock[_C]:
        """Context manager lending a connection for the duration of a block.

        Waits up to *timeout* (or `self.timeout`) seconds, raising
        PoolTimeout. On exit the transaction is committed, or rolled back if
        the block raised, and the connection goes back to the pool (replaced
        if it is broken).
        """

@final
class Block(Generic[_C]):
    """What ``ConnectionPool.connection()`` returns: a connection lent for
    one ``with`` block, committed (or rolled back if the block raised) and
    given back at its end. One entry at a time: entering it again before it
    exits raises RuntimeError."""

    @classmethod
    def __class_getitem__(cls, _item: Any) -> type[Self]: ...
    def __enter__(self) -> _C: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
        /,
    ) -> None: ...
    def _hold(self, conn: _C) -> None:
        """Slow path: the block now holds *conn*."""
    def _release(self) -> None:
        """Slow path: the block is free to enter again."""

@final
class AsyncBlock(Generic[_C]):
    """What ``AsyncConnectionPool.connection()`` returns: a connection lent
    for one ``async with`` block. On the fast path its entry and exit
    return awaitables that are already done."""

    @classmethod
    def __class_getitem__(cls, _item: Any) -> type[Self]: ...
    def __aenter__(self) -> Awaitable[_C]: ...
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
        /,
    ) -> Awaitable[None]: ...
    def _hold(self, conn: _C) -> None:
        """Slow path: the block now holds *conn*."""
    def _release(self) -> None:
        """Slow path: the block is free to enter again."""

@final
class Ready(Generic[_T]):
    """An awaitable that is already done: awaiting it gives its value at
    once, without a trip through the event loop."""

    def __await__(self) -> Generator[Any, None, _T]: ...
    def __iter__(self) -> Generator[Any, None, _T]: ...
    def __next__(self) -> Any:
        """Done at once: StopIteration carrying the value."""
