//! Lock-free latency histograms: wait time, usage time, connection time.
//!
//! Buckets are powers of two of nanoseconds, from 1 us up to ~17 minutes,
//! so recording is a leading-zeros count and one atomic add: cheap enough
//! for the return path. The bounds are fixed so exporters (Prometheus,
//! OpenTelemetry) can publish them as they are.

use crate::sync::{AtomicU64, Ordering};

/// Upper bound of the first bucket: 2^10 ns (~1 us).
const FIRST_BITS: u32 = 10;
/// Buckets with a finite upper bound: 2^10 .. 2^39 ns (~1 us .. ~9 min).
pub const FINITE_BUCKETS: usize = 30;

#[derive(Debug)]
pub struct Histogram {
    /// Non-cumulative counts; the last one is the +Inf bucket.
    counts: [AtomicU64; FINITE_BUCKETS + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// A snapshot: upper bounds in seconds, cumulative counts (the last one,
/// for +Inf, is the total), and the sum in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: Vec<f64>,
    pub cumulative: Vec<u64>,
    pub sum: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

#[inline]
fn bucket(ns: u64) -> usize {
    // Smallest b with ns <= 2^(FIRST_BITS + b).
    let bits = u64::BITS - ns.saturating_sub(1).leading_zeros();
    (bits.saturating_sub(FIRST_BITS) as usize).min(FINITE_BUCKETS)
}

impl Histogram {
    #[inline]
    pub fn record(&self, ns: u64) {
        self.counts[bucket(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// `record` for a histogram only one thread at a time writes (a slot's
    /// owner, see `slot::Tally`): a plain load and store per field instead
    /// of a locked add. Readers may see the count before the sum, as with
    /// `record`.
    #[inline]
    pub fn record_exclusive(&self, ns: u64) {
        let count = &self.counts[bucket(ns)];
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let sum = self.sum_ns.load(Ordering::Relaxed).wrapping_add(ns);
        self.sum_ns.store(sum, Ordering::Relaxed);
    }

    /// What was recorded, reset to zero if `reset` (only for histograms
    /// every writer updates with `record`).
    pub fn totals(&self, reset: bool) -> Totals {
        let take = |c: &AtomicU64| {
            if reset {
                c.swap(0, Ordering::Relaxed)
            } else {
                c.load(Ordering::Relaxed)
            }
        };
        Totals {
            counts: std::array::from_fn(|b| take(&self.counts[b])),
            sum_ns: take(&self.sum_ns),
        }
    }

    pub fn snapshot(&self, reset: bool) -> HistogramSnapshot {
        self.totals(reset).snapshot()
    }
}

/// A histogram's raw figures: non-cumulative counts and the sum. Several
/// add up (the slots' usage histograms), and one minus an earlier reading
/// of the same histograms is what was recorded in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub counts: [u64; FINITE_BUCKETS + 1],
    pub sum_ns: u64,
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            counts: [0; FINITE_BUCKETS + 1],
            sum_ns: 0,
        }
    }
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.wrapping_add(theirs);
        }
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
    }

    /// What was recorded since `earlier`, a reading of the same histograms.
    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            counts: std::array::from_fn(|b| self.counts[b].wrapping_sub(earlier.counts[b])),
            sum_ns: self.sum_ns.wrapping_sub(earlier.sum_ns),
        }
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                running += c;
                running
            })
            .collect();
        let bounds = (0..FINITE_BUCKETS)
            .map(|b| (1u64 << (FIRST_BITS as usize + b)) as f64 / 1e9)
            .collect();
        HistogramSnapshot {
            bounds,
            cumulative,
            sum: self.sum_ns as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_bucket_whose_bound_covers_them() {
        let h = Histogram::default();
        for ns in [1, 1024, 1025, 1_000_000, 3_000_000_000, u64::MAX / 2] {
            h.record(ns);
        }
        let s = h.snapshot(false);
        assert_eq!(s.count(), 6);
        assert_eq!(s.cumulative[0], 2, "1 ns and 1024 ns are <= 1.024 us");
        assert_eq!(s.cumulative[1], 3, "1025 ns is <= 2.048 us");
        let ms = s.bounds.iter().position(|b| *b >= 1e-3).unwrap();
        assert_eq!(s.cumulative[ms], 4, "1 ms");
        assert_eq!(
            s.cumulative[FINITE_BUCKETS - 1],
            5,
            "3 s is finite, the huge one is not"
        );
        assert!(s.bounds.windows(2).all(|w| w[0] < w[1]));
        let reset = h.snapshot(true);
        assert_eq!(reset.count(), 6);
        assert_eq!(h.snapshot(false).count(), 0);
    }
}
