//! Exponential backoff with jitter for failed connection attempts.
//!
//! Two schedules, by what the failure says about the next attempt:
//! - **transient** (refused, reset, timed out, the server shutting down):
//!   delays start small and stay short (psycopg_pool starts at 1 s and
//!   doubles without bound, so after an outage its pool can stay empty for
//!   many seconds after the server is back). Short capped delays put a
//!   recovered server back in use within about half a second.
//! - **permanent** (a wrong password, an unknown role or database, an
//!   invalid option: the front end decides): the same error comes back
//!   however soon it is retried, and fast retries lock accounts and trip
//!   intrusion detection, so delays start at a second and grow to a minute.
//!
//! Either way the give-up point is `reconnect_timeout` after the first
//! failure of the run, and a success anywhere in the pool ends the run
//! (see `Backoff::run`). This module must never read a clock: callers pass
//! `now`, so tests drive it without waiting.

use std::time::Duration;

use crate::clock::{saturating_nanos, Nanos};
use crate::jitter::Jitter;

/// First delay after a transient failure.
pub const INITIAL_DELAY: Duration = Duration::from_millis(50);
/// Longest delay between transient failures.
pub const MAX_DELAY: Duration = Duration::from_millis(400);
/// First delay after a permanent failure.
pub const PERMANENT_INITIAL_DELAY: Duration = Duration::from_secs(1);
/// Longest delay between permanent failures.
pub const PERMANENT_MAX_DELAY: Duration = Duration::from_secs(60);
pub const FACTOR: f64 = 2.0;
pub const JITTER: f64 = 0.1;

/// What a failed attempt says about the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// It may well work soon (the server is down, restarting, unreachable).
    Transient,
    /// It will fail the same way until someone changes a setting.
    Permanent,
}

