//! psycopg_pool's counters, kept as atomics in the core.
//!
//! Times are accumulated in nanoseconds and reported in milliseconds, so
//! many sub-millisecond waits still add up (psycopg_pool truncates each one).

use crate::sync::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    pub requests_num: AtomicU64,
    pub requests_queued: AtomicU64,
    pub requests_wait_ns: AtomicU64,
    pub requests_errors: AtomicU64,
    pub usage_ns: AtomicU64,
    pub returns_bad: AtomicU64,
    pub connections_num: AtomicU64,
    pub connections_ns: AtomicU64,
    pub connections_errors: AtomicU64,
    pub connections_lost: AtomicU64,
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
}

impl Stats {
    /// (key, value) pairs in psycopg_pool's naming.
    pub fn entries(&self) -> [(&'static str, u64); 15] {
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
        out.usage_ms = take(&self.usage_ns) / 1_000_000;
        out.returns_bad = take(&self.returns_bad);
        out.connections_num = take(&self.connections_num);
        out.connections_ms = take(&self.connections_ns) / 1_000_000;
        out.connections_errors = take(&self.connections_errors);
        out.connections_lost = take(&self.connections_lost);
    }
}
