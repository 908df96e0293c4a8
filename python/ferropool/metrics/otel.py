"""OpenTelemetry metrics for ferropool pools, per the db.client.connection.*
semantic conventions.

``instrument(pool)`` publishes a pool through a MeterProvider (the global
one unless given), with the attribute ``db.client.connection.pool.name``:

============================================  =================  ==========================
instrument                                    kind               value
============================================  =================  ==========================
db.client.connection.count                    observable         connections, by
                                              up-down counter    ``db.client.connection.state``
                                                                 ``idle`` or ``used``
db.client.connection.idle.max                 observable u-d     max_size (0 for null pools)
db.client.connection.idle.min                 observable u-d     min_size (0 for null pools)
db.client.connection.max                      observable u-d     max_size (unbounded null
                                                                 pools: not reported)
db.client.connection.pending_requests         observable u-d     requests waiting
db.client.connection.timeouts                 observable counter requests that got no
                                                                 connection (``requests_errors``)
db.client.connection.create_time              histogram (s)      time to open a connection
db.client.connection.wait_time                histogram (s)      time to obtain a connection
db.client.connection.use_time                 histogram (s)      checkout to return
============================================  =================  ==========================

Nothing runs on the hot path: every value is read from the Rust core by a
callback when the meter provider collects. OpenTelemetry has no observable
histogram, so the three histograms are synchronous instruments (with the
core's bucket bounds as advice) fed at collection time with what the core
recorded since the previous collection: each observation is replayed into
its bucket, at a value chosen so the sum matches the core's. A request
served at once, without queueing, counts in wait_time as a wait of 0. The
replay costs one ``Histogram.record()`` (a few microseconds with the SDK)
per checkout, on the collecting thread: for pools lending more than a few
thousand connections a second, pass ``histograms=False`` (and export the
histograms with ``ferropool.metrics.prometheus``, which costs the same
whatever the traffic).

Needs the ``otel`` extra: ``pip install ferropool[otel]``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation
except ImportError as ex:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ferropool.metrics.otel needs opentelemetry-api: pip install 'ferropool[otel]'"
    ) from ex

from .. import __version__
from . import Histogram as CoreHistogram
from . import MeteredPool, Totals, metered
from . import histograms as histograms_of

__all__ = ["POOL_NAME", "STATE", "Instrumentation", "instrument"]

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"

# The core's histograms, by the semantic conventions' instrument names.
_HISTOGRAMS = {
    "db.client.connection.create_time": (
        "connect_time",
        "The time it took to create a new connection",
    ),
    "db.client.connection.wait_time": (
        "wait_time",
        "The time it took to obtain an open connection from the pool",
    ),
    "db.client.connection.use_time": (
        "usage_time",
        "The time between borrowing a connection and returning it to the pool",
    ),
}


class Instrumentation:
    """A pool published through a meter provider; `stop()` unpublishes it."""

    def __init__(self, export: _Export, entry: _Entry) -> None:
        self._export = export
        self._entry = entry

    @property
    def pool_name(self) -> str:
        return self._entry.name

    def stop(self) -> None:
        """Stop reporting the pool (its last values are no longer observed)."""
        self._export.remove(self._entry)


def instrument(
    pool: MeteredPool,
    meter_provider: MeterProvider | None = None,
    *,
    histograms: bool = True,
) -> Instrumentation:
    """Publish *pool*'s metrics through *meter_provider* (default: the global one).

    Several pools may share a provider; their names (the
    ``db.client.connection.pool.name`` attribute) must differ. The pool is
    held weakly: once garbage-collected it is no longer reported.
    *histograms*: also publish create_time, wait_time and use_time (see
    the module's documentation for their cost).
    """
    pool = metered(pool)
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _exports_lock:
        export = _exports.get(provider)
        if export is None:
            bounds = list(histograms_of(pool)["wait_time"].bounds)
            export = _exports[provider] = _Export(provider, bounds)
    return Instrumentation(export, export.add(pool, histograms))


class _Entry:
    """One published pool: what was replayed of its histograms so far."""

    def __init__(self, pool: MeteredPool, histograms: bool) -> None:
        self.ref = weakref.ref(pool)
        self.name = pool.name
        self.null = bool(getattr(pool, "_null", False))
        self.attributes = {POOL_NAME: pool.name}
        self.histograms = histograms
        self.totals = Totals(pool)
        self.lock = threading.Lock()
        # Per core histogram: the running totals already replayed.
        self.replayed: dict[str, CoreHistogram] = {}
        # Requests served and requests queued already replayed as waits.
        self.served = 0

    def replay(self, instruments: dict[str, Histogram]) -> None:
        """Record into *instruments* what the core observed since last time."""
        if not self.histograms or self.ref() is None:
            return
        with self.lock:
            reading = self.totals.read()
            for otel_name, (core_name, _) in _HISTOGRAMS.items():
                total = reading.histograms[core_name]
                last = self.replayed.get(core_name)
                new = total if last is None else total.since(last)
                self.replayed[core_name] = total
                _record(instruments[otel_name], new, self.attributes)
            # Requests served without queueing waited (almost) nothing.
            served = reading.totals["requests_num"] - reading.totals["requests_queued"]
            immediate, self.served = max(served - self.served, 0), max(served, self.served)
            wait_time = instruments["db.client.connection.wait_time"]
            for _ in range(immediate):
                wait_time.record(0.0, self.attributes)


def _record(instrument: Histogram, new: CoreHistogram, attributes: dict[str, Any]) -> None:
    """Replay *new*'s observations into *instrument*, bucket by bucket.

    Each bucket's observations are recorded at one value inside the bucket,
    the same fraction of the way through every bucket, chosen so their sum
    is the core's sum (exact while the sum is within the buckets' limits).
    """
    counts = []
    previous = 0
    for cumulative in new.cumulative:
        counts.append(cumulative - previous)
        previous = cumulative
    if not previous:
        return
    bounds = list(new.bounds)
    # Bucket i holds (lows[i], highs[i]]; the last one, past the bounds, is
    # given a nominal width of twice its lower bound.
    lows = [0.0, *bounds]
    highs = [*bounds, bounds[-1] * 4]
    low_sum = sum(n * lo for n, lo in zip(counts, lows, strict=True))
    high_sum = sum(n * hi for n, hi in zip(counts, highs, strict=True))
    share = (new.sum - low_sum) / (high_sum - low_sum) if high_sum > low_sum else 1.0
    share = min(max(share, 0.0), 1.0)
    for n, lo, hi in zip(counts, lows, highs, strict=True):
        if n:
            # Strictly above a bucket's lower bound, or it would fall in the
            # bucket below (the first bucket has none: 0 is in it).
            value = lo + (hi - lo) * (share if lo == 0 else max(share, 0.001))
            for _ in range(n):
                instrument.record(value, attributes)


class _Export:
    """The instruments of one meter provider, and the pools they report."""

    def __init__(self, provider: MeterProvider, bounds: list[float]) -> None:
        meter = provider.get_meter("ferropool", __version__)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._histograms: dict[str, Histogram] = {}
        for name, (_, description) in _HISTOGRAMS.items():
            try:
                hist = meter.create_histogram(
                    name, unit="s", description=description,
                    explicit_bucket_boundaries_advisory=bounds,
                )  # fmt: skip
            except TypeError:  # opentelemetry-api < 1.23: no bucket advice
                hist = meter.create_histogram(name, unit="s", description=description)
            self._histograms[name] = hist
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            [self._count],
            unit="{connection}",
            description="The number of connections that are currently in state described by"
            " the state attribute",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.idle.max",
            [self._gauge(lambda s, null: 0 if null else s["pool_max"])],
            unit="{connection}",
            description="The maximum number of idle open connections allowed",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.idle.min",
            [self._gauge(lambda s, null: 0 if null else s["pool_min"])],
            unit="{connection}",
            description="The minimum number of idle open connections allowed",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            [self._gauge(lambda s, null: s["pool_max"] if s["pool_max"] or not null else None)],
            unit="{connection}",
            description="The maximum number of open connections allowed",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            [self._gauge(lambda s, null: s["requests_waiting"])],
            unit="{request}",
            description="The number of current pending requests for an open connection",
        )
        meter.create_observable_counter(
            "db.client.connection.timeouts",
            [self._timeouts],
            unit="{timeout}",
            description="The number of connection requests that got no connection:"
            " timed out, refused (max_waiting) or failed by a closing pool",
        )

    def add(self, pool: MeteredPool, histograms: bool) -> _Entry:
        with self._lock:
            self._forget_dead()
            if pool.name in self._entries:
                raise ValueError(
                    f"a pool named {pool.name!r} is already published through this meter"
                    " provider: give pools distinct names (name=...)"
                )
            entry = self._entries[pool.name] = _Entry(pool, histograms)
        return entry

    def remove(self, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(entry.name) is entry:
                del self._entries[entry.name]

    def _forget_dead(self) -> None:
        for name in [n for n, e in self._entries.items() if e.ref() is None]:
            del self._entries[name]

    def _live(self) -> Iterator[tuple[_Entry, MeteredPool]]:
        with self._lock:
            self._forget_dead()
            entries = list(self._entries.values())
        for entry in entries:
            pool = entry.ref()
            if pool is not None:
                yield entry, pool

    # ---- callbacks (run by the meter provider at each collection) ---------

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        # The first callback of a collection: replay the histograms first,
        # so they are part of this collection.
        observations = []
        for entry, pool in self._live():
            entry.replay(self._histograms)
            stats = pool.get_stats()
            idle = stats["pool_available"]
            used = max(stats["pool_size"] - idle, 0)
            observations.append(Observation(idle, {**entry.attributes, STATE: "idle"}))
            observations.append(Observation(used, {**entry.attributes, STATE: "used"}))
        return observations

    def _gauge(self, value: Any) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            observations = []
            for entry, pool in self._live():
                v = value(pool.get_stats(), entry.null)
                if v is not None:
                    observations.append(Observation(v, entry.attributes))
            return observations

        return callback

    def _timeouts(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(entry.totals.read().totals["requests_errors"], entry.attributes)
            for entry, _ in self._live()
        ]


_exports_lock = threading.Lock()
_exports: weakref.WeakKeyDictionary[Any, _Export] = weakref.WeakKeyDictionary()
