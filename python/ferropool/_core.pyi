"""Type stubs for the native module built from rust/ferropool-py."""

from collections.abc import Callable
from typing import Any, Final, final

from typing_extensions import Self

__all__ = [
    "ACTION_CLOSE",
    "ACTION_CREATE",
    "ACTION_LEAK",
    "ACTION_STOP",
    "ACTION_VALIDATE",
    "MAX_POOL_SIZE",
    "Core",
    "Ticket",
    "Waiting",
]

ACTION_CREATE: Final[int]
ACTION_CLOSE: Final[int]
ACTION_STOP: Final[int]
ACTION_VALIDATE: Final[int]
ACTION_LEAK: Final[int]
MAX_POOL_SIZE: Final[int]

@final
class Ticket:
    """A claim on a reserved slot: open a connection and report it back."""

@final
class Waiting:
    """A queued request whose end is signalled by a callback."""

    def finish(self) -> Any: ...
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
        lifetime_jitter: float,
        liveness_bypass: float | None,
        keepalive_interval: float | None,
        leak_timeout: float | None,
    ) -> Self: ...
    def open(self) -> None: ...
    def checkout(self) -> Any | None: ...
    def wait(self, timeout: float) -> Any: ...
    def wait_async(self, timeout: float, waker: Callable[[], object]) -> Any: ...
    def checkin(self, conn: Any) -> str | None: ...
    def discard(self, conn: Any, returned: bool) -> None: ...
    def next_action(self, timeout: float) -> tuple[int, Ticket | None, Any | None, Any] | None: ...
    def claim_validation(self, ticket: Ticket) -> Any | None: ...
    def reclaim(self, conn: Any) -> None: ...
    def failover_from(self, conn: Any) -> list[Any] | None: ...
    def sockets(self) -> list[int]: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def connected(self, ticket: Ticket, conn: Any, took: float, fd: int | None = None) -> bool: ...
    def connect_failed(self, ticket: Ticket, message: str) -> tuple[str, float]: ...
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
