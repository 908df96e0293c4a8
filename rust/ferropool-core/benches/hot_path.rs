//! Cost of the checkout + checkin cycle in the core alone (no Python), on a
//! pool of 4 idle connections: one thread, and 4 threads sharing the pool
//! (the machine's cores contending for the same slots), each with use
//! spread over the idle connections (the default) and with `lifo`; and
//! the cost of one reading of the slot clock (two per cycle: lease start
//! and end) beside one of the precise clock (waits).
//!
//! Run: cargo bench -p ferropool-core --bench hot_path
//! Each figure is the best of 5 runs, in ns per cycle; compare figures of
//! one run, not across runs (the machine is shared).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferropool_core::{Action, Checkin, Pool};

fn filled(lifo: bool) -> Pool<u64> {
    let mut cfg = common::config(4, 4);
    cfg.lifo = lifo;
    let pool: Pool<u64> = Pool::new(cfg).expect("valid config");
    pool.open().expect("opens");
    for i in 1..=4u64 {
        match pool.next_action(Duration::ZERO) {
            Some(Action::Create(t)) => {
                let _ = pool.connected(t, i, i as usize, -1, Duration::ZERO);
            }
            other => panic!("expected a create action, got {other:?}"),
        }
    }
    pool
}

#[inline]
fn cycle(pool: &Pool<u64>) {
    let lent = loop {
        if let Some(l) = pool.checkout(|c| *c).unwrap() {
            break l;
        }
        std::hint::spin_loop();
    };
    let back = pool
        .checkin(lent.value as usize, |c| *c == lent.value)
        .unwrap();
    debug_assert_eq!(back, Checkin::Kept);
    black_box(&lent);
}

fn threads(pool: &Arc<Pool<u64>>, k: usize, n: u32) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        let hs: Vec<_> = (0..k)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for _ in 0..n {
                        cycle(&pool);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        best = best.min(t0.elapsed().as_nanos() as f64 / (f64::from(n) * k as f64));
    }
    best
}

fn one_thread(pool: &Pool<u64>, n: u32) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..n {
            cycle(pool);
        }
        best = best.min(t0.elapsed().as_nanos() as f64 / f64::from(n));
    }
    best
}

fn main() {
    for (label, lifo) in [("spread (default)", false), ("lifo", true)] {
        let pool = Arc::new(filled(lifo));
        let one = one_thread(&pool, 5_000_000);
        let four = threads(&pool, 4, 1_000_000);
        println!("checkout+checkin, {label:<16}: 1 thread {one:6.1} ns, 4 threads {four:6.1} ns");
    }
    let clock = ferropool_core::clock::Clock::new();
    let n = 5_000_000u32;
    let slot = best_of_5(n, || {
        black_box(clock.now());
    });
    let precise = best_of_5(n, || {
        black_box(clock.wait_now());
    });
    let source = if clock.uses_tsc() {
        "time-stamp counter"
    } else {
        "CLOCK_MONOTONIC"
    };
    println!("clock read: slot clock ({source}) {slot:.1} ns, precise clock {precise:.1} ns");
}

fn best_of_5(n: u32, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(t0.elapsed().as_nanos() as f64 / f64::from(n));
    }
    best
}
