//! loom models of the races the pool must win: two borrowers for one
//! connection, a return racing a request that is about to queue (the lost
//! wake-up), a timeout racing a grant, and close racing both; in a null
//! pool, capacity freed by a discard racing a request about to queue, and
//! a grant of capacity racing the waiter giving up.
//!
//! Run: RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
//!      cargo test -p ferropool-core --release --test loom

#![cfg(loom)]

mod common;

use std::time::Duration;

use common::Driver;
use ferropool_core::{Begin, Checkin, Loss, Pool, Served, Ticket, WaitTicket};
use loom::sync::Arc;
use loom::thread;

fn pool_with_one() -> (Arc<Pool<u64>>, u64) {
    let pool = Pool::new(common::config(1, 1)).unwrap();
    pool.open().unwrap();
    Driver::new().run(&pool);
    let held = pool.checkout(|c| *c).unwrap().unwrap().value;
    (Arc::new(pool), held)
}

/// Borrow through the fast path, or queue and spin until served.
fn borrow(pool: &Pool<u64>) -> Result<u64, ferropool_core::PoolError> {
    if let Some(l) = pool.checkout(|c| *c)? {
        return Ok(l.value);
    }
    match pool.begin_wait(Duration::from_secs(3600), None, |c| *c)? {
        Begin::Ready(l) => Ok(l.value),
        Begin::Wait(t) => finish_when_resolved(pool, t),
        Begin::Connect(_) => unreachable!("not a null pool"),
    }
}

fn finish_when_resolved(pool: &Pool<u64>, t: WaitTicket) -> Result<u64, ferropool_core::PoolError> {
    // A lost wake-up would spin here forever: loom reports it as a model
    // that never terminates.
    let mut spins = 0;
    while !t.waiter().is_resolved() {
        spins += 1;
        if spins == 200 {
            panic!(
                "lost wake-up: phases {:?}, waiting {}, idle {}",
                pool.phase_counts(),
                pool.waiting(),
                pool.available()
            );
        }
        thread::yield_now();
    }
    pool.finish_wait(t, |c| *c)
        .map(|s| s.lent().expect("not a null pool").value)
}

#[test]
fn two_borrowers_never_share_a_connection() {
    loom::model(|| {
        let pool = Pool::new(common::config(1, 1)).unwrap();
        pool.open().unwrap();
        Driver::new().run(&pool);
        let pool = Arc::new(pool);
        let p2 = pool.clone();
        let t = thread::spawn(move || p2.checkout(|c| *c).unwrap().map(|l| l.value));
        let mine = pool.checkout(|c| *c).unwrap().map(|l| l.value);
        let theirs = t.join().unwrap();
        assert!(
            mine.is_some() != theirs.is_some(),
            "exactly one borrower wins"
        );
        let c = mine.or(theirs).unwrap();
        assert_eq!(
            pool.checkin(c as usize, |x| *x == c).unwrap(),
            Checkin::Kept
        );
        assert_eq!(pool.available(), 1);
    });
}

#[test]
fn a_return_racing_a_request_about_to_queue_is_never_lost() {
    loom::model(|| {
        let (pool, held) = pool_with_one();
        let p2 = pool.clone();
        let borrower = thread::spawn(move || borrow(&p2).unwrap());
        assert_eq!(
            pool.checkin(held as usize, |x| *x == held).unwrap(),
            Checkin::Kept
        );
        assert_eq!(borrower.join().unwrap(), held);
        assert_eq!(pool.waiting(), 0);
    });
}

#[test]
fn a_waiter_giving_up_races_a_grant_without_losing_the_connection() {
    loom::model(|| {
        let (pool, held) = pool_with_one();
        let Begin::Wait(t) = pool
            .begin_wait(Duration::from_secs(3600), None, |c| *c)
            .unwrap()
        else {
            panic!("must queue");
        };
        let p2 = pool.clone();
        let waiter = thread::spawn(move || {
            p2.finish_wait(t, |c| *c)
                .ok()
                .map(|s| s.lent().expect("not a null pool").value)
        });
        assert_eq!(
            pool.checkin(held as usize, |x| *x == held).unwrap(),
            Checkin::Kept
        );
        match waiter.join().unwrap() {
            Some(c) => {
                assert_eq!(c, held);
                assert_eq!(pool.available(), 0);
            }
            None => assert_eq!(pool.available(), 1, "not granted: back in the pool"),
        }
        assert_eq!(pool.size(), 1);
    });
}

