//! Monotonic time as plain nanoseconds since the pool was built, from two
//! clocks whose readings are never compared with each other.
//!
//! - The **slot clock**, [`Clock::now`], times everything a slot records:
//!   leases (`usage_time`, `leak_timeout`), lifetimes, idle times, liveness
//!   and the maintenance timers. It is read once per checkout and once per
//!   return, so it must be cheap, and its sub-millisecond readings must be
//!   right (the usage histogram's quantiles): the kernel's coarse clock (a
//!   scheduler tick, 1-4 ms) put most leases at 0 and some at 4 ms. On
//!   x86_64 Linux, when the CPU's time-stamp counter is invariant and the
//!   kernel keeps time with it too (clocksource `tsc`: the kernel found it
//!   synchronised across CPUs), a reading is one `rdtsc` scaled by a rate
//!   calibrated once per process against CLOCK_MONOTONIC: no call into the
//!   vDSO and no seqlock, which is what `clock_gettime` adds around the
//!   same counter. Its rate is known to 5e-4 or the counter is not used
//!   (a few 1e-6 where measured), ample for durations and lifetimes.
//!   Anywhere else, and under loom, it is the precise clock.
//! - The **precise clock**, CLOCK_MONOTONIC (`Instant` off Linux), times
//!   waits: a [`WaitInstant`] is when a wait began and when its deadline
//!   falls. A wait of `timeout` must last at least `timeout` by the
//!   caller's own monotonic clock, which a calibrated clock could cut
//!   short by its rate's error.
//!
//! The two types keep them apart: slot times are [`Nanos`], wait times
//! [`WaitInstant`]. Both are monotonic in a thread. Across threads, a slot
//! reading taken after seeing what another thread stored may be earlier
//! than that thread's last reading by the time a load takes to arrive
//! (see `tsc`); every use of slot times takes differences that saturate
//! at zero, or compares them with limits seconds away. A `Clock` is a few
//! words, `Copy`, and stays valid in a fork child (same counter, same
//! calibration).
//!
//! This module must never read a clock that can go backwards (wall time),
//! never let a reading be 0 (a slot's "never"), and never time a wait with
//! the slot clock.

use std::time::Duration;

/// Nanoseconds since the pool's epoch, on the slot clock.
pub type Nanos = u64;

/// A far-away instant used for "never" (no lifetime limit, no deadline).
pub const NEVER: Nanos = u64::MAX;

/// Where readings start: one second after the epoch, so that none is ever
/// 0 (a slot's "never used" value).
const START: Nanos = 1_000_000_000;

/// An instant on the precise clock: when a wait began, or its deadline.
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

/// Both clocks of one pool: three words, `Copy`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The precise clock's raw reading `START` before the clock was made.
    epoch: Nanos,
    /// The time-stamp counter when the clock was made, and its rate; off
    /// where the slot clock is the precise clock.
    tsc: tsc::Anchor,
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

/// Settle which counter the slot clock reads, once per process. On x86_64
/// Linux the first call calibrates the time-stamp counter (~4 ms, slept);
/// later calls, and every call in a fork child of a process that already
/// calibrated, return at once. [`Clock::new`] calls it; a front end that
/// makes pools while holding a lock others need (Python's GIL) calls it
/// first without the lock.
pub fn calibrate() {
    tsc::Anchor::calibrate();
}

impl Clock {
    pub fn new() -> Self {
        Self {
            epoch: monotonic().saturating_sub(START),
            tsc: tsc::Anchor::now(),
        }
    }

    /// A clock whose slot clock is the precise clock too.
    #[cfg(test)]
    pub(crate) fn precise_only() -> Self {
        Self {
            epoch: monotonic().saturating_sub(START),
            tsc: tsc::Anchor::OFF,
        }
    }

    /// The slot clock: nanoseconds since the pool's epoch.
    #[inline]
    pub fn now(&self) -> Nanos {
        match self.tsc.elapsed() {
            Some(ns) => START.saturating_add(ns),
            None => monotonic().saturating_sub(self.epoch),
        }
    }

    /// The precise clock, now: where a wait begins.
    #[inline]
    pub fn wait_now(&self) -> WaitInstant {
        WaitInstant(monotonic().saturating_sub(self.epoch))
    }

    /// How long from now until the wait deadline `at` (zero if passed).
    pub fn wait_left(&self, at: WaitInstant) -> Duration {
        at.since(self.wait_now())
    }

    /// Whether the slot clock is the time-stamp counter (else it is the
    /// precise clock).
    pub fn uses_tsc(&self) -> bool {
        self.tsc.is_on()
    }
}

