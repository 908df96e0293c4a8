//! A small, lock-free pseudo-random source for jitter (lifetimes, backoff).
//!
//! Jitter only has to spread connections apart, not resist prediction, so a
//! SplitMix64 sequence over an atomic counter is enough and costs one atomic
//! add; no dependency, no lock, deterministic under loom.

use crate::sync::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Jitter {
    state: AtomicU64,
}

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A uniform value in [0, 1).
    pub fn unit(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `value` scaled by a random factor in [1 + lo, 1 + hi).
    pub fn scale(&self, value: f64, lo: f64, hi: f64) -> f64 {
        value * (1.0 + lo + (hi - lo) * self.unit())
    }
}
