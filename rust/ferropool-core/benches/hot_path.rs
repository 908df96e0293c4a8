//! Cost of the uncontended checkout + checkin cycle in the core alone
//! (no Python). Run: cargo bench -p ferropool-core --bench hot_path

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferropool_core::{Action, Checkin, Pool};

fn main() {
    let pool: Pool<u64> = Pool::new(common::config(4, 4)).expect("valid config");
    pool.open().expect("opens");
    for i in 1..=4u64 {
        match pool.next_action(Duration::ZERO) {
            Some(Action::Create(t)) => {
                let _ = pool.connected(t, i * 16, (i * 16) as usize, -1, Duration::ZERO);
            }
            other => panic!("expected a create action, got {other:?}"),
        }
    }
    let n = 5_000_000u32;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..n {
            let lent = pool.checkout(|c| *c).unwrap().unwrap();
            let back = pool
                .checkin(lent.value as usize, |c| *c == lent.value)
                .unwrap();
            assert_eq!(back, Checkin::Kept);
            black_box(&lent);
        }
        best = best.min(t0.elapsed().as_nanos() as f64 / f64::from(n));
    }
    println!("checkout+checkin: {best:.1} ns");
    let t0 = Instant::now();
    for _ in 0..n {
        black_box(pool.clock().now());
    }
    println!(
        "clock read: {:.1} ns",
        t0.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