pub fn saturating_nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER)
}

/// The time-stamp counter as the slot clock (x86_64 Linux, not loom).
///
/// Used only if CPUID says the counter is invariant (constant rate through
/// frequency changes and sleep states), and the kernel's
/// clocksource is `tsc`: Linux selects it only after checking that the
/// counters of all CPUs agree (or, in a VM, when the hypervisor vouches for
/// them), and leaves it if its watchdog finds it drifting. A switch away
/// after this process calibrated is not noticed: the slot clock keeps the
/// calibrated rate.
///
/// Readings use plain `rdtsc`, which the CPU may run ahead of a load still
/// in flight (a slot's line coming from another core): a borrower's reading
/// can then be earlier than the returning thread's, by at most that load's
/// latency (well under a microsecond). `rdtscp`, or a fence, would wait for
/// the load and cost twice as much (22 ns against 11 ns a reading on the
/// 2-core VM this was measured on; CLOCK_MONOTONIC 29 ns), twice per
/// borrow; what slot times feed (usage, idle and lifetime limits, leak and
/// liveness windows, timers) saturates such a difference to zero or
/// compares it with limits many orders of magnitude longer.
///
/// The calibration is a process-wide word, set once by compare-and-set,
/// with no lock: a fork child inherits it whatever the other threads of its
/// parent were doing, and two threads calibrating at once both finish (the
/// first to store wins).
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom)))]
mod tsc {
    use std::arch::x86_64::{__cpuid, _rdtsc, CpuidResult};
    // Not through `crate::sync`: loom never builds this module.
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::{monotonic, Nanos};

    /// Each half of the calibration (slept, not spun). A reading pair is
    /// known to ~100 ns, so each half's rate to ~1e-4 and the whole's
    /// better.
    const HALF: Duration = Duration::from_millis(2);

    /// The process's calibration: `UNKNOWN` until settled, then `UNUSABLE`
    /// or the rate as `mult` (never 0 or 1: see `mult_from_span`).
    static MULT: AtomicU64 = AtomicU64::new(UNKNOWN);
    const UNKNOWN: u64 = 0;
    const UNUSABLE: u64 = 1;

