"""Sizing advice from a pool's live figures: too small, too large, leaking.

The way operators read node-postgres' pool counters, automated: an
``Advisor`` keeps samples of a pool's figures (connections open, idle and
in use, requests waiting, and the counters and histograms of the Rust core)
over a sliding window, and reads three conditions from them:

- ``too_small``: requests waited for a connection for sustained periods
  while the pool was at max_size: requests were waiting in at least half
  of the samples, or the slowest 10 % of queued requests waited
  ``slow_wait`` (100 ms) or more, with 5 % of requests or more queued.
- ``too_large``: never more than a quarter of max_size in use: the peak
  in-use count seen in the samples, and the average given by the usage
  histogram (lease-seconds per second, by Little's law), stayed at or under
  max_size / 4, with no request queued (pools with max_size >= 4 that
  served some requests).
- ``leak``: every connection held and none returned for ``leak_after``
  seconds, with no failed connection attempt meanwhile (which would mean
  the server is down, not a leak).

A sample is taken at each ``advise()`` call (so ``pool.advice()`` called
now and then compares with the previous calls) and, with ``watch(pool)``,
by a background thread every *interval* seconds, which also logs each kind
of finding as a warning on the "ferropool" logger at most once per
*warn_every* seconds. The window is the last *window* seconds of samples;
findings need samples spanning at least *min_window* seconds. Peaks seen by
sampling can miss a burst shorter than the interval: the too-large check
also uses the average from the usage histogram, which misses nothing.

This module must never run on the hot path (it reads the core when asked
or from its own thread), never reset the pool's figures, and never hold a
pool alive: advisors and watchers keep weak references.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..runner import registry
from . import Histogram, MeteredPool, Totals, metered

__all__ = ["Advisor", "Finding", "Sample", "Watcher", "advise", "advisor_for", "watch"]

logger = logging.getLogger("ferropool")

Kind = Literal["too_small", "too_large", "leak"]

# Samples kept at most, whatever the window: bounds memory if advise() is
# called in a tight loop.
MAX_SAMPLES = 10_000

# Default min_window and leak_after, seconds.
DEFAULT_SPAN = 60.0


@dataclass(frozen=True)
class Finding:
    """Something the figures say about a pool's size or its borrowers.

    *kind*: ``too_small``, ``too_large`` or ``leak``; *message*: what was
    seen and what to do, for a person; *evidence*: the figures behind it,
    for a program (names in the message's terms: ``window_s``,
    ``max_size``, ``peak_in_use``, ``wait_p90_s``, ...).
    """

    kind: Kind
    pool: str
    message: str
    evidence: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """A pool's figures at one moment (counters as running totals)."""

    at: float
    size: int
    available: int
    waiting: int
    min_size: int
    max_size: int
    requests: int
    queued: int
    errors: int
    connect_errors: int
    wait: Histogram
    usage: Histogram

    @property
    def in_use(self) -> int:
        """Connections not idle: lent, or being opened."""
        return max(self.size - self.available, 0)


