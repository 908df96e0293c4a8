//! The core's observable behaviour, one concern per test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, filled, Driver};
use ferropool_core::backoff::{
    INITIAL_DELAY, JITTER, MAX_DELAY, PERMANENT_INITIAL_DELAY, PERMANENT_MAX_DELAY,
};
use ferropool_core::{
    Action, Begin, Checkin, CloseReason, ConnectFailed, Failure, Loss, NotLent, Pool, PoolError,
};

#[test]
fn opening_fills_to_min_size_and_nothing_more() {
    let (pool, _) = filled(3, 5);
    let s = pool.stats(false);
    assert_eq!(
        (s.pool_size, s.pool_available, s.connections_num),
        (3, 3, 3)
    );
}

#[test]
fn a_pool_not_open_or_closed_refuses_requests() {
    let pool: Pool<u64> = Pool::new(config(1, 1)).unwrap();
    assert!(matches!(
        pool.checkout(|c| *c),
        Err(PoolError::NotOpen { .. })
    ));
    assert!(
        pool.close().is_empty(),
        "closing a never-opened pool is a no-op"
    );
    pool.open().unwrap();
    let closed = pool.close();
    assert!(closed.is_empty(), "nothing was opened yet");
    assert!(matches!(
        pool.checkout(|c| *c),
        Err(PoolError::Closed { .. })
    ));
    assert!(matches!(pool.open(), Err(PoolError::CannotReopen { .. })));
}

#[test]
fn checkout_lends_each_connection_once() {
    let (pool, _) = filled(2, 2);
    let a = pool.checkout(|c| *c).unwrap().unwrap().value;
    let b = pool.checkout(|c| *c).unwrap().unwrap().value;
    assert_ne!(a, b);
    assert!(
        pool.checkout(|c| *c).unwrap().is_none(),
        "nothing idle is left"
    );
    assert_eq!(
        pool.checkin(a as usize, |c| *c == a).unwrap(),
        Checkin::Kept
    );
    assert_eq!(pool.checkout(|c| *c).unwrap().unwrap().value, a);
}

#[test]
fn returning_twice_or_a_stranger_is_refused_and_changes_nothing() {
    let (pool, _) = filled(1, 1);
    let a = pool.checkout(|c| *c).unwrap().unwrap().value;
    pool.checkin(a as usize, |c| *c == a).unwrap();
    let before = pool.stats(false);
    let again = pool.checkin(a as usize, |c| *c == a).unwrap_err();
    assert!(matches!(
        again,
        PoolError::NotLent {
            reason: NotLent::AlreadyReturned,
            ..
        }
    ));
    let stranger = pool.checkin(999, |_| true).unwrap_err();
    assert!(matches!(
        stranger,
        PoolError::NotLent {
            reason: NotLent::Unknown,
            ..
        }
    ));
    // Same key, different object: refused too.
    let b = pool.checkout(|c| *c).unwrap().unwrap().value;
    assert!(pool.checkin(b as usize, |_| false).is_err());
    assert!(pool.checkin(b as usize, |c| *c == b).is_ok());
    assert_eq!(pool.stats(false).pool_available, before.pool_available);
}

#[test]
fn waiters_are_served_in_fifo_order() {
    let (pool, _) = filled(1, 1);
    let held = pool.checkout(|c| *c).unwrap().unwrap().value;
    let mut tickets = Vec::new();
    for _ in 0..3 {
        match pool
            .begin_wait(Duration::from_secs(10), None, |c| *c)
            .unwrap()
        {
            Begin::Wait(t) => tickets.push(t),
            other => panic!("expected to wait, got {other:?}"),
        }
    }
    assert_eq!(pool.waiting(), 3);
    let mut order = Vec::new();
    let mut current = held;
    for (i, t) in tickets.into_iter().enumerate() {
        pool.checkin(current as usize, |c| *c == current).unwrap();
        assert!(t.waiter().is_resolved(), "waiter {i} was granted on return");
        current = pool.finish_wait(t, |c| *c).unwrap().lent().unwrap().value;
        order.push(i);
    }
    assert_eq!(order, vec![0, 1, 2]);
    assert_eq!(pool.stats(false).requests_queued, 3);
}