    /// The counter at a clock's making and its rate: nanoseconds are
    /// `ticks * mult >> 32`. `mult` 0: off.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Anchor {
        at: u64,
        mult: u64,
    }

    impl Anchor {
        pub(super) const OFF: Self = Self { at: 0, mult: 0 };

        /// Anchored at the counter's current value, if the process may use
        /// it (calibrating first if nothing did yet).
        pub(super) fn now() -> Self {
            match settled() {
                Some(mult) => Self { at: ticks(), mult },
                None => Self::OFF,
            }
        }

        pub(super) fn calibrate() {
            let _ = settled();
        }

        pub(super) fn is_on(&self) -> bool {
            self.mult != 0
        }

        /// Nanoseconds since the anchor (0 for a reading before it); `None`
        /// if off.
        #[inline(always)]
        pub(super) fn elapsed(&self) -> Option<Nanos> {
            if self.mult == 0 {
                return None;
            }
            Some(to_nanos(ticks().saturating_sub(self.at), self.mult))
        }
    }

    /// The counter (see the module's note on ordering).
    ///
    /// Reached only once `usable` said the counter exists and is allowed:
    /// from an `Anchor` that is on (made only from a settled rate), from
    /// `calibrate` after `usable`, and from tests that check `usable`.
    #[inline(always)]
    #[allow(unused_unsafe)] // a safe function in some Rust versions
    fn ticks() -> u64 {
        // SAFETY: every caller runs only after `usable()` found the counter
        // in CPUID and PR_GET_TSC allowing it (see above), so the
        // instruction exists and does not fault; it only writes registers.
        unsafe { _rdtsc() }
    }

    /// `ticks` counter ticks in nanoseconds at `mult` (a 64x64->128
    /// multiply: exact for centuries of ticks, then saturating).
    #[inline(always)]
    fn to_nanos(ticks: u64, mult: u64) -> Nanos {
        u64::try_from((u128::from(ticks) * u128::from(mult)) >> 32).unwrap_or(u64::MAX)
    }

    /// The rate of `ticks` per `nanos` as a `mult`, if plausible for a
    /// time-stamp counter (0.5 to 10 GHz). It is then at least 2^32/10, so
    /// never 0 or 1.
    fn mult_from_span(ticks: u64, nanos: u64) -> Option<u64> {
        let plausible = ticks / 2 >= nanos / 4 && ticks / 10 <= nanos && nanos > 0;
        if !plausible {
            return None;
        }
        u64::try_from((u128::from(nanos) << 32) / u128::from(ticks)).ok()
    }

    /// The process's rate, calibrating it first if nothing did yet; `None`
    /// if the counter must not be used.
    fn settled() -> Option<u64> {
        let mut mult = MULT.load(Ordering::Relaxed);
        if mult == UNKNOWN {
            let found = calibrate().unwrap_or(UNUSABLE);
            // The word is the whole message (no other memory to publish),
            // so Relaxed suffices.
            mult = match MULT.compare_exchange(UNKNOWN, found, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => found,
                Err(first) => first,
            };
        }
        (mult != UNUSABLE).then_some(mult)
    }

    /// A counter reading and the precise clock's, taken together: the
    /// counter's value is the midpoint of two readings around the precise
    /// one, known to within half their `width`.
    #[derive(Debug, Clone, Copy)]
    struct Pair {
        ticks: u64,
        nanos: Nanos,
        width: u64,
    }

    /// The tightest pair of a few tries (a try preempted midway is wide).
    fn pair() -> Option<Pair> {
        let mut best: Option<Pair> = None;
        for _ in 0..8 {
            let before = ticks();
            let nanos = monotonic();
            let after = ticks();
            let Some(width) = after.checked_sub(before) else {
                continue;
            };
            if best.is_none_or(|b| width < b.width) {
                best = Some(Pair {
                    ticks: before + width / 2,
                    nanos,
                    width,
                });
            }
        }
        best
    }

    /// Calibrate: pairs at 0, ~2 and ~4 ms, twice at most. `None` if the
    /// counter must not be used, or no try gave a rate worth trusting.
    fn calibrate() -> Option<u64> {
        if !usable() {
            return None;
        }
        (0..2).find_map(|_| {
            let a = pair()?;
            std::thread::sleep(HALF);
            let b = pair()?;
            std::thread::sleep(HALF);
            let c = pair()?;
            rate_of(a, b, c)
        })
    }

    /// The rate from `a` to `c`, if it is known to 5e-4 (the pairs' widths
    /// against the span) and the halves `a`-`b` and `b`-`c` agree to 1e-3
    /// (a counter that does not keep a constant rate, whatever CPUID says,
    /// fails this).
    fn rate_of(a: Pair, b: Pair, c: Pair) -> Option<u64> {
        let span = |x: Pair, y: Pair| -> Option<u64> {
            mult_from_span(y.ticks.checked_sub(x.ticks)?, y.nanos.checked_sub(x.nanos)?)
        };
        let whole = span(a, c)?;
        let uncertain = (a.width / 2 + c.width / 2).saturating_mul(2_000);
        if uncertain > c.ticks - a.ticks {
            return None;
        }
        let (first, second) = (span(a, b)?, span(b, c)?);
        (first.abs_diff(second).saturating_mul(1_000) <= whole).then_some(whole)
    }

    /// An invariant counter that the kernel keeps time with
    /// and this process may read.
    fn usable() -> bool {
        cpu_has_invariant_tsc() && kernel_uses_tsc() && !tsc_disabled_by_prctl()
    }

    #[allow(unused_unsafe)] // a safe function in some Rust versions
    fn cpuid(leaf: u32) -> CpuidResult {
        // SAFETY: CPUID exists on every x86_64 CPU, runs in user mode and
        // only writes registers; callers ask only for leaves the CPU
        // reports (leaf 0x8000_0000 gives the highest extended one).
        unsafe { __cpuid(leaf) }
    }

    /// CPUID: a time-stamp counter (leaf 1, EDX bit 4), invariant (leaf
    /// 0x8000_0007, EDX bit 8).
    fn cpu_has_invariant_tsc() -> bool {
        let has_tsc = cpuid(1).edx & (1 << 4) != 0;
        if !has_tsc || cpuid(0x8000_0000).eax < 0x8000_0007 {
            return false;
        }
        cpuid(0x8000_0007).edx & (1 << 8) != 0
    }

    fn kernel_uses_tsc() -> bool {
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|s| s.trim() == "tsc")
    }

    /// PR_GET_TSC: a thread may make the counter fault (PR_TSC_SIGSEGV);
    /// an error (prctl filtered out) counts as disabled.
    fn tsc_disabled_by_prctl() -> bool {
        let mut state: libc::c_int = 0;
        // SAFETY: PR_GET_TSC writes one int through the pointer, which
        // points at a live, writable c_int.
        let rc = unsafe {
            libc::prctl(
                libc::PR_GET_TSC,
                &mut state as *mut libc::c_int as libc::c_ulong,
            )
        };
        rc != 0 || state != libc::PR_TSC_ENABLE
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn pair_at(ticks: u64, nanos: Nanos) -> Pair {
            Pair {
                ticks,
                nanos,
                width: 200,
            }
        }

        #[test]
        fn the_rate_converts_ticks_to_nanoseconds() {
            // 2.5 GHz: 2.5 ticks per nanosecond.
            let mult = mult_from_span(5_000_000, 2_000_000).unwrap();
            assert_eq!(to_nanos(0, mult), 0);
            let second = to_nanos(2_500_000_000, mult);
            assert!(second.abs_diff(1_000_000_000) <= 1, "{second}");
            // A century of ticks neither overflows nor loses the rate.
            let century = 2_500_000_000u64 * 3_600 * 24 * 36_525;
            let ns = to_nanos(century, mult);
            assert!(ns.abs_diff(century / 5 * 2) < 1_000_000_000, "{ns}");
            assert_eq!(to_nanos(u64::MAX, u64::MAX), u64::MAX, "saturates");
        }

        #[test]
        fn implausible_rates_are_refused() {
            assert_eq!(mult_from_span(1, 0), None);
            assert_eq!(mult_from_span(1_000, 1_000_000), None, "1 MHz");
            assert_eq!(mult_from_span(400, 1_000), None, "0.4 GHz");
            assert_eq!(mult_from_span(11_000, 1_000), None, "11 GHz");
            assert!(mult_from_span(500, 1_000).is_some(), "0.5 GHz");
            let fastest = mult_from_span(10_000, 1_000).unwrap();
            assert!(fastest > UNUSABLE, "{fastest}");
        }

        #[test]
        fn a_calibration_needs_halves_that_agree_and_narrow_pairs() {
            // 3 GHz over 2 + 2 ms.
            let a = pair_at(1_000_000, 0);
            let b = pair_at(1_000_000 + 6_000_000, 2_000_000);
            let c = pair_at(1_000_000 + 12_000_000, 4_000_000);
            let mult = rate_of(a, b, c).unwrap();
            let second = to_nanos(3_000_000_000, mult);
            assert!(second.abs_diff(1_000_000_000) <= 1, "{second}");
            // The counter ran 0.2% faster in the second half.
            let fast = pair_at(c.ticks + 12_000, c.nanos);
            assert_eq!(rate_of(a, b, fast), None);
            // Within 0.05%: accepted.
            let close = pair_at(c.ticks + 2_000, c.nanos);
            assert!(rate_of(a, b, close).is_some());
            // A pair known only to 10 us (preempted on every try).
            let wide = Pair { width: 30_000, ..c };
            assert_eq!(rate_of(a, b, wide), None);
            // The precise clock going back, or the counter.
            assert_eq!(rate_of(c, b, a), None);
        }

        #[test]
        fn an_anchor_off_reads_nothing() {
            assert_eq!(Anchor::OFF.elapsed(), None);
            assert!(!Anchor::OFF.is_on());
        }

        #[test]
        fn a_reading_before_the_anchor_is_zero() {
            if !usable() {
                return;
            }
            let anchor = Anchor {
                at: u64::MAX,
                mult: mult_from_span(3_000, 1_000).unwrap(),
            };
            assert_eq!(anchor.elapsed(), Some(0));
        }

        #[test]
        fn pairs_bracket_the_precise_clock() {
            if !usable() {
                return;
            }
            let (p0, p1) = (pair().unwrap(), pair().unwrap());
            assert!(p1.ticks > p0.ticks && p1.nanos > p0.nanos);
        }
    }
}

