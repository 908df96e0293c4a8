//! Null pools: capacity freed while requests are queued goes to the oldest
//! of them, whichever way the connection that held it was retired. A
//! request left queued with capacity free would wait out its timeout
//! (psycopg_pool serves it at once).

mod common;

use std::time::Duration;

use common::null_config;
use ferropool_core::{Begin, Checkin, Loss, Pool, Served, Ticket, WaitTicket};

type NullPool = Pool<u64>;

fn open(max_size: usize) -> NullPool {
    let pool = Pool::new(null_config(max_size)).unwrap();
    pool.open().unwrap();
    pool
}

/// A request that finds capacity: it connects itself and holds `payload`.
fn connect(pool: &NullPool, payload: u64) -> u64 {
    let Begin::Connect(t) = pool
        .begin_wait(Duration::from_secs(60), None, |c| *c)
        .unwrap()
    else {
        panic!("capacity is free: connect");
    };
    connected(pool, t, payload)
}

fn connected(pool: &NullPool, t: Ticket, payload: u64) -> u64 {
    pool.connected_to_caller(t, payload, payload as usize, -1, Duration::ZERO, |c| *c)
        .unwrap()
        .value
}

/// A request that finds the pool full: it queues.
fn queue(pool: &NullPool) -> WaitTicket {
    match pool
        .begin_wait(Duration::from_secs(60), None, |c| *c)
        .unwrap()
    {
        Begin::Wait(t) => t,
        other => panic!("the pool is full: wait, got {other:?}"),
    }
}

/// The waiter was told capacity is free: it got a ticket to connect on.
fn granted_capacity(pool: &NullPool, t: WaitTicket) -> Ticket {
    assert!(t.waiter().is_resolved(), "the waiter was woken");
    match pool.finish_wait(t, |c| *c).unwrap() {
        Served::Connect(ticket) => ticket,
        Served::Lent(l) => panic!("expected capacity, got connection {}", l.value),
    }
}

/// One connection held, one request queued; `retire` frees the capacity
/// some way; the queued request must be granted it and be able to use it.
fn retire_serves_the_waiter(setup: impl FnOnce(&NullPool), retire: impl FnOnce(&NullPool, u64)) {
    let pool = open(1);
    setup(&pool);
    let held = connect(&pool, 1);
    let waiter = queue(&pool);
    assert!(!waiter.waiter().is_resolved());
    retire(&pool, held);
    let ticket = granted_capacity(&pool, waiter);
    assert_eq!(connected(&pool, ticket, 2), 2);
    assert_eq!((pool.size(), pool.waiting()), (1, 0));
}

#[test]
fn an_expired_connection_returned_frees_capacity_for_the_waiter() {
    retire_serves_the_waiter(
        |pool| pool.set_max_lifetime(Duration::from_nanos(1)).unwrap(),
        |pool, held| {
            let back = pool.checkin(held as usize, |c| *c == held).unwrap();
            assert!(matches!(back, Checkin::Close(1, _)), "{back:?}");
        },
    );
}

#[test]
fn a_connection_returned_broken_frees_capacity_for_the_waiter() {
    // Closed by its borrower, or a failed rollback or reset: all returned
    // broken.
    retire_serves_the_waiter(
        |_| {},
        |pool, held| {
            let p = pool
                .discard(held as usize, |c| *c == held, Loss::ReturnedBroken)
                .unwrap();
            assert_eq!(p, Some(held));
        },
    );
}

#[test]
fn a_connection_found_broken_frees_capacity_for_the_waiter() {
    retire_serves_the_waiter(
        |_| {},
        |pool, held| {
            let p = pool
                .discard(held as usize, |c| *c == held, Loss::FoundBroken)
                .unwrap();
            assert_eq!(p, Some(held));
        },
    );
}

#[test]
fn a_drained_connection_returned_frees_capacity_for_the_waiter() {
    retire_serves_the_waiter(
        |_| {},
        |pool, held| {
            assert!(pool.drain().is_empty(), "nothing idle in a null pool");
            let back = pool.checkin(held as usize, |c| *c == held).unwrap();
            assert!(matches!(back, Checkin::Close(1, _)), "{back:?}");
        },
    );
}

#[test]
fn a_used_up_connection_returned_frees_capacity_for_the_waiter() {
    retire_serves_the_waiter(
        |pool| pool.set_max_uses(1),
        |pool, held| {
            let back = pool.checkin(held as usize, |c| *c == held).unwrap();
            assert!(matches!(back, Checkin::Close(1, _)), "{back:?}");
        },
    );
}

#[test]
fn a_leaked_connection_reclaimed_frees_capacity_for_the_waiter() {
    retire_serves_the_waiter(
        |_| {},
        |pool, held| {
            assert_eq!(
                pool.reclaim(held as usize, |c| *c == held).unwrap(),
                Some(held)
            );
        },
    );
}

#[test]
fn a_healthy_connection_returned_goes_to_the_waiter_itself() {
    let pool = open(1);
    let held = connect(&pool, 1);
    let waiter = queue(&pool);
    assert_eq!(
        pool.checkin(held as usize, |c| *c == held).unwrap(),
        Checkin::Kept
    );
    let got = pool.finish_wait(waiter, |c| *c).unwrap();
    assert_eq!(got.lent().map(|l| l.value), Some(held));
}