#[test]
fn newcomers_queue_behind_waiters() {
    let (pool, _) = filled(1, 1);
    let held = pool.checkout(|c| *c).unwrap().unwrap().value;
    let Begin::Wait(t) = pool
        .begin_wait(Duration::from_secs(10), None, |c| *c)
        .unwrap()
    else {
        panic!("expected to wait");
    };
    pool.checkin(held as usize, |c| *c == held).unwrap();
    // The connection went to the waiter, not to the fast path.
    assert!(pool.checkout(|c| *c).unwrap().is_none());
    assert_eq!(
        pool.finish_wait(t, |c| *c).unwrap().lent().unwrap().value,
        held
    );
}

#[test]
fn a_waiter_that_gave_up_never_swallows_a_connection() {
    let (pool, _) = filled(1, 1);
    let held = pool.checkout(|c| *c).unwrap().unwrap().value;
    let Begin::Wait(t) = pool.begin_wait(Duration::ZERO, None, |c| *c).unwrap() else {
        panic!("expected to wait");
    };
    let err = pool.finish_wait(t, |c| *c).unwrap_err();
    assert!(matches!(err, PoolError::Timeout { .. }));
    assert_eq!(pool.waiting(), 0);
    pool.checkin(held as usize, |c| *c == held).unwrap();
    let s = pool.stats(false);
    assert_eq!((s.pool_available, s.requests_errors), (1, 1));
}

#[test]
fn a_cancelled_wait_gives_a_granted_connection_back() {
    let (pool, _) = filled(1, 1);
    let held = pool.checkout(|c| *c).unwrap().unwrap().value;
    let Begin::Wait(t) = pool
        .begin_wait(Duration::from_secs(10), None, |c| *c)
        .unwrap()
    else {
        panic!("expected to wait");
    };
    pool.checkin(held as usize, |c| *c == held).unwrap();
    assert!(t.waiter().is_resolved());
    assert_eq!(
        pool.cancel_wait(t),
        None,
        "nothing to close: the pool is open"
    );
    assert_eq!(pool.available(), 1, "the granted connection is back");
}

#[test]
fn waiting_grows_the_pool_up_to_max_size() {
    let (pool, mut d) = filled(0, 2);
    let mut tickets = Vec::new();
    for _ in 0..3 {
        assert!(pool.checkout(|c| *c).unwrap().is_none());
        if let Begin::Wait(t) = pool
            .begin_wait(Duration::from_secs(10), None, |c| *c)
            .unwrap()
        {
            tickets.push(t);
        }
        d.run(&pool);
    }
    assert_eq!(pool.size(), 2, "never above max_size");
    let served = tickets.iter().filter(|t| t.waiter().is_resolved()).count();
    assert_eq!(served, 2);
}

#[test]
fn an_expired_connection_is_never_lent() {
    let mut cfg = config(1, 1);
    cfg.max_lifetime = Duration::from_millis(20);
    let pool = Pool::new(cfg).unwrap();
    pool.open().unwrap();
    let mut d = Driver::new();
    d.run(&pool);
    let first = pool.checkout(|c| *c).unwrap().unwrap().value;
    pool.checkin(first as usize, |c| *c == first).unwrap();
    std::thread::sleep(Duration::from_millis(40));
    // Expired while idle: retired at checkout, replacement requested.
    assert!(pool.checkout(|c| *c).unwrap().is_none());
    d.run(&pool);
    assert_eq!(d.closed, vec![first]);
    let second = pool.checkout(|c| *c).unwrap().unwrap().value;
    assert_ne!(second, first);
    // Expired while lent: retired at return.
    std::thread::sleep(Duration::from_millis(40));
    let back = pool.checkin(second as usize, |c| *c == second).unwrap();
    assert_eq!(back, Checkin::Close(second, CloseReason::Expired));
    assert_eq!(pool.size(), 1, "replacement keeps the size");
}

