//! Monotonic time as plain nanoseconds since the pool was built.
//!
//! Slots keep their timestamps in atomics, so times are `u64` nanoseconds
//! rather than `Instant`s. Every deadline is computed once from one reading.

use std::time::{Duration, Instant};

/// Nanoseconds since the pool's epoch.
pub type Nanos = u64;

/// A far-away instant used for "never" (no lifetime limit, no deadline).
pub const NEVER: Nanos = u64::MAX;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    #[inline]
    pub fn now(&self) -> Nanos {
        saturating_nanos(self.epoch.elapsed())
    }

    /// The instant `after` from now, saturating at [`NEVER`].
    pub fn deadline(&self, after: Duration) -> Nanos {
        self.now().saturating_add(saturating_nanos(after))
    }

    /// How long from now until `at` (zero if it has passed).
    pub fn until(&self, at: Nanos) -> Duration {
        Duration::from_nanos(at.saturating_sub(self.now()))
    }
}

pub fn saturating_nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER)
}
