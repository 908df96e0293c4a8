//! psycopg_pool's counters, kept as atomics in the core.
//!
//! Times are accumulated in nanoseconds and reported in milliseconds, so
//! many sub-millisecond waits still add up (psycopg_pool truncates each one).

use crate::histogram::Histogram;
use crate::sync::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    /// Requests that did not get a connection at once (the fast path's
    /// are counted per slot: `slot::Tally`).
    pub requests_num: AtomicU64,
    pub requests_queued: AtomicU64,
    pub requests_wait_ns: AtomicU64,
    pub requests_errors: AtomicU64,
    pub returns_bad: AtomicU64,
    pub connections_num: AtomicU64,
    pub connections_ns: AtomicU64,
    pub connections_errors: AtomicU64,
    pub connections_lost: AtomicU64,
    pub connections_retired: AtomicU64,
    pub liveness_polls: AtomicU64,
    pub liveness_suspects: AtomicU64,
    pub keepalive_pings: AtomicU64,
    pub leaks_detected: AtomicU64,
    pub leaks_reclaimed: AtomicU64,
    pub failovers: AtomicU64,
    /// Time requests waited in the queue (granted or not).
    pub wait_time: Histogram,
    /// Time taken to open connections.
    pub connect_time: Histogram,
}

#[inline]
pub fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

/// A snapshot of counters and measures, with psycopg_pool's meanings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub pool_min: u64,
    pub pool_max: u64,
    pub pool_size: u64,
    pub pool_available: u64,
    pub requests_waiting: u64,
    pub requests_num: u64,
    pub requests_queued: u64,
    pub requests_wait_ms: u64,
    pub requests_errors: u64,
    pub usage_ms: u64,
    pub returns_bad: u64,
    pub connections_num: u64,
    pub connections_ms: u64,
    pub connections_errors: u64,
    pub connections_lost: u64,
    pub connections_retired: u64,
    pub liveness_polls: u64,
    pub liveness_suspects: u64,
    pub keepalive_pings: u64,
    pub leaks_detected: u64,
    pub leaks_reclaimed: u64,
    pub failovers: u64,
    pub paused: u64,
}

impl Stats {
    /// (key, value) pairs: psycopg_pool's keys first, then ferropool's.
    pub fn entries(&self) -> [(&'static str, u64); 23] {
        [
            ("pool_min", self.pool_min),
            ("pool_max", self.pool_max),
            ("pool_size", self.pool_size),
            ("pool_available", self.pool_available),
            ("requests_waiting", self.requests_waiting),
            ("requests_num", self.requests_num),
            ("requests_queued", self.requests_queued),
            ("requests_wait_ms", self.requests_wait_ms),
            ("requests_errors", self.requests_errors),
            ("usage_ms", self.usage_ms),
            ("returns_bad", self.returns_bad),
            ("connections_num", self.connections_num),
            ("connections_ms", self.connections_ms),
            ("connections_errors", self.connections_errors),
            ("connections_lost", self.connections_lost),
            ("connections_retired", self.connections_retired),
            ("liveness_polls", self.liveness_polls),
            ("liveness_suspects", self.liveness_suspects),
            ("keepalive_pings", self.keepalive_pings),
            ("leaks_detected", self.leaks_detected),
            ("leaks_reclaimed", self.leaks_reclaimed),
            ("failovers", self.failovers),
            ("paused", self.paused),
        ]
    }
}

impl Counters {
    /// Read the counters into `out`, resetting them to zero if `reset`.
    pub fn read_into(&self, out: &mut Stats, reset: bool) {
        let take = |c: &AtomicU64| {
            if reset {
                c.swap(0, Ordering::Relaxed)
            } else {
                c.load(Ordering::Relaxed)
            }
        };
        out.requests_num = take(&self.requests_num);
        out.requests_queued = take(&self.requests_queued);
        out.requests_wait_ms = take(&self.requests_wait_ns) / 1_000_000;
        out.requests_errors = take(&self.requests_errors);
        out.returns_bad = take(&self.returns_bad);
        out.connections_num = take(&self.connections_num);
        out.connections_ms = take(&self.connections_ns) / 1_000_000;
        out.connections_errors = take(&self.connections_errors);
        out.connections_lost = take(&self.connections_lost);
        out.connections_retired = take(&self.connections_retired);
        out.liveness_polls = take(&self.liveness_polls);
        out.liveness_suspects = take(&self.liveness_suspects);
        out.keepalive_pings = take(&self.keepalive_pings);
        out.leaks_detected = take(&self.leaks_detected);
        out.leaks_reclaimed = take(&self.leaks_reclaimed);
        out.failovers = take(&self.failovers);
    }
}
