//! Exponential backoff with jitter for failed connection attempts.
//!
//! Delays start small and stay short (psycopg_pool starts at 1 s and
//! doubles without bound, so after an outage its pool can stay empty for
//! many seconds after the server is back). Short capped delays put a
//! recovered server back in use within about half a second; the give-up
//! point is still `reconnect_timeout` after the first failure.

use std::time::Duration;

use crate::clock::{saturating_nanos, Nanos};
use crate::jitter::Jitter;

pub const INITIAL_DELAY: Duration = Duration::from_millis(50);
pub const MAX_DELAY: Duration = Duration::from_millis(400);
pub const FACTOR: f64 = 2.0;
pub const JITTER: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    give_up_at: Nanos,
    delay: Duration,
}

impl Backoff {
    /// The state after a first failure at `now`.
    pub fn start(now: Nanos, reconnect_timeout: Duration, jitter: &Jitter) -> Self {
        let delay = jittered(INITIAL_DELAY, jitter);
        Self {
            give_up_at: now.saturating_add(saturating_nanos(reconnect_timeout)),
            delay,
        }
        .clamped(now)
    }

    /// The state after one more failure at `now`.
    pub fn next(self, now: Nanos, jitter: &Jitter) -> Self {
        let grown = self.delay.mul_f64(FACTOR).min(MAX_DELAY);
        Self {
            give_up_at: self.give_up_at,
            delay: jittered(grown, jitter),
        }
        .clamped(now)
    }

    fn clamped(mut self, now: Nanos) -> Self {
        let left = Duration::from_nanos(self.give_up_at.saturating_sub(now));
        self.delay = self.delay.min(left);
        self
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    pub fn exhausted(&self, now: Nanos) -> bool {
        now >= self.give_up_at
    }
}

fn jittered(d: Duration, jitter: &Jitter) -> Duration {
    Duration::from_secs_f64(jitter.scale(d.as_secs_f64(), -JITTER, JITTER).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_gives_up() {
        let j = Jitter::new(7);
        let timeout = Duration::from_secs(2);
        let mut b = Backoff::start(0, timeout, &j);
        assert!(b.delay() <= INITIAL_DELAY.mul_f64(1.0 + JITTER));
        let mut now = 0u64;
        let mut delays = vec![];
        while !b.exhausted(now) {
            delays.push(b.delay());
            now += saturating_nanos(b.delay()).max(1);
            b = b.next(now, &j);
        }
        assert!(delays.iter().all(|d| *d <= MAX_DELAY.mul_f64(1.0 + JITTER)));
        assert!(delays[3] > delays[0], "delays grow: {delays:?}");
        assert!(now >= saturating_nanos(timeout));
        assert!(now < saturating_nanos(timeout + MAX_DELAY * 2));
    }
}