#[test]
fn a_failed_connect_passes_its_capacity_to_the_waiter() {
    let pool = open(1);
    let Begin::Connect(mine) = pool
        .begin_wait(Duration::from_secs(60), None, |c| *c)
        .unwrap()
    else {
        panic!("connect");
    };
    let waiter = queue(&pool);
    pool.connect_failed_caller(mine, "refused".into());
    let ticket = granted_capacity(&pool, waiter);
    assert_eq!(connected(&pool, ticket, 2), 2);
    let s = pool.stats(false);
    assert_eq!((s.connections_errors, s.pool_size), (1, 1));
}

#[test]
fn capacity_granted_to_a_waiter_that_gives_up_goes_to_the_next() {
    let pool = open(1);
    let held = connect(&pool, 1);
    let first = queue(&pool);
    let second = queue(&pool);
    pool.discard(held as usize, |c| *c == held, Loss::ReturnedBroken)
        .unwrap();
    assert!(first.waiter().is_resolved());
    assert!(
        !second.waiter().is_resolved(),
        "one unit of capacity, one grant"
    );
    // Cancelled (KeyboardInterrupt, a task cancelled) after the grant.
    assert_eq!(pool.cancel_wait(first), None);
    let ticket = granted_capacity(&pool, second);
    assert_eq!(connected(&pool, ticket, 2), 2);
    assert_eq!(pool.size(), 1);
}

#[test]
fn waiters_that_timed_out_are_skipped_and_nothing_is_left_reserved() {
    let pool = open(1);
    let held = connect(&pool, 1);
    let Begin::Wait(gone) = pool.begin_wait(Duration::ZERO, None, |c| *c).unwrap() else {
        panic!("wait");
    };
    assert!(pool.finish_wait(gone, |c| *c).is_err(), "timed out");
    let waiter = queue(&pool);
    pool.discard(held as usize, |c| *c == held, Loss::ReturnedBroken)
        .unwrap();
    granted_capacity(&pool, waiter);
    assert_eq!(pool.size(), 1, "the grant holds the capacity");

    // Nobody waits: the capacity stays free for the next request.
    let pool = open(1);
    let held = connect(&pool, 1);
    pool.discard(held as usize, |c| *c == held, Loss::ReturnedBroken)
        .unwrap();
    assert_eq!(pool.size(), 0);
    assert_eq!(connect(&pool, 2), 2);
}

#[test]
fn capacity_goes_to_waiters_in_arrival_order_and_newcomers_queue_behind() {
    let pool = open(2);
    let a = connect(&pool, 1);
    let b = connect(&pool, 2);
    let first = queue(&pool);
    let second = queue(&pool);
    pool.discard(a as usize, |c| *c == a, Loss::ReturnedBroken)
        .unwrap();
    assert!(first.waiter().is_resolved() && !second.waiter().is_resolved());
    // A newcomer while `second` waits queues behind it, even if capacity
    // were free.
    let third = queue(&pool);
    pool.discard(b as usize, |c| *c == b, Loss::ReturnedBroken)
        .unwrap();
    assert!(second.waiter().is_resolved() && !third.waiter().is_resolved());
    granted_capacity(&pool, first);
    granted_capacity(&pool, second);
    assert_eq!(pool.cancel_wait(third), None);
}

#[test]
fn growing_a_full_null_pool_serves_its_waiters() {
    let pool = open(1);
    connect(&pool, 1);
    let waiter = queue(&pool);
    assert!(pool.resize(0, 2).unwrap().is_empty());
    granted_capacity(&pool, waiter);
}

#[test]
fn shrinking_retires_without_granting_above_max_size() {
    let pool = open(2);
    let a = connect(&pool, 1);
    let b = connect(&pool, 2);
    let waiter = queue(&pool);
    pool.resize(0, 1).unwrap();
    // 2 held, max_size 1: the first return leaves the pool at max_size.
    let back = pool.checkin(a as usize, |c| *c == a).unwrap();
    assert!(matches!(back, Checkin::Close(1, _)), "{back:?}");
    assert!(!waiter.waiter().is_resolved(), "no capacity below max_size");
    pool.discard(b as usize, |c| *c == b, Loss::ReturnedBroken)
        .unwrap();
    granted_capacity(&pool, waiter);
    assert_eq!(pool.size(), 1);
}

#[test]
fn capacity_freed_during_a_pause_is_granted_on_resume() {
    let pool = open(1);
    let held = connect(&pool, 1);
    let waiter = queue(&pool);
    pool.pause();
    pool.discard(held as usize, |c| *c == held, Loss::ReturnedBroken)
        .unwrap();
    assert!(!waiter.waiter().is_resolved(), "paused");
    pool.resume();
    granted_capacity(&pool, waiter);
}

#[test]
fn capacity_granted_when_the_pool_closes_is_refused_and_given_back() {
    let pool = open(1);
    let held = connect(&pool, 1);
    let waiter = queue(&pool);
    pool.discard(held as usize, |c| *c == held, Loss::ReturnedBroken)
        .unwrap();
    let ticket = granted_capacity(&pool, waiter);
    assert!(pool.close().is_empty());
    let refused = pool.connected_to_caller(ticket, 2, 2, -1, Duration::ZERO, |c| *c);
    assert_eq!(refused, Err(2), "closed: the caller closes it");
    assert_eq!(pool.size(), 0);
}