#[test]
fn drain_replaces_idle_now_and_lent_on_return() {
    let (pool, mut d) = filled(2, 2);
    let lent = pool.checkout(|c| *c).unwrap().unwrap().value;
    let closed = pool.drain();
    assert_eq!(closed.len(), 1);
    d.run(&pool);
    let back = pool.checkin(lent as usize, |c| *c == lent).unwrap();
    assert_eq!(back, Checkin::Close(lent, CloseReason::Drained));
    d.run(&pool);
    assert_eq!(pool.stats(false).connections_num, 4);
    assert_eq!(pool.available(), 2);
}

#[test]
fn discard_counts_and_replaces() {
    let (pool, mut d) = filled(1, 1);
    let a = pool.checkout(|c| *c).unwrap().unwrap().value;
    assert_eq!(
        pool.discard(a as usize, |c| *c == a, Loss::ReturnedBroken)
            .unwrap(),
        Some(a)
    );
    d.run(&pool);
    let s = pool.stats(false);
    assert_eq!((s.returns_bad, s.pool_size, s.pool_available), (1, 1, 1));
}

#[test]
fn resize_down_closes_idle_surplus_and_retires_lent_on_return() {
    let (pool, _) = filled(4, 4);
    let lent: Vec<u64> = (0..3)
        .map(|_| pool.checkout(|c| *c).unwrap().unwrap().value)
        .collect();
    let closed = pool.resize(1, 1).unwrap();
    assert_eq!(closed.len(), 1);
    for (i, c) in lent.iter().enumerate() {
        let back = pool.checkin(*c as usize, |x| x == c).unwrap();
        if i < 2 {
            assert!(matches!(back, Checkin::Close(_, CloseReason::Resized)));
        } else {
            assert_eq!(back, Checkin::Kept);
        }
    }
    assert_eq!(pool.size(), 1);
    assert!(pool.resize(3, 2).is_err(), "max below min is refused");
    assert_eq!((pool.min_size(), pool.max_size()), (1, 1), "unchanged");
}