class Advisor:
    """Samples one pool's figures and reads findings from them.

    Thread-safe. Thresholds: *window* (seconds of samples kept, 300),
    *min_window* (the shortest span findings are read from, 60 or the
    window if shorter), *leak_after* (how long all connections must stay
    held with none returned, 60 or the window if shorter), *slow_wait* (a
    90th percentile of queued waits that counts as slow, 0.1).
    """

    def __init__(
        self,
        pool: MeteredPool,
        *,
        window: float = 300.0,
        min_window: float | None = None,
        leak_after: float | None = None,
        slow_wait: float = 0.1,
    ) -> None:
        pool = metered(pool)
        # Both default to a minute, or the whole window if it is shorter.
        if min_window is None:
            min_window = min(DEFAULT_SPAN, window)
        if leak_after is None:
            leak_after = min(DEFAULT_SPAN, window)
        _positive_seconds(
            window=window, min_window=min_window, leak_after=leak_after, slow_wait=slow_wait
        )
        for name, value in (("min_window", min_window), ("leak_after", leak_after)):
            if value > window:
                raise ValueError(f"{name} ({value}) cannot exceed window ({window})")
        self.window = float(window)
        self.min_window = float(min_window)
        self.leak_after = float(leak_after)
        self.slow_wait = float(slow_wait)
        self._pool = weakref.ref(pool)
        self._name = pool.name
        self._totals = Totals(pool)
        self._samples: deque[Sample] = deque(maxlen=MAX_SAMPLES)
        self._lock = threading.Lock()

    @property
    def samples(self) -> list[Sample]:
        """The samples in the window, oldest first."""
        with self._lock:
            return list(self._samples)

    def sample(self) -> Sample | None:
        """Read the pool's figures now; None if the pool is gone."""
        pool = self._pool()
        if pool is None:
            return None
        # Read under the lock: samples from the watcher and from advice()
        # calls are appended in time order.
        with self._lock:
            return self._sample_locked()

    def _sample_locked(self) -> Sample:
        reading = self._totals.read()
        stats, totals = reading.stats, reading.totals
        s = Sample(
            at=time.monotonic(),
            size=stats["pool_size"],
            available=stats["pool_available"],
            waiting=stats["requests_waiting"],
            min_size=stats["pool_min"],
            max_size=stats["pool_max"],
            requests=totals["requests_num"],
            queued=totals["requests_queued"],
            errors=totals["requests_errors"],
            connect_errors=totals["connections_errors"],
            wait=reading.histograms["wait_time"],
            usage=reading.histograms["usage_time"],
        )
        self._samples.append(s)
        # Keep one sample at or before the window's start, so the window is
        # covered in full.
        start = s.at - self.window
        while len(self._samples) > 2 and self._samples[1].at <= start:
            self._samples.popleft()
        return s

    def advise(self) -> list[Finding]:
        """Take a sample, then read the findings over the window."""
        self.sample()
        return self.findings()

    def findings(self) -> list[Finding]:
        """What the samples in the window say (no new sample taken)."""
        samples = self.samples
        if len(samples) < 2:
            return []
        leak = self._leak(samples)
        if leak is not None:
            # A leak starves the pool: "too small" would be the wrong cure.
            return [leak]
        found = []
        if samples[-1].at - samples[0].at >= self.min_window:
            for check in (self._too_small, self._too_large):
                finding = check(samples)
                if finding is not None:
                    found.append(finding)
        return found

    # ---- the conditions -----------------------------------------------------

    def _leak(self, samples: list[Sample]) -> Finding | None:
        last = samples[-1]
        if last.max_size == 0:
            return None  # an unbounded null pool cannot run out
        start = None
        for s in reversed(samples):
            held = s.in_use >= s.max_size and s.available == 0
            if not held or s.usage.count != last.usage.count:
                break
            if s.connect_errors != last.connect_errors:
                break
            start = s
        if start is None:
            return None
        held_for = last.at - start.at
        if held_for < self.leak_after:
            return None
        evidence = {
            "held_for_s": held_for,
            "in_use": float(last.in_use),
            "max_size": float(last.max_size),
            "waiting": float(last.waiting),
            "timeouts": float(last.errors - start.errors),
        }
        message = (
            f"pool {self._name!r} may be leaking connections: all {last.max_size} connections"
            f" held and none returned for {held_for:.0f} s ({last.waiting} requests waiting,"
            f" {last.errors - start.errors} timed out). Return every connection (prefer"
            " `with pool.connection()`); leak_timeout=SECONDS logs the stack of the code"
            " that took each one held longer"
        )
        return Finding("leak", self._name, message, evidence)

    def _too_small(self, samples: list[Sample]) -> Finding | None:
        first, last = samples[0], samples[-1]
        if last.max_size == 0:
            return None
        span = last.at - first.at
        requests = last.requests - first.requests
        queued = last.queued - first.queued
        if queued <= 0 or requests <= 0:
            return None
        if not any(s.max_size and s.size >= s.max_size for s in samples):
            return None  # still growing: waits for new connections are expected
        wait = last.wait.since(first.wait)
        p90 = wait.quantile(0.9) or 0.0
        # The samples' own state counts from the second one: the first only
        # opens the window.
        later = samples[1:]
        waiting_share = sum(1 for s in later if s.waiting > 0) / len(later)
        queued_share = queued / requests
        sustained = len(later) >= 3 and waiting_share >= 0.5
        slow = p90 >= self.slow_wait and queued_share >= 0.05
        if not (sustained or slow):
            return None
        usage = last.usage.since(first.usage)
        # Little's law: lease-seconds (wait-seconds) per second is the
        # average number of connections in use (requests waiting).
        mean_in_use = usage.sum / span
        mean_waiting = wait.sum / span
        demand = mean_in_use + mean_waiting
        timeouts = last.errors - first.errors
        evidence = {
            "window_s": span,
            "requests": float(requests),
            "queued": float(queued),
            "queued_share": queued_share,
            "waiting_samples_share": waiting_share,
            "wait_p90_s": p90,
            "mean_in_use": mean_in_use,
            "mean_waiting": mean_waiting,
            "timeouts": float(timeouts),
            "max_size": float(last.max_size),
        }
        message = (
            f"pool {self._name!r} looks too small: over the last {span:.0f} s, {queued} of"
            f" {requests} requests waited for a connection (requests waiting in"
            f" {waiting_share:.0%} of samples, 90% of waits under {p90 * 1000:.0f} ms,"
            f" {timeouts} timed out); demand averaged {demand:.1f} connections (in use +"
            f" waiting) against max_size={last.max_size}. Raise max_size, within the"
            " server's max_connections across all instances, or hold connections for less"
            " time"
        )
        return Finding("too_small", self._name, message, evidence)

    def _too_large(self, samples: list[Sample]) -> Finding | None:
        first, last = samples[0], samples[-1]
        if last.max_size < 4:
            return None
        span = last.at - first.at
        requests = last.requests - first.requests
        if requests < 20 or last.queued != first.queued:
            return None
        usage = last.usage.since(first.usage)
        mean_in_use = usage.sum / span
        peak = max(max(s.in_use for s in samples), math.ceil(mean_in_use))
        if peak > last.max_size // 4:
            return None
        suggested = max(2, 2 * peak)
        evidence = {
            "window_s": span,
            "requests": float(requests),
            "peak_in_use": float(peak),
            "mean_in_use": mean_in_use,
            "min_size": float(last.min_size),
            "max_size": float(last.max_size),
            "suggested_max_size": float(suggested),
        }
        message = (
            f"pool {self._name!r} looks too large: over the last {span:.0f} s and {requests}"
            f" requests, never more than {peak} of its max_size={last.max_size} connections"
            f" were in use ({mean_in_use:.2f} on average). max_size={suggested}"
            f"{f' and min_size<={suggested}' if last.min_size > suggested else ''} would"
            " serve this load and leave server connections to other clients"
        )
        return Finding("too_large", self._name, message, evidence)


