//! Monotonic time as plain nanoseconds since the pool was built.
//!
//! Slots keep their timestamps in atomics, so times are `u64` nanoseconds
//! rather than `Instant`s. There is one reading, [`Clock::now`]: the
//! monotonic clock (CLOCK_MONOTONIC through the vDSO on Linux, `Instant`
//! elsewhere), read once per checkout and once per return. Lease times
//! feed the usage histogram, whose sub-millisecond quantiles must be
//! right: the kernel's coarse clock (a scheduler tick, 1-4 ms) cost ~20 ns
//! less per reading but put most leases at 0 and some at 4 ms. This module
//! must never read a clock that can go backwards (wall time).

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
#[inline]
fn raw() -> Nanos {
    read(libc::CLOCK_MONOTONIC)
}

#[cfg(not(target_os = "linux"))]
fn raw() -> Nanos {
    use std::sync::OnceLock;
    use std::time::Instant;
    static BASE: OnceLock<Instant> = OnceLock::new();
    // Counted from one second, as CLOCK_MONOTONIC is (from boot): a pool
    // made within the first second of the process would otherwise have
    // epoch 0 and a first reading that can be 0, a slot's "never used".
    saturating_nanos(BASE.get_or_init(Instant::now).elapsed()).saturating_add(1_000_000_000)
}

impl Clock {
    pub fn new() -> Self {
        // Start one second before "now", so that no reading is ever 0 (a
        // slot's "never used" value).
        Self {
            epoch: raw().saturating_sub(1_000_000_000),
        }
    }

    /// Nanoseconds since the pool's epoch.
    #[inline]
    pub fn now(&self) -> Nanos {
        raw().saturating_sub(self.epoch)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_resolve_microseconds_and_never_go_back() {
        let c = Clock::new();
        let first = c.now();
        assert!(first >= 1_000_000_000, "epoch leaves room below now");
        // A busy wait of ~50 us reads as such: the coarse clock read 0 or
        // a whole tick (1-4 ms) here.
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_micros(50) {}
        let measured = saturating_nanos(start.elapsed());
        let span = c.now() - first;
        assert!(span >= 50_000, "{span} ns read for a 50 us wait");
        assert!(span >= measured / 2, "{span} ns read for {measured} ns");
    }
}