/// No counter to use: the slot clock is the precise clock.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(loom))))]
mod tsc {
    use super::Nanos;

    #[derive(Debug, Clone, Copy)]
    pub(super) struct Anchor;

    impl Anchor {
        #[cfg(test)]
        pub(super) const OFF: Self = Self;

        pub(super) fn now() -> Self {
            Self
        }

        pub(super) fn calibrate() {}

        pub(super) fn is_on(&self) -> bool {
            false
        }

        #[inline(always)]
        pub(super) fn elapsed(&self) -> Option<Nanos> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) -> Duration {
        let start = std::time::Instant::now();
        while start.elapsed() < d {}
        start.elapsed()
    }

    fn resolves_microseconds(c: &Clock) {
        let first = c.now();
        assert!(first >= START, "epoch leaves room below now");
        // A busy wait of ~50 us reads as such: the coarse clock read 0 or
        // a whole tick (1-4 ms) here.
        let measured = saturating_nanos(spin(Duration::from_micros(50)));
        let span = c.now() - first;
        assert!(span >= 50_000, "{span} ns read for a 50 us wait");
        assert!(span >= measured / 2, "{span} ns read for {measured} ns");
    }

    #[test]
    fn readings_resolve_microseconds_and_never_go_back() {
        resolves_microseconds(&Clock::new());
        resolves_microseconds(&Clock::precise_only());
    }