impl Failure {
    /// The first delay and the longest one for this kind of failure.
    fn delays(self) -> (Duration, Duration) {
        match self {
            Failure::Transient => (INITIAL_DELAY, MAX_DELAY),
            Failure::Permanent => (PERMANENT_INITIAL_DELAY, PERMANENT_MAX_DELAY),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    give_up_at: Nanos,
    delay: Duration,
    /// The pool's count of successful connects when this run of failures
    /// began: once it moved, the run is over (see `Pool::connect_failed`).
    run: u64,
}

impl Backoff {
    /// The state after a first failure at `now`, while the pool has seen
    /// `run` successful connects.
    pub fn start(
        now: Nanos,
        reconnect_timeout: Duration,
        failure: Failure,
        run: u64,
        jitter: &Jitter,
    ) -> Self {
        let (initial, _) = failure.delays();
        Self {
            give_up_at: now.saturating_add(saturating_nanos(reconnect_timeout)),
            delay: jittered(initial, jitter),
            run,
        }
        .clamped(now)
    }

    /// The state after one more failure at `now`: the delay doubles within
    /// the bounds of this failure's kind (a permanent failure after
    /// transient ones waits at least its first delay; a transient one after
    /// permanent ones at most the transient cap).
    pub fn next(self, now: Nanos, failure: Failure, jitter: &Jitter) -> Self {
        let (initial, max) = failure.delays();
        let grown = self.delay.mul_f64(FACTOR).clamp(initial, max);
        Self {
            delay: jittered(grown, jitter),
            ..self
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

    /// The pool's count of successful connects when this run began.
    pub fn run(&self) -> u64 {
        self.run
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

    /// Fail at every retry from `now` until the backoff gives up; the
    /// delays between attempts and when it gave up.
    fn run_out(mut b: Backoff, failure: Failure, j: &Jitter) -> (Vec<Duration>, Nanos) {
        let mut now = 0u64;
        let mut delays = vec![];
        while !b.exhausted(now) {
            delays.push(b.delay());
            now += saturating_nanos(b.delay()).max(1);
            b = b.next(now, failure, j);
        }
        (delays, now)
    }

    #[test]
    fn grows_caps_and_gives_up() {
        let j = Jitter::new(7);
        let timeout = Duration::from_secs(2);
        let b = Backoff::start(0, timeout, Failure::Transient, 0, &j);
        assert!(b.delay() <= INITIAL_DELAY.mul_f64(1.0 + JITTER));
        let (delays, now) = run_out(b, Failure::Transient, &j);
        assert!(delays.iter().all(|d| *d <= MAX_DELAY.mul_f64(1.0 + JITTER)));
        assert!(delays[3] > delays[0], "delays grow: {delays:?}");
        assert!(now >= saturating_nanos(timeout));
        assert!(now < saturating_nanos(timeout + MAX_DELAY * 2));
    }

    #[test]
    fn permanent_failures_start_at_a_second_and_double_to_a_minute() {
        let j = Jitter::new(11);
        let timeout = Duration::from_secs(600);
        let b = Backoff::start(0, timeout, Failure::Permanent, 0, &j);
        let (delays, now) = run_out(b, Failure::Permanent, &j);
        let low = 1.0 - JITTER - 0.001;
        let high = 1.0 + JITTER + 0.001;
        let first = delays[0].as_secs_f64();
        assert!((low..=high).contains(&first), "first delay {first} s");
        // Doubling (within jitter) until the cap, then held at it.
        for pair in delays.windows(2).take(5) {
            let ratio = pair[1].as_secs_f64() / pair[0].as_secs_f64();
            assert!(ratio > 1.5 && ratio < 2.5, "doubling: {delays:?}");
        }
        let capped = &delays[8..delays.len() - 1];
        assert!(!capped.is_empty());
        for d in capped {
            let s = d.as_secs_f64();
            assert!(
                s >= 60.0 * low && s <= 60.0 * high,
                "capped at 60 s: {delays:?}"
            );
        }
        // Still gives up at reconnect_timeout after the first failure.
        assert!(now >= saturating_nanos(timeout));
        assert!(now < saturating_nanos(timeout + PERMANENT_MAX_DELAY));
        // Far fewer attempts than transient failures in the same time.
        let t = Backoff::start(0, timeout, Failure::Transient, 0, &j);
        let (transient, _) = run_out(t, Failure::Transient, &j);
        assert!(
            delays.len() * 50 < transient.len(),
            "{} attempts",
            delays.len()
        );
    }

    #[test]
    fn a_change_of_kind_moves_the_delay_into_its_bounds() {
        let j = Jitter::new(3);
        let timeout = Duration::from_secs(600);
        let mut b = Backoff::start(0, timeout, Failure::Permanent, 0, &j);
        for _ in 0..10 {
            b = b.next(0, Failure::Permanent, &j);
        }
        assert!(b.delay() > Duration::from_secs(50));
        let t = b.next(0, Failure::Transient, &j);
        assert!(
            t.delay() <= MAX_DELAY.mul_f64(1.0 + JITTER),
            "{:?}",
            t.delay()
        );
        let p =
            Backoff::start(0, timeout, Failure::Transient, 0, &j).next(0, Failure::Permanent, &j);
        assert!(
            p.delay() >= PERMANENT_INITIAL_DELAY.mul_f64(1.0 - JITTER),
            "{:?}",
            p.delay()
        );
        assert!(
            p.delay() <= PERMANENT_INITIAL_DELAY.mul_f64(1.0 + JITTER),
            "{:?}",
            p.delay()
        );
    }

    #[test]
    fn never_waits_past_the_give_up_point() {
        let j = Jitter::new(5);
        let b = Backoff::start(0, Duration::from_millis(300), Failure::Permanent, 0, &j);
        assert!(b.delay() <= Duration::from_millis(300));
        let b = b.next(200_000_000, Failure::Permanent, &j);
        assert!(b.delay() <= Duration::from_millis(100));
        assert!(b.exhausted(300_000_000));
    }
}
