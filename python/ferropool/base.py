"""What every pool class shows of its runner: sizes, settings, stats.

``ConnectionPool`` and its async and null variants, and the DB-API pool,
inherit this; each is a thin shell whose runner (ferropool.runner) does the
work. Nothing here does I/O: the methods that wait or talk to the server
are the shells' own, in their sync or async flavour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .runner import checks, registry
from .runner.base import RunnerBase

if TYPE_CHECKING:
    from .metrics import Histogram
    from .metrics.advice import Finding


class PoolBase:
    """Sizes, settings and figures of a pool, read from its runner."""

    _runner: RunnerBase[Any]

    def _attach(self, runner: RunnerBase[Any]) -> None:
        self._runner = runner
        registry.register(self, runner)

    def __repr__(self) -> str:
        cls = type(self)
        return f"<{cls.__module__}.{cls.__name__} {self.name!r} at 0x{id(self):x}>"

    @property
    def name(self) -> str:
        return self._runner.name

    @property
    def closed(self) -> bool:
        """True if the pool is closed (or not open yet)."""
        return not self._runner.core.is_open

    # ---- sizes and settings ----------------------------------------------------

    @property
    def min_size(self) -> int:
        return self._runner.core.min_size

    @property
    def max_size(self) -> int:
        return self._runner.core.max_size

    @property
    def timeout(self) -> float:
        """Seconds a request waits for a connection by default."""
        return self._runner.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._runner.timeout = checks.seconds("timeout", value)

    @property
    def num_workers(self) -> int:
        return self._runner.settings.num_workers

    @property
    def max_connecting(self) -> int:
        return self._runner.settings.max_connecting

    @property
    def max_waiting(self) -> int:
        return self._runner.core.max_waiting

    @max_waiting.setter
    def max_waiting(self, value: int) -> None:
        self._runner.core.max_waiting = checks.integer(
            "max_waiting", value, maximum=checks.MAX_WAITING
        )

    @property
    def max_lifetime(self) -> float:
        return self._runner.core.max_lifetime

    @max_lifetime.setter
    def max_lifetime(self, value: float) -> None:
        self._runner.core.max_lifetime = checks.seconds("max_lifetime", value, positive=True)

    @property
    def max_idle(self) -> float:
        return self._runner.core.max_idle

    @max_idle.setter
    def max_idle(self, value: float) -> None:
        self._runner.core.max_idle = checks.seconds("max_idle", value, positive=True)

    @property
    def reconnect_timeout(self) -> float:
        return self._runner.core.reconnect_timeout

    @reconnect_timeout.setter
    def reconnect_timeout(self, value: float) -> None:
        self._runner.core.reconnect_timeout = checks.seconds("reconnect_timeout", value)

    @property
    def max_uses(self) -> int:
        return self._runner.core.max_uses

    @max_uses.setter
    def max_uses(self, value: int) -> None:
        self._runner.core.max_uses = checks.integer("max_uses", value)

    @property
    def liveness_bypass(self) -> float | None:
        return self._runner.core.liveness_bypass

    @liveness_bypass.setter
    def liveness_bypass(self, value: float | None) -> None:
        self._runner.core.liveness_bypass = checks.optional_seconds("liveness_bypass", value)

    @property
    def keepalive_interval(self) -> float | None:
        return self._runner.core.keepalive_interval

    @keepalive_interval.setter
    def keepalive_interval(self, value: float | None) -> None:
        self._runner.core.keepalive_interval = checks.optional_positive_seconds(
            "keepalive_interval", value
        )

    @property
    def leak_timeout(self) -> float | None:
        return self._runner.core.leak_timeout

    @property
    def expect_primary(self) -> bool:
        return self._runner.settings.expect_primary

    @property
    def lifo(self) -> bool:
        """True: the connection returned last is lent first; False (the
        default): use is spread over the idle connections."""
        return self._runner.core.lifo

    # ---- pausing ---------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True between pause() and resume()."""
        return self._runner.core.paused

    def pause(self) -> None:
        """Hold back new checkouts: they wait (up to their timeout) until
        resume(). Connections already lent are unaffected."""
        self._runner.pause()

    def resume(self) -> None:
        """Serve the requests held back by pause(), oldest first."""
        self._runner.resume()

    # ---- figures ------------------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """Current counters and measures, with psycopg_pool's keys."""
        return self._runner.core.stats()

    def pop_stats(self) -> dict[str, int]:
        """Like `get_stats()`, then reset the counters to zero."""
        return self._runner.core.stats(reset=True)

    def get_histograms(self, reset: bool = False) -> dict[str, Histogram]:
        """Histograms of ``wait_time`` (queued requests only), ``usage_time``
        and ``connect_time``, in seconds, as kept by the core since the pool
        was created (or last reset, with *reset*): see ferropool.metrics."""
        from .metrics import histograms

        return histograms(self, reset)

    def advice(self) -> list[Finding]:
        """Whether the pool looks too small, too large or leaking, from its
        figures since the previous calls (or a watcher's samples): see
        ferropool.metrics.advice. Each call takes a sample."""
        from .metrics.advice import advise

        return advise(self)