    #[test]
    fn a_clock_is_three_words_at_most() {
        assert!(std::mem::size_of::<Clock>() <= 3 * std::mem::size_of::<u64>());
    }

    /// The slot clock, read between two readings of CLOCK_MONOTONIC.
    fn bracketed(c: &Clock) -> (Nanos, Nanos, Nanos) {
        let before = monotonic();
        let slot = c.now();
        (before, slot, monotonic())
    }

    #[test]
    fn slot_clock_durations_match_clock_monotonic() {
        // Over 50 ms the slot clock's span lies between CLOCK_MONOTONIC's
        // inner and outer spans around the same readings, give or take the
        // calibration's error (2e-3 allows four times its limit, and NTP
        // slewing CLOCK_MONOTONIC by up to 5e-4 since). A counter scaled
        // wrongly, or a slot clock that is not monotonic time, misses by
        // far more.
        let c = Clock::new();
        eprintln!("slot clock uses the time-stamp counter: {}", c.uses_tsc());
        let (b0, s0, a0) = bracketed(&c);
        std::thread::sleep(Duration::from_millis(50));
        let (b1, s1, a1) = bracketed(&c);
        let slot = (s1 - s0) as f64;
        let (inner, outer) = ((b1 - a0) as f64, (a1 - b0) as f64);
        assert!(inner >= 50e6, "slept {inner} ns by CLOCK_MONOTONIC");
        let tolerance = 2e-3;
        assert!(
            slot >= inner * (1.0 - tolerance) && slot <= outer * (1.0 + tolerance),
            "slot clock {slot} ns, CLOCK_MONOTONIC between {inner} and {outer} ns"
        );
    }

    #[test]
    fn readings_seen_by_other_threads_are_at_most_a_load_earlier() {
        // Two threads pass the baton back and forth; each reads the clock
        // after seeing the other's last reading, as a borrower does after
        // taking a slot another thread returned. The counter may be read
        // ahead of the load that saw the baton (see `tsc`): by that load's
        // latency, a fraction of a microsecond; CPUs whose counters
        // disagree would show far more, and a clock that is not monotonic
        // at all, seconds.
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        const ROUNDS: u64 = 50_000;
        let c = Clock::new();
        let turn = Arc::new(AtomicU64::new(0));
        let last = Arc::new(AtomicU64::new(c.now()));
        let player = |parity: u64| {
            let (turn, last) = (turn.clone(), last.clone());
            move || {
                let mut went_back = 0u64;
                for round in 0..ROUNDS {
                    let mine = 2 * round + parity;
                    let mut spins = 0u32;
                    while turn.load(Ordering::Acquire) != mine {
                        spins += 1;
                        if spins % 64 == 0 {
                            std::thread::yield_now();
                        }
                        std::hint::spin_loop();
                    }
                    let seen = last.load(Ordering::Relaxed);
                    let now = c.now();
                    went_back = went_back.max(seen.saturating_sub(now));
                    last.store(now, Ordering::Relaxed);
                    turn.store(mine + 1, Ordering::Release);
                }
                went_back
            }
        };
        let other = std::thread::spawn(player(1));
        let mine = player(0)();
        let theirs = other.join().unwrap();
        const LOAD_LATENCY_BOUND: u64 = 10_000;
        assert!(
            mine.max(theirs) < LOAD_LATENCY_BOUND,
            "a reading went back by {} ns",
            mine.max(theirs)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fork_child_continues_the_parents_clock() {
        let c = Clock::new();
        let before = c.now();
        // SAFETY: the child only reads clocks (rdtsc, clock_gettime, a
        // relaxed atomic load: no lock, no allocation) and leaves with
        // _exit, so the state other test threads left behind is never
        // touched.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let later = c.now();
            let fresh = Clock::new();
            let code = if later < before {
                1
            } else if fresh.uses_tsc() != c.uses_tsc() {
                2
            } else if fresh.now() < START {
                3
            } else {
                0
            };
            // SAFETY: ends the child at once, running nothing inherited.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child, writing its status into a live
        // local.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(rc, pid);
        assert!(libc::WIFEXITED(status), "child status {status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: went back, 2: recalibrated or lost the counter, 3: a reading below START"
        );
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