#[test]
fn failed_connects_back_off_then_give_up() {
    let mut cfg = config(1, 1);
    cfg.reconnect_timeout = Duration::from_millis(200);
    let pool: Pool<u64> = Pool::new(cfg).unwrap();
    pool.open().unwrap();
    let mut gave_up = false;
    let mut attempts = 0;
    while !gave_up {
        match pool.next_action(Duration::from_secs(2)) {
            Some(Action::Create(t)) => {
                attempts += 1;
                match pool.connect_failed(t, "refused".into(), Failure::Transient) {
                    ConnectFailed::Retry(d) => assert!(d <= Duration::from_millis(450)),
                    ConnectFailed::GaveUp => gave_up = true,
                    ConnectFailed::Closed | ConnectFailed::NotNeeded => panic!("still needed"),
                }
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
    assert!(attempts >= 3, "retried with backoff: {attempts}");
    assert_eq!(pool.size(), 0, "capacity given back");
    assert_eq!(pool.last_connect_error().as_deref(), Some("refused"));
    // Later it tries again to reach min_size.
    assert!(matches!(
        pool.next_action(Duration::from_secs(2)),
        Some(Action::Create(_))
    ));
}

/// The delay of a retry, or a panic naming what came instead.
fn retry_delay(outcome: ConnectFailed) -> Duration {
    match outcome {
        ConnectFailed::Retry(d) => d,
        other => panic!("expected a retry, got {other:?}"),
    }
}

/// The Create actions ready now (no timer waited for).
fn creates_now(pool: &Pool<u64>) -> Vec<ferropool_core::Ticket> {
    let mut tickets = vec![];
    while let Some(action) = pool.next_action(Duration::ZERO) {
        match action {
            Action::Create(t) => tickets.push(t),
            other => panic!("expected Create, got {other:?}"),
        }
    }
    tickets
}

fn within_jitter(d: Duration, nominal: Duration) -> bool {
    d >= nominal.mul_f64(1.0 - JITTER - 0.001) && d <= nominal.mul_f64(1.0 + JITTER + 0.001)
}

#[test]
fn permanent_connect_failures_back_off_from_a_second_transient_ones_from_50_ms() {
    let pool: Pool<u64> = Pool::new(config(2, 2)).unwrap();
    pool.open().unwrap();
    let tickets = creates_now(&pool);
    assert_eq!(tickets.len(), 2);
    let permanent = retry_delay(pool.connect_failed(
        tickets[0],
        "password authentication failed".into(),
        Failure::Permanent,
    ));
    let transient = retry_delay(pool.connect_failed(
        tickets[1],
        "connection refused".into(),
        Failure::Transient,
    ));
    assert!(
        within_jitter(permanent, PERMANENT_INITIAL_DELAY),
        "{permanent:?}"
    );
    assert!(within_jitter(transient, INITIAL_DELAY), "{transient:?}");
    assert!(PERMANENT_MAX_DELAY == Duration::from_secs(60) && MAX_DELAY < PERMANENT_INITIAL_DELAY);
    // Nothing is due before the timers: both attempts wait their delay.
    assert!(creates_now(&pool).is_empty());
    assert_eq!(pool.size(), 2, "capacity stays reserved for the retries");
}

#[test]
fn a_success_ends_every_run_of_failures() {
    let pool: Pool<u64> = Pool::new(config(2, 2)).unwrap();
    pool.open().unwrap();
    let tickets = creates_now(&pool);
    for t in &tickets {
        let d = retry_delay(pool.connect_failed(*t, "no such role".into(), Failure::Permanent));
        assert!(within_jitter(d, PERMANENT_INITIAL_DELAY), "{d:?}");
    }
    // The second slot's retry is due only in a second; a success on the
    // first (the role was created) brings it forward at once.
    let first = creates_now(&pool);
    assert!(first.is_empty(), "no retry due yet");
    // Wait for one retry (about a second; no bound asserted on the time).
    let t = match pool.next_action(Duration::from_secs(5)) {
        Some(Action::Create(t)) => t,
        other => panic!("expected a retry, got {other:?}"),
    };
    assert!(matches!(
        pool.connected(t, 1, 1, -1, Duration::ZERO),
        ferropool_core::Connected::Added
    ));
    let again = creates_now(&pool);
    assert_eq!(again.len(), 1, "the other retry is expedited");
    // Its next failure starts a new run: the first delay again, not twice it.
    let d = retry_delay(pool.connect_failed(again[0], "no such role".into(), Failure::Permanent));
    assert!(within_jitter(d, PERMANENT_INITIAL_DELAY), "{d:?}");
    assert_eq!(pool.last_connect_error().as_deref(), Some("no such role"));
}

#[test]
fn permanent_failures_still_give_up_at_reconnect_timeout() {
    let mut cfg = config(1, 1);
    cfg.reconnect_timeout = Duration::ZERO;
    let pool: Pool<u64> = Pool::new(cfg).unwrap();
    pool.open().unwrap();
    let t = creates_now(&pool);
    assert_eq!(
        pool.connect_failed(t[0], "wrong password".into(), Failure::Permanent),
        ConnectFailed::GaveUp
    );
    assert_eq!(pool.size(), 0, "capacity given back");
    // Later it tries again to reach min_size; with reconnect_timeout
    // raised meanwhile, the new run's first permanent failure waits the
    // first delay again.
    let t = match pool.next_action(Duration::from_secs(5)) {
        Some(Action::Create(t)) => t,
        other => panic!("expected a new attempt, got {other:?}"),
    };
    pool.set_reconnect_timeout(Duration::from_secs(600));
    let d = retry_delay(pool.connect_failed(t, "wrong password".into(), Failure::Permanent));
    assert!(within_jitter(d, PERMANENT_INITIAL_DELAY), "{d:?}");
}

#[test]
fn closing_fails_waiters_and_stops_workers() {
    let (pool, _) = filled(1, 1);
    let held = pool.checkout(|c| *c).unwrap().unwrap().value;
    let Begin::Wait(t) = pool
        .begin_wait(Duration::from_secs(10), None, |c| *c)
        .unwrap()
    else {
        panic!("expected to wait");
    };
    assert!(pool.close().is_empty());
    assert!(matches!(
        pool.finish_wait(t, |c| *c),
        Err(PoolError::Closed { .. })
    ));
    assert!(matches!(
        pool.next_action(Duration::ZERO),
        Some(Action::Stop)
    ));
    let back = pool.checkin(held as usize, |c| *c == held).unwrap();
    assert_eq!(back, Checkin::Close(held, CloseReason::PoolClosed));
    assert_eq!(pool.size(), 0);
}

#[test]
fn idle_sweep_shrinks_to_min_size_per_connection() {
    let mut cfg = config(1, 3);
    cfg.max_idle = Duration::from_millis(50);
    let pool = Pool::new(cfg).unwrap();
    pool.open().unwrap();
    let mut d = Driver::new();
    d.run(&pool);
    let a = pool.checkout(|c| *c).unwrap().unwrap().value;
    let mut tickets = Vec::new();
    for _ in 0..2 {
        if let Begin::Wait(t) = pool
            .begin_wait(Duration::from_secs(5), None, |c| *c)
            .unwrap()
        {
            tickets.push(t);
        }
        d.run(&pool);
    }
    let got: Vec<u64> = tickets
        .into_iter()
        .map(|t| pool.finish_wait(t, |c| *c).unwrap().lent().unwrap().value)
        .collect();
    for c in got.iter().chain([&a]) {
        pool.checkin(*c as usize, |x| x == c).unwrap();
    }
    assert_eq!(pool.size(), 3);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pool.size() > 1 && std::time::Instant::now() < deadline {
        if let Some(Action::Close(p, reason)) = pool.next_action(Duration::from_millis(100)) {
            assert_eq!(reason, CloseReason::Idle);
            d.closed.push(p);
        }
    }
    assert_eq!(pool.size(), 1, "shrunk to min_size in one sweep period");
    d.run(&pool);
    assert_eq!(d.closed.len(), 2, "both surplus connections were closed");
}

#[test]
fn null_pool_lends_a_ticket_then_closes_on_return() {
    let mut cfg = config(0, 1);
    cfg.null = true;
    let pool: Pool<u64> = Pool::new(cfg).unwrap();
    pool.open().unwrap();
    assert!(pool.checkout(|c| *c).unwrap().is_none());
    let Begin::Connect(ticket) = pool
        .begin_wait(Duration::from_secs(1), None, |c| *c)
        .unwrap()
    else {
        panic!("null pools connect on the caller");
    };
    pool.connected_to_caller(ticket, 7, 7, -1, Duration::ZERO, |_| ())
        .unwrap();
    // Full: the next request queues, and is handed the returned one.
    let Begin::Wait(t) = pool
        .begin_wait(Duration::from_secs(1), None, |c| *c)
        .unwrap()
    else {
        panic!("expected to wait at max_size");
    };
    assert_eq!(pool.checkin(7, |c| *c == 7).unwrap(), Checkin::Kept);
    assert_eq!(
        pool.finish_wait(t, |c| *c).unwrap().lent().unwrap().value,
        7
    );
    assert_eq!(
        pool.checkin(7, |c| *c == 7).unwrap(),
        Checkin::Close(7, CloseReason::Idle)
    );
    assert_eq!(pool.size(), 0);
}

#[test]
fn threads_never_share_a_connection() {
    let (pool, mut d) = filled(4, 4);
    let pool = Arc::new(pool);
    let in_use: Arc<Vec<std::sync::atomic::AtomicBool>> = Arc::new(
        (0..8)
            .map(|_| std::sync::atomic::AtomicBool::new(false))
            .collect(),
    );
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            let in_use = in_use.clone();
            std::thread::spawn(move || {
                use std::sync::atomic::Ordering::SeqCst;
                for _ in 0..2000 {
                    let c = match pool.checkout(|c| *c).unwrap() {
                        Some(l) => l.value,
                        None => match pool
                            .begin_wait(Duration::from_secs(10), None, |c| *c)
                            .unwrap()
                        {
                            Begin::Ready(l) => l.value,
                            Begin::Wait(t) => {
                                while !pool.park(&t, Duration::from_millis(100)) {}
                                pool.finish_wait(t, |c| *c).unwrap().lent().unwrap().value
                            }
                            Begin::Connect(_) => unreachable!(),
                        },
                    };
                    assert!(!in_use[c as usize].swap(true, SeqCst), "lent twice");
                    std::hint::spin_loop();
                    in_use[c as usize].store(false, SeqCst);
                    assert_eq!(
                        pool.checkin(c as usize, |x| *x == c).unwrap(),
                        Checkin::Kept
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    d.run(&pool);
    let s = pool.stats(false);
    assert_eq!(
        (s.pool_size, s.pool_available, s.requests_waiting),
        (4, 4, 0)
    );
    assert_eq!(s.requests_num, 8 * 2000);
}

#[test]
fn a_grant_cancelled_after_close_is_closed_not_kept() {
    let (pool, mut d) = filled(0, 1);
    let mut tickets = Vec::new();
    for _ in 0..2 {
        assert!(pool.checkout(|c| *c).unwrap().is_none());
        if let Begin::Wait(t) = pool
            .begin_wait(Duration::from_secs(10), None, |c| *c)
            .unwrap()
        {
            tickets.push(t);
        }
    }
    d.run(&pool);
    assert!(tickets[0].waiter().is_resolved(), "first waiter granted");
    let closed = pool.close();
    assert!(closed.is_empty());
    let granted = tickets.remove(0);
    let closed = pool.cancel_wait(granted);
    assert_eq!(
        closed,
        Some(1),
        "given back for closing, not parked in a closed pool"
    );
    assert_eq!(pool.phase_counts()[2], 0);
    assert_eq!(pool.size(), 0);
}

/// How many of `n` sequential checkouts each connection served.
fn served_per_connection(pool: &Pool<u64>, n: usize) -> Vec<usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let c = pool.checkout(|c| *c).unwrap().unwrap().value;
        *counts.entry(c).or_insert(0) += 1;
        pool.checkin(c as usize, |x| *x == c).unwrap();
    }
    counts.into_values().collect()
}

#[test]
fn sequential_checkouts_spread_over_idle_connections_by_default() {
    let (pool, _) = filled(4, 4);
    assert!(!pool.lifo());
    assert_eq!(served_per_connection(&pool, 100), vec![25, 25, 25, 25]);
    // Some lent meanwhile: the others still share the load.
    let held = pool.checkout(|c| *c).unwrap().unwrap().value;
    let counts = served_per_connection(&pool, 90);
    assert_eq!(counts, vec![30, 30, 30], "held {held}: {counts:?}");
}

#[test]
fn lifo_reuses_the_connection_returned_last() {
    let mut cfg = config(4, 4);
    cfg.lifo = true;
    let pool = Pool::new(cfg).unwrap();
    pool.open().unwrap();
    Driver::new().run(&pool);
    assert_eq!(served_per_connection(&pool, 100), vec![100]);
    let a = pool.checkout(|c| *c).unwrap().unwrap().value;
    let b = pool.checkout(|c| *c).unwrap().unwrap().value;
    pool.checkin(a as usize, |x| *x == a).unwrap();
    assert_eq!(pool.checkout(|c| *c).unwrap().unwrap().value, a);
    pool.checkin(b as usize, |x| *x == b).unwrap();
}

#[test]
fn lease_times_are_measured_to_the_microsecond() {
    // The usage histogram's figure for a lease lies between two readings
    // of another clock taken inside and around the same lease: the coarse
    // clock used before read 0 or a whole tick (1-4 ms) for it.
    let (pool, _) = filled(1, 1);
    let mut inner = Duration::ZERO;
    let mut outer = Duration::ZERO;
    for _ in 0..20 {
        let around = std::time::Instant::now();
        let c = pool.checkout(|c| *c).unwrap().unwrap().value;
        let within = std::time::Instant::now();
        while within.elapsed() < Duration::from_micros(100) {}
        inner += within.elapsed();
        pool.checkin(c as usize, |x| *x == c).unwrap();
        outer += around.elapsed();
    }
    let [_, (name, usage), _] = pool.histograms(false);
    assert_eq!((name, usage.count()), ("usage_time", 20));
    let recorded = Duration::from_secs_f64(usage.sum);
    assert!(recorded >= inner, "{recorded:?} recorded, {inner:?} held");
    assert!(recorded <= outer, "{recorded:?} recorded, {outer:?} around");
}

#[test]
fn borrows_counted_per_slot_add_up_and_reset_apart() {
    // Fast-path requests and lease times are tallied in the slots (see
    // slot::Tally); stats() and histograms() add them up, each resetting on
    // its own account, and requests that had to wait count too.
    let (pool, _) = filled(2, 2);
    let cycle = |n: usize| {
        for _ in 0..n {
            let c = pool.checkout(|c| *c).unwrap().unwrap().value;
            pool.checkin(c as usize, |x| *x == c).unwrap();
        }
    };
    cycle(5);
    assert_eq!(pool.stats(true).requests_num, 5);
    cycle(3);
    let a = pool.checkout(|c| *c).unwrap().unwrap().value;
    let b = pool.checkout(|c| *c).unwrap().unwrap().value;
    assert!(
        pool.checkout(|c| *c).unwrap().is_none(),
        "the pool is empty"
    );
    pool.checkin(a as usize, |x| *x == a).unwrap();
    pool.checkin(b as usize, |x| *x == b).unwrap();
    assert_eq!(pool.stats(false).requests_num, 3 + 2 + 1);
    let usage = |reset| pool.histograms(reset)[1].1.count();
    assert_eq!(usage(false), 10, "stats(reset) leaves the histogram alone");
    assert_eq!(usage(true), 10);
    cycle(4);
    assert_eq!(usage(false), 4);
    assert_eq!(pool.stats(true).requests_num, 3 + 2 + 1 + 4);
    assert_eq!(pool.stats(false).requests_num, 0);
}

#[test]
fn a_successor_after_fork_starts_empty_from_the_current_settings() {
    let (pool, _) = filled(2, 3);
    let lent = pool.checkout(|c| *c).unwrap().unwrap().value;
    pool.resize(1, 4).unwrap();
    pool.set_max_lifetime(Duration::from_secs(7)).unwrap();
    pool.set_leak_timeout(Some(Duration::from_secs(9))).unwrap();
    let (next, sockets) = pool.successor_after_fork().unwrap();
    assert!(sockets.is_empty(), "the test's connections have no socket");
    assert_eq!(next.config(), pool.config());
    assert_eq!((next.min_size(), next.max_size()), (1, 4));
    assert_eq!(next.max_lifetime(), Duration::from_secs(7));
    assert!(next.is_open(), "open because the inherited one was");
    let s = next.stats(false);
    assert_eq!(
        (s.pool_size, s.pool_available, s.connections_num),
        (1, 0, 0)
    );
    // The inherited pool is left as it was (never touched again in a real
    // child: leaked).
    assert_eq!(pool.size(), 2);
    assert!(pool.checkin(lent as usize, |c| *c == lent).is_ok());

    let never: Pool<u64> = Pool::new(config(1, 1)).unwrap();
    let (next, _) = never.successor_after_fork().unwrap();
    assert!(!next.is_open() && !next.was_opened());
}
