"""Prometheus metrics for ferropool pools: a prometheus_client collector.

``PoolCollector(pool)`` registers with prometheus_client's default registry
(or the one given) and, at each scrape, reads the pools' stats and
histograms from the Rust core: nothing is recorded on the hot path, and a
scrape costs a few microseconds per pool. It must never reset the pools'
figures: counters are running totals (``ferropool.metrics.Totals``), so they
never go backwards, even across ``pop_stats()`` or a fork.

Exported, each with the label ``pool`` (the pool's name), under the
namespace ``ferropool`` by default:

- gauges ``ferropool_pool_size``, ``_pool_available``, ``_requests_waiting``,
  ``_pool_min``, ``_pool_max``, ``_paused``;
- counters ``ferropool_requests_total``, ``_requests_queued_total``,
  ``_requests_wait_seconds_total``, ``_requests_errors_total``, ... one for
  each counter of ``get_stats()`` (times in seconds);
- histograms ``ferropool_wait_time_seconds``, ``_usage_time_seconds`` and
  ``_connect_time_seconds``, with the core's 30 power-of-two buckets from
  ~1 us to ~9 min.

Needs the ``prometheus`` extra: ``pip install ferropool[prometheus]``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.utils import floatToGoString
except ImportError as ex:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ferropool.metrics.prometheus needs prometheus_client: pip install 'ferropool[prometheus]'"
    ) from ex

from . import COUNTERS, GAUGES, HISTOGRAMS, MeteredPool, Reading, Totals, metered

# prometheus_client's own formatting of bucket bounds (untyped there).
_le: Callable[[float], str] = floatToGoString

__all__ = ["PoolCollector"]

LABEL = "pool"


class PoolCollector:
    """Exports one or more pools' figures to Prometheus.

    *pools*: a pool or an iterable of pools (sync or async, full or null);
    more can be added with `add()`. Pools are held weakly: one that is
    garbage-collected disappears from the output. Their names must differ,
    as they are the ``pool`` label.

    *registry*: where to register, prometheus_client's default registry
    unless given; None to register nowhere (call ``registry.register()``
    yourself). Register one PoolCollector per registry: a second one would
    export the same metric names, which the registry refuses.

    *namespace*: the metric names' prefix.
    """

    def __init__(
        self,
        pools: MeteredPool | Iterable[MeteredPool] = (),
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "ferropool",
    ) -> None:
        if not namespace or not namespace.replace("_", "a").isalnum():
            raise ValueError(f"namespace must be a metric name prefix, got {namespace!r}")
        self._namespace = namespace
        self._lock = threading.Lock()
        # Pools by name, held weakly, with the running totals of each.
        self._pools: dict[str, tuple[weakref.ref[MeteredPool], Totals]] = {}
        if isinstance(pools, Iterable):
            for pool in pools:
                self.add(pool)
        else:
            self.add(pools)
        if registry is not None:
            registry.register(self)

    def add(self, pool: MeteredPool) -> None:
        """Export *pool* too; ValueError if a pool of that name is exported."""
        pool = metered(pool)
        with self._lock:
            self._forget_dead()
            if pool.name in self._pools:
                raise ValueError(
                    f"a pool named {pool.name!r} is already exported by this collector:"
                    " give pools distinct names (name=...)"
                )
            self._pools[pool.name] = (weakref.ref(pool), Totals(pool))

    def remove(self, pool: MeteredPool) -> None:
        """Stop exporting *pool* (KeyError if it is not exported)."""
        with self._lock:
            entry = self._pools.get(pool.name)
            if entry is None or entry[0]() is not pool:
                raise KeyError(f"pool {pool.name!r} is not exported by this collector")
            del self._pools[pool.name]

    @property
    def pools(self) -> list[MeteredPool]:
        """The pools exported, live ones only."""
        with self._lock:
            return [p for ref, _ in self._pools.values() if (p := ref()) is not None]

    def _forget_dead(self) -> None:
        for name in [n for n, (ref, _) in self._pools.items() if ref() is None]:
            del self._pools[name]

    # ---- the collector protocol ------------------------------------------

    def describe(self) -> list[Metric]:
        """The metric families, without samples (used at registration)."""
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        """Read every pool now and yield its metric families."""
        with self._lock:
            self._forget_dead()
            # The pools themselves, so none is collected while being read.
            entries = [(name, ref(), totals) for name, (ref, totals) in self._pools.items()]
        readings = [(name, totals.read()) for name, pool, totals in entries if pool is not None]
        del entries
        return self._families(readings)

    def _families(self, readings: list[tuple[str, Reading]] | None = None) -> Iterator[Metric]:
        ns = self._namespace
        readings = readings or []
        for key, doc in GAUGES.items():
            gauge = GaugeMetricFamily(f"{ns}_{key}", doc, labels=[LABEL])
            for name, r in readings:
                gauge.add_metric([name], r.stats.get(key, 0))
            yield gauge
        for key, counter in COUNTERS.items():
            family = CounterMetricFamily(f"{ns}_{counter.name}", counter.help, labels=[LABEL])
            for name, r in readings:
                family.add_metric([name], r.totals[key] * counter.scale)
            yield family
        for key, doc in HISTOGRAMS.items():
            hist = HistogramMetricFamily(f"{ns}_{key}_seconds", doc, labels=[LABEL])
            for name, r in readings:
                h = r.histograms[key]
                buckets = [(_le(bound), float(n)) for bound, n in h.buckets()]
                hist.add_metric([name], buckets, h.sum)
            yield hist
