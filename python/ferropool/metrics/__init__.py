"""Reading a pool's figures for monitoring: histograms, counters, exporters.

The Rust core keeps every counter and histogram; this package only reads
them (``Core.stats()``, ``Core.histograms()``), off the hot path, when an
exporter is scraped or advice is asked for. It must never run on a checkout
or a return, never reset the core's figures (``pop_stats()`` belongs to the
user), and never import prometheus_client or OpenTelemetry: the exporters
live in ``ferropool.metrics.prometheus`` and ``ferropool.metrics.otel``,
each behind its optional extra.

What is here:

- ``Histogram``: one histogram snapshot (bucket bounds in seconds,
  cumulative counts, sum), with ``count``, ``mean``, ``quantile()`` and
  ``since()`` for the figures of a window.
- ``histograms(pool)``: the pool's three histograms, ``wait_time``,
  ``usage_time`` and ``connect_time`` (what ``pool.get_histograms()`` returns).
- ``GAUGES`` and ``COUNTERS``: what each ``get_stats()`` key means, for the
  exporters.
- ``Totals``: a pool's counters and histograms as running totals that never
  go backwards, although ``pop_stats()``, ``get_histograms(reset=True)`` or a
  fork (a new core in the child) restart the core's from zero.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Protocol

from ..runner import registry

__all__ = [
    "COUNTERS",
    "GAUGES",
    "HISTOGRAMS",
    "Histogram",
    "MeteredPool",
    "Totals",
    "histograms",
    "metered",
]


class MeteredPool(Protocol):
    """What the metrics read from a pool: every ferropool pool has it
    (ConnectionPool, NullConnectionPool, the async pools, and the adapters'
    pools: ``ferropool.adapters.dbapi.Pool``, the psycopg2 drop-ins, the
    SQLAlchemy pool's ``.ferropool``)."""

    @property
    def name(self) -> str: ...

    def get_stats(self) -> dict[str, int]: ...

    @property
    def closed(self) -> bool: ...


def metered(pool: object) -> MeteredPool:
    """*pool*, checked to be a ferropool pool (TypeError otherwise): one that
    registered its runner (ferropool.runner.registry)."""
    registry.runner_of(pool)
    return pool  # type: ignore[return-value]


# The core's histograms, by name, with what each measures.
HISTOGRAMS: dict[str, str] = {
    "wait_time": "Time requests waited in the queue for a connection (queued requests only)",
    "usage_time": "Time connections were lent to borrowers, from checkout to return",
    "connect_time": "Time taken to open new connections",
}

# get_stats() keys that are levels (they go up and down).
GAUGES: dict[str, str] = {
    "pool_min": "Connections kept open even when idle (min_size)",
    "pool_max": "Upper bound on idle, in-use and opening connections (max_size)",
    "pool_size": "Connections open or being opened: idle, in use or opening",
    "pool_available": "Idle connections, ready to lend",
    "requests_waiting": "Requests waiting in the queue for a connection",
    "paused": "1 while the pool is paused (pause()), else 0",
}


@dataclass(frozen=True)
class Counter:
    """A get_stats() key that only grows: its exported name and unit scale."""

    name: str
    help: str
    # Multiplier from the stats' unit to the exported one (ms -> s).
    scale: float = 1.0


# get_stats() keys that only grow (between pop_stats() calls).
COUNTERS: dict[str, Counter] = {
    "requests_num": Counter("requests", "Connection requests"),
    "requests_queued": Counter("requests_queued", "Requests that had to wait in the queue"),
    "requests_wait_ms": Counter(
        "requests_wait_seconds", "Time requests spent waiting in the queue", 1e-3
    ),
    "requests_errors": Counter(
        "requests_errors",
        "Requests that got no connection: timed out, refused (max_waiting), pool closed",
    ),
    "usage_ms": Counter("usage_seconds", "Time connections spent lent to borrowers", 1e-3),
    "returns_bad": Counter("returns_bad", "Connections returned broken or in a transaction"),
    "connections_num": Counter("connections", "Connections opened"),
    "connections_ms": Counter("connections_seconds", "Time spent opening connections", 1e-3),
    "connections_errors": Counter("connections_errors", "Failed connection attempts"),
    "connections_lost": Counter("connections_lost", "Connections found broken while idle"),
    "connections_retired": Counter(
        "connections_retired", "Connections closed for age, idleness, max_uses or a drain"
    ),
    "liveness_polls": Counter("liveness_polls", "Sockets polled at checkout (liveness_bypass)"),
    "liveness_suspects": Counter(
        "liveness_suspects", "Connections whose socket looked dead at checkout, sent for a ping"
    ),
    "keepalive_pings": Counter("keepalive_pings", "Background pings of idle connections"),
    "leaks_detected": Counter("leaks_detected", "Leases held past leak_timeout"),
    "leaks_reclaimed": Counter(
        "leaks_reclaimed", "Connections reclaimed after their borrower dropped them"
    ),
    "failovers": Counter("failovers", "Server shutdowns or role changes seen (failover drains)"),
}


@dataclass(frozen=True)
class Histogram:
    """One histogram: how many observations fell at or below each bound.

    ``bounds`` are the finite upper bounds in seconds, increasing (the
    core's: 30 powers of two from 1.024 us to ~550 s); ``cumulative[i]``
    counts the observations <= ``bounds[i]``, and its last element, one
    past the bounds, counts them all (the +Inf bucket); ``sum`` is their
    total in seconds.
    """

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        """Number of observations."""
        return self.cumulative[-1] if self.cumulative else 0

    @property
    def mean(self) -> float | None:
        """Mean observation in seconds, or None without observations."""
        count = self.count
        return self.sum / count if count else None

    def quantile(self, q: float) -> float | None:
        """Estimated *q*-quantile (0 <= q <= 1) in seconds, or None if empty.

        As Prometheus' histogram_quantile(): linear within the bucket that
        holds it; an observation past the last bound is reported as that
        bound.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be between 0 and 1, got {q}")
        count = self.count
        if not count:
            return None
        rank = q * count
        lower_bound, lower_count = 0.0, 0
        for bound, cumulative in zip(self.bounds, self.cumulative, strict=False):
            if cumulative >= rank and cumulative > lower_count:
                share = (rank - lower_count) / (cumulative - lower_count)
                return lower_bound + (bound - lower_bound) * share
            lower_bound, lower_count = bound, cumulative
        return self.bounds[-1] if self.bounds else None

    def since(self, earlier: Histogram) -> Histogram:
        """The observations made after *earlier* was taken.

        If some count went down, the histogram was reset in between, and
        everything in this one is newer than *earlier*: it is returned as is.
        """
        if self.bounds != earlier.bounds or len(self.cumulative) != len(earlier.cumulative):
            raise ValueError("histograms with different buckets")
        if any(a < b for a, b in zip(self.cumulative, earlier.cumulative, strict=True)):
            return self
        return Histogram(
            self.bounds,
            tuple(a - b for a, b in zip(self.cumulative, earlier.cumulative, strict=True)),
            max(self.sum - earlier.sum, 0.0),
        )

    def buckets(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) pairs, +Inf last."""
        return [*zip(self.bounds, self.cumulative, strict=False), (float("inf"), self.count)]


def histograms(pool: MeteredPool, reset: bool = False) -> dict[str, Histogram]:
    """The pool's histograms: ``wait_time``, ``usage_time``, ``connect_time``.

    With *reset*, the core's histograms restart from zero after being read
    (as ``pop_stats()`` does for the counters).
    """
    return {
        name: Histogram(tuple(bounds), tuple(cumulative), total)
        for name, (bounds, cumulative, total) in registry.runner_of(pool)
        .core.histograms(reset)
        .items()
    }


@dataclass(frozen=True)
class Reading:
    """A pool's figures at one moment, counters as running totals."""

    stats: dict[str, int]
    # get_stats() counters as totals that never go backwards.
    totals: dict[str, int]
    histograms: dict[str, Histogram]


class Totals:
    """A pool's counters and histograms as totals that never go backwards.

    The core's counters restart from zero on ``pop_stats()``, its
    histograms on ``get_histograms(reset=True)``, and both in a forked child
    (a new core). Exporters need monotonic counters: each ``read()`` adds
    what changed since the previous one; a figure that went down was reset,
    so all of its new value is new. What happened between the previous
    read and a reset is lost: programs that export metrics should read with
    ``get_stats()``, not ``pop_stats()``. Thread-safe.
    """

    def __init__(self, pool: MeteredPool) -> None:
        # Weak: exporters and advisors must not keep a dropped pool alive.
        self._pool = weakref.ref(pool)
        self._lock = threading.Lock()
        self._last_raw: dict[str, int] = {}
        self._totals: dict[str, int] = {}
        self._last_hist: dict[str, Histogram] = {}
        self._hist_totals: dict[str, Histogram] = {}

    def read(self) -> Reading:
        """Read the pool now; ReferenceError if it was garbage-collected."""
        pool = self._pool()
        if pool is None:
            raise ReferenceError("the pool was garbage-collected")
        stats = pool.get_stats()
        raw_hists = histograms(pool)
        with self._lock:
            for key in COUNTERS:
                raw = stats.get(key, 0)
                last = self._last_raw.get(key, 0)
                self._totals[key] = self._totals.get(key, 0) + (raw - last if raw >= last else raw)
                self._last_raw[key] = raw
            for name, hist in raw_hists.items():
                last_hist = self._last_hist.get(name)
                new = hist if last_hist is None else hist.since(last_hist)
                total = self._hist_totals.get(name)
                self._hist_totals[name] = new if total is None else _add(total, new)
                self._last_hist[name] = hist
            return Reading(stats, dict(self._totals), dict(self._hist_totals))


def _add(a: Histogram, b: Histogram) -> Histogram:
    return Histogram(
        a.bounds,
        tuple(x + y for x, y in zip(a.cumulative, b.cumulative, strict=True)),
        a.sum + b.sum,
    )
