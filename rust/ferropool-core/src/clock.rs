//! Monotonic time as plain nanoseconds since the pool was built.
//!
//! Slots keep their timestamps in atomics, so times are `u64` nanoseconds
//! rather than `Instant`s. Two kinds of time are kept apart by type:
//!
//! - **slot times**, [`Nanos`] from [`Clock::now`]: leases (`usage_time`,
//!   `leak_timeout`), lifetimes, idle times, liveness and the maintenance
//!   timers. Read once per checkout and once per return. Lease times feed
//!   the usage histogram, whose sub-millisecond quantiles must be right:
//!   the kernel's coarse clock (a scheduler tick, 1-4 ms) cost ~20 ns less
//!   per reading but put most leases at 0 and some at 4 ms.
//! - **wait times**, [`WaitInstant`] from [`Clock::wait_now`]: when a wait
//!   began and when its deadline falls. A wait of `timeout` must last at
//!   least `timeout` by the caller's own monotonic clock.
//!
//! Both read the monotonic clock (CLOCK_MONOTONIC through the vDSO on
//! Linux, `Instant` elsewhere); the types keep a wait from ever being timed
//! by whatever the slot clock may become. This module must never read a
//! clock that can go backwards (wall time), and never let a reading be 0
//! (a slot's "never").

use std::time::Duration;

/// Nanoseconds since the pool's epoch, on the slot clock.
pub type Nanos = u64;

/// A far-away instant used for "never" (no lifetime limit, no deadline).
pub const NEVER: Nanos = u64::MAX;

/// Where readings start: one second after the epoch, so that none is ever
/// 0 (a slot's "never used" value).
const START: Nanos = 1_000_000_000;

/// An instant that times a wait: when it began, or its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WaitInstant(Nanos);

impl WaitInstant {
    /// The instant `after` from this one, saturating at "never".
    pub fn after(self, after: Duration) -> Self {
        Self(self.0.saturating_add(saturating_nanos(after)))
    }

    /// How long from `earlier` to this instant (zero if it is later).
    pub fn since(self, earlier: WaitInstant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The monotonic clock's raw reading `START` before the clock was made.
    epoch: Nanos,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_os = "linux")]
#[inline]
fn monotonic() -> Nanos {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC exists
    // on every Linux; clock_gettime only writes into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime failed");
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn monotonic() -> Nanos {
    use std::sync::OnceLock;
    use std::time::Instant;
    static BASE: OnceLock<Instant> = OnceLock::new();
    // Counted from START, as CLOCK_MONOTONIC is from boot: a pool made
    // within the first second of the process would otherwise have epoch 0
    // and a first reading that can be 0, a slot's "never used".
    saturating_nanos(BASE.get_or_init(Instant::now).elapsed()).saturating_add(START)
}

impl Clock {
    pub fn new() -> Self {
        Self {
            epoch: monotonic().saturating_sub(START),
        }
    }

    /// The slot clock: nanoseconds since the pool's epoch.
    #[inline]
    pub fn now(&self) -> Nanos {
        monotonic().saturating_sub(self.epoch)
    }

    /// The monotonic clock as a wait instant, now: where a wait begins.
    #[inline]
    pub fn wait_now(&self) -> WaitInstant {
        WaitInstant(monotonic().saturating_sub(self.epoch))
    }

    /// How long from now until the wait deadline `at` (zero if passed).
    pub fn wait_left(&self, at: WaitInstant) -> Duration {
        at.since(self.wait_now())
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
        assert!(first >= START, "epoch leaves room below now");
        // A busy wait of ~50 us reads as such: the coarse clock read 0 or
        // a whole tick (1-4 ms) here.
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_micros(50) {}
        let measured = saturating_nanos(start.elapsed());
        let span = c.now() - first;
        assert!(span >= 50_000, "{span} ns read for a 50 us wait");
        assert!(span >= measured / 2, "{span} ns read for {measured} ns");
    }

    #[test]
    fn wait_instants_add_and_subtract_saturating() {
        let c = Clock::new();
        let start = c.wait_now();
        let deadline = start.after(Duration::from_millis(5));
        assert_eq!(deadline.since(start), Duration::from_millis(5));
        assert_eq!(start.since(deadline), Duration::ZERO);
        assert!(c.wait_left(deadline) <= Duration::from_millis(5));
        assert_eq!(start.after(Duration::MAX), WaitInstant(NEVER));
    }
}