#[test]
fn close_racing_a_return_and_a_waiter_accounts_for_the_connection() {
    loom::model(|| {
        let (pool, held) = pool_with_one();
        let Begin::Wait(t) = pool
            .begin_wait(Duration::from_secs(3600), None, |c| *c)
            .unwrap()
        else {
            panic!("must queue");
        };
        let p2 = pool.clone();
        let waiter = thread::spawn(move || {
            // Served or told the pool closed; a served waiter gives the
            // connection back, and a closed pool hands it out to close.
            match finish_when_resolved(&p2, t) {
                Ok(c) => match p2.checkin(c as usize, |x| *x == c).unwrap() {
                    Checkin::Close(p, _) => vec![p],
                    Checkin::Kept => vec![],
                },
                Err(_) => vec![],
            }
        });
        let p3 = pool.clone();
        let closer = thread::spawn(move || p3.close());
        let mut closed = match pool.checkin(held as usize, |x| *x == held).unwrap() {
            Checkin::Close(p, _) => vec![p],
            Checkin::Kept => vec![],
        };
        closed.extend(waiter.join().unwrap());
        closed.extend(closer.join().unwrap());
        assert_eq!(closed, vec![held], "closed exactly once, never kept");
        assert_eq!(pool.size(), 0);
        assert_eq!(pool.available(), 0);
    });
}

/// A null pool of one whose connection (payload 1) is lent.
fn null_pool_full() -> Arc<Pool<u64>> {
    let pool = Pool::new(common::null_config(1)).unwrap();
    pool.open().unwrap();
    let Begin::Connect(t) = pool
        .begin_wait(Duration::from_secs(3600), None, |c| *c)
        .unwrap()
    else {
        panic!("capacity is free");
    };
    pool.connected_to_caller(t, 1, 1, -1, Duration::ZERO, |c| *c)
        .unwrap();
    Arc::new(pool)
}

#[test]
fn null_pool_capacity_freed_while_a_request_queues_is_never_stranded() {
    loom::model(|| {
        let pool = null_pool_full();
        let p2 = pool.clone();
        let requester = thread::spawn(move || -> Ticket {
            match p2
                .begin_wait(Duration::from_secs(3600), None, |c| *c)
                .unwrap()
            {
                Begin::Connect(t) => t,
                Begin::Wait(w) => {
                    let mut spins = 0;
                    while !w.waiter().is_resolved() {
                        spins += 1;
                        assert!(spins < 200, "stranded: size {}", p2.size());
                        thread::yield_now();
                    }
                    match p2.finish_wait(w, |c| *c).unwrap() {
                        Served::Connect(t) => t,
                        Served::Lent(l) => panic!("discarded, yet lent {}", l.value),
                    }
                }
                Begin::Ready(_) => panic!("a null pool keeps nothing idle"),
            }
        });
        assert_eq!(
            pool.discard(1, |c| *c == 1, Loss::ReturnedBroken).unwrap(),
            Some(1)
        );
        let t = requester.join().unwrap();
        assert!(pool
            .connected_to_caller(t, 2, 2, -1, Duration::ZERO, |c| *c)
            .is_ok());
        assert_eq!((pool.size(), pool.waiting()), (1, 0));
    });
}

#[test]
fn null_pool_capacity_granted_to_a_waiter_giving_up_is_not_lost() {
    loom::model(|| {
        let pool = null_pool_full();
        let Begin::Wait(w) = pool
            .begin_wait(Duration::from_secs(3600), None, |c| *c)
            .unwrap()
        else {
            panic!("full: wait");
        };
        let p2 = pool.clone();
        let waiter = thread::spawn(move || p2.cancel_wait(w));
        pool.discard(1, |c| *c == 1, Loss::ReturnedBroken).unwrap();
        assert_eq!(waiter.join().unwrap(), None);
        // Granted then cancelled, or given up before: either way the
        // capacity is free again, for the next request.
        assert_eq!((pool.size(), pool.waiting()), (0, 0));
        assert!(matches!(
            pool.begin_wait(Duration::from_secs(3600), None, |c| *c),
            Ok(Begin::Connect(_))
        ));
    });
}