# ---- one advisor per pool ---------------------------------------------------

_advisors_lock = threading.Lock()
_advisors: weakref.WeakKeyDictionary[MeteredPool, Advisor] = weakref.WeakKeyDictionary()


def advisor_for(pool: MeteredPool) -> Advisor:
    """The pool's advisor, the one `pool.advice()` and `watch()` share;
    created with the default thresholds on first use."""
    with _advisors_lock:
        advisor = _advisors.get(pool)
        if advisor is None:
            advisor = _advisors[pool] = Advisor(pool)
        return advisor


def advise(pool: MeteredPool) -> list[Finding]:
    """What `pool.advice()` returns: a new sample, and the findings."""
    return advisor_for(pool).advise()


class Watcher:
    """A background thread sampling a pool and logging its findings.

    Stops with `stop()`, at the end of a ``with`` block, or by itself when
    the pool is closed or garbage-collected.
    """

    def __init__(self, pool: MeteredPool, advisor: Advisor, interval: float, warn_every: float):
        self.advisor = advisor
        self.interval = interval
        self.warn_every = warn_every
        self._pool = weakref.ref(pool)
        self._stop = threading.Event()
        self._warned: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name=f"{pool.name}-advice", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling; waits up to *timeout* seconds for the thread."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            pool = self._pool()
            if pool is None or (pool.closed and registry.runner_of(pool).core.was_opened):
                return
            del pool
            try:
                findings = self.advisor.advise()
            except Exception as ex:  # never let the thread die on a bad read
                logger.debug("advice sampling failed: %s", ex.__class__.__name__)
                continue
            now = time.monotonic()
            for finding in findings:
                last = self._warned.get(finding.kind)
                if last is None or now - last >= self.warn_every:
                    self._warned[finding.kind] = now
                    logger.warning("%s", finding.message, extra={"ferropool_finding": finding})


def watch(
    pool: MeteredPool,
    interval: float = 1.0,
    *,
    warn_every: float = 600.0,
    window: float = 300.0,
    min_window: float | None = None,
    leak_after: float | None = None,
    slow_wait: float = 0.1,
) -> Watcher:
    """Sample *pool* every *interval* seconds in a background thread and log
    each kind of finding at most once per *warn_every* seconds (WARNING, on
    the "ferropool" logger, the Finding in the record's
    ``ferropool_finding`` attribute).

    The thresholds are `Advisor`'s; the advisor becomes the pool's, so
    `pool.advice()` reads the watcher's samples too. Call it again in a
    forked child (gunicorn's post_fork): threads do not survive fork().
    """
    _positive_seconds(interval=interval, warn_every=warn_every)
    advisor = Advisor(
        pool, window=window, min_window=min_window, leak_after=leak_after, slow_wait=slow_wait
    )
    with _advisors_lock:
        _advisors[pool] = advisor
    return Watcher(pool, advisor, float(interval), float(warn_every))


def _positive_seconds(**values: object) -> None:
    """ValueError naming the first of *values* that is not a positive,
    finite number of seconds."""
    for name, value in values.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
