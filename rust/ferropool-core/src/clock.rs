//! Monotonic time as plain nanoseconds since the pool was built.
//!
//! Slots keep their timestamps in atomics, so times are `u64` nanoseconds
//! rather than `Instant`s. Two readings share one timeline:
//! - [`Clock::now`], for the hot path (lease start and end, expiry, idle
//!   time): on Linux the kernel's coarse monotonic clock, ~5 ns a read
//!   instead of ~25 ns, with the scheduler tick's resolution (1-4 ms). That
//!   is ample for lifetimes of seconds, and lease times summed over many
//!   leases stay exact on average.
//! - [`Clock::precise`], for deadlines, waits and connection times.

use std::time::Duration;

/// Nanoseconds since the pool's epoch.
pub type Nanos = u64;

/// A far-away instant used for "never" (no lifetime limit, no deadline).
pub const NEVER: Nanos = u64::MAX;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Nanos,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_os = "linux")]
fn read(id: libc::clockid_t) -> Nanos {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and both clock ids exist on
    // every Linux since 2.6.32; clock_gettime only writes into `ts`.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime failed");
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(target_os = "linux")]
fn precise_raw() -> Nanos {
    read(libc::CLOCK_MONOTONIC)
}

#[cfg(target_os = "linux")]
fn coarse_raw() -> Nanos {
    read(libc::CLOCK_MONOTONIC_COARSE)
}

#[cfg(not(target_os = "linux"))]
fn precise_raw() -> Nanos {
    use std::sync::OnceLock;
    use std::time::Instant;
    static BASE: OnceLock<Instant> = OnceLock::new();
    saturating_nanos(BASE.get_or_init(Instant::now).elapsed())
}

#[cfg(not(target_os = "linux"))]
fn coarse_raw() -> Nanos {
    precise_raw()
}

impl Clock {
    pub fn new() -> Self {
        // Start one second before "now" so that a coarse reading lagging
        // the precise one never goes below zero.
        Self {
            epoch: precise_raw().saturating_sub(1_000_000_000),
        }
    }

    /// Cheap reading for the hot path (see the module comment).
    #[inline]
    pub fn now(&self) -> Nanos {
        coarse_raw().saturating_sub(self.epoch)
    }

    /// Exact reading for deadlines and measured waits.
    #[inline]
    pub fn precise(&self) -> Nanos {
        precise_raw().saturating_sub(self.epoch)
    }

    /// The instant `after` from now, saturating at [`NEVER`].
    pub fn deadline(&self, after: Duration) -> Nanos {
        self.precise().saturating_add(saturating_nanos(after))
    }

    /// How long from now until `at` (zero if it has passed).
    pub fn until(&self, at: Nanos) -> Duration {
        Duration::from_nanos(at.saturating_sub(self.precise()))
    }
}

pub fn saturating_nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_and_precise_share_a_timeline() {
        let c = Clock::new();
        let p = c.precise();
        let n = c.now();
        // The coarse clock lags by at most a scheduler tick (<= 10 ms).
        assert!(n <= c.precise());
        assert!(p.saturating_sub(n) < 10_000_000, "coarse {n} precise {p}");
        assert!(n >= 900_000_000, "epoch leaves room below now");
    }
}
