"""Type stubs for the native module built from rust/ferropool-py.

Checked against the built module by ``python -m mypy.stubtest
ferropool._core``: every name, signature and property here exists there,
and nothing public there is missing here.
"""

from collections.abc import Callable
from typing import Any, ClassVar, Final, final

from typing_extensions import Self

__all__ = [
    "MAX_POOL_SIZE",
    "Action",
    "ActionKind",
    "ConnectOutcome",
    "Core",
    "Leak",
    "Ticket",
    "Waiting",
]

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
    """A queued request whose end is signalled by a callback."""

    def finish(self) -> Any:
        """The granted connection, or (null pools) a Ticket to open one on;
        PoolTimeout if none came in time, PoolClosed if the pool closed."""
    def cancel(self) -> Any | None: ...
    @property
    def resolved(self) -> bool: ...

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
    def open(self) -> None: ...
    def checkout(self) -> Any | None: ...
    def wait(self, timeout: float) -> Any:
        """Wait up to *timeout* seconds in FIFO order: a connection, or
        (null pools with capacity) a Ticket to open one on."""
    def wait_async(self, timeout: float, waker: Callable[[], object]) -> Any: ...
    def checkin(self, conn: Any) -> str | None: ...
    def discard(self, conn: Any, returned: bool) -> None: ...
    def next_action(self, timeout: float) -> Action | None:
        """The next maintenance action, waiting up to *timeout* seconds with
        the GIL released; None on timeout."""
    def claim_validation(self, ticket: Ticket) -> Any | None: ...
    def reclaim(self, conn: Any) -> None: ...
    def failover_from(self, conn: Any) -> list[Any] | None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def connected(self, ticket: Ticket, conn: Any, took: float, fd: int | None = None) -> bool: ...
    def connect_failed(self, ticket: Ticket, message: str) -> ConnectOutcome:
        """Report a failed attempt on *ticket* (*message* free of secrets)."""
    def connected_to_caller(
        self, ticket: Ticket, conn: Any, took: float, fd: int | None = None
    ) -> bool: ...
    def connect_failed_caller(self, ticket: Ticket, message: str) -> None: ...
    def close(self) -> list[Any]: ...
    def drain(self) -> list[Any]: ...
    def resize(self, min_size: int, max_size: int) -> list[Any]: ...
    def take_for_check(self) -> list[Any]: ...
    def wait_ready(self, timeout: float) -> bool: ...
    def stats(self, reset: bool = False) -> dict[str, int]: ...
    def histograms(
        self, reset: bool = False
    ) -> dict[str, tuple[list[float], list[int], float]]: ...
    @property
    def name(self) -> str: ...
    @property
    def min_size(self) -> int: ...
    @property
    def max_size(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def available(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def is_open(self) -> bool:
        """Accepting requests: False before open() and after close()."""
    @property
    def was_opened(self) -> bool:
        """open() was called, even if the pool is closed since."""
    @property
    def max_connecting(self) -> int: ...
    @property
    def lifo(self) -> bool:
        """True: the connection returned last is lent first; False: use is
        spread over the idle connections."""
    max_waiting: int
    max_lifetime: float
    max_idle: float
    reconnect_timeout: float
    max_uses: int
    liveness_bypass: float | None
    keepalive_interval: float | None
    leak_timeout: float | None
    @property
    def paused(self) -> bool: ...
    @property
    def last_connect_error(self) -> str | None: ...
