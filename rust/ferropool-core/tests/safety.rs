//! Safe-by-default behaviour of the core: liveness polls, keepalive pings,
//! leak reports, pause/resume and failover drains.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{config, Driver};
use ferropool_core::{Begin, Checkin, Pool};

/// A pool whose connections' sockets are the `server` ends' peers.
fn pool_with_sockets(
    n: usize,
    tune: impl FnOnce(&mut ferropool_core::Config),
) -> (Pool<u64>, Driver, Vec<UnixStream>, Vec<UnixStream>) {
    let mut cfg = config(n, n);
    tune(&mut cfg);
    let pool = Pool::new(cfg).unwrap();
    let mut d = Driver::new();
    let (mut clients, mut servers) = (Vec::new(), Vec::new());
    for p in 1..=n as u64 {
        let (c, s) = UnixStream::pair().unwrap();
        d.fds.insert(p, c.as_raw_fd());
        clients.push(c);
        servers.push(s);
    }
    pool.open().unwrap();
    d.run(&pool);
    (pool, d, clients, servers)
}

#[test]
fn a_connection_whose_server_spoke_is_validated_before_it_is_lent() {
    let (pool, mut d, _clients, mut servers) =
        pool_with_sockets(2, |c| c.liveness_bypass = Some(Duration::ZERO));
    // The server of connection 1 sends something (a termination notice).
    servers[0].write_all(b"E").unwrap();
    d.broken.insert(1);
    let got = pool.checkout(|c| *c).unwrap().unwrap().value;
    assert_eq!(
        got, 2,
        "the quiet connection is lent, the suspect one is not"
    );
    d.run(&pool);
    assert_eq!(d.validated, vec![1]);
    assert_eq!(d.closed, vec![1], "its ping failed: replaced");
    let s = pool.stats(false);
    assert_eq!((s.liveness_suspects, s.connections_lost), (1, 1));
    assert!(s.liveness_polls >= 2);
    assert_eq!(pool.size(), 2, "replacement opened");
}

#[test]
fn a_suspect_that_passes_its_ping_is_kept_and_handed_to_the_waiter() {
    let (pool, mut d, _clients, mut servers) =
        pool_with_sockets(1, |c| c.liveness_bypass = Some(Duration::ZERO));
    servers[0].write_all(b"N").unwrap();
    assert!(pool.checkout(|c| *c).unwrap().is_none());
    let Begin::Wait(t) = pool
        .begin_wait(Duration::from_secs(5), None, |c| *c)
        .unwrap()
    else {
        panic!("the only connection is being validated: wait");
    };
    d.run(&pool);
    assert!(t.waiter().is_resolved());
    assert_eq!(
        pool.finish_wait(t, |c| *c).unwrap().lent().unwrap().value,
        1
    );
    assert!(d.closed.is_empty());
}

#[test]
fn connections_reused_within_the_bypass_window_are_not_polled() {
    let (pool, _d, _clients, mut servers) =
        pool_with_sockets(1, |c| c.liveness_bypass = Some(Duration::from_secs(60)));
    servers[0].write_all(b"x").unwrap();
    let got = pool.checkout(|c| *c).unwrap().unwrap().value;
    assert_eq!(got, 1);
    assert_eq!(pool.stats(false).liveness_polls, 0);
}

#[test]
fn idle_connections_are_pinged_after_the_keepalive_interval() {
    let (pool, mut d, _c, _s) = pool_with_sockets(2, |c| {
        c.keepalive_interval = Some(Duration::from_millis(30))
    });
    d.broken.insert(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while d.validated.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(a) = pool.next_action(Duration::from_millis(50)) {
            // Re-queue through the driver's handling.
            match a {
                ferropool_core::Action::Validate(t) => {
                    let l = pool.claim_validation(t, |c| *c).unwrap();
                    d.validated.push(l.value);
                    if d.broken.contains(&l.value) {
                        let c = l.value;
                        pool.discard(c as usize, |x| *x == c, ferropool_core::Loss::FoundBroken)
                            .unwrap();
                    } else {
                        let c = l.value;
                        assert_eq!(
                            pool.checkin(c as usize, |x| *x == c).unwrap(),
                            Checkin::Kept
                        );
                    }
                }
                ferropool_core::Action::Create(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    d.validated.sort_unstable();
    assert_eq!(d.validated, vec![1, 2]);
    let s = pool.stats(false);
    assert_eq!((s.keepalive_pings, s.connections_lost), (2, 1));
}

#[test]
fn a_lease_held_past_leak_timeout_is_reported_once() {
    let (pool, mut d, _c, _s) =
        pool_with_sockets(2, |c| c.leak_timeout = Some(Duration::from_millis(30)));
    let held = pool.checkout(|c| *c).unwrap().unwrap().value;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while d.leaks.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        d.run(&pool);
    }
    std::thread::sleep(Duration::from_millis(100));
    d.run(&pool);
    assert_eq!(d.leaks, vec![held as usize], "reported once, with its key");
    assert_eq!(pool.stats(false).leaks_detected, 1);
    pool.checkin(held as usize, |c| *c == held).unwrap();
}

#[test]
fn pause_holds_new_checkouts_until_resume_in_arrival_order() {
    let (pool, _d, _c, _s) = pool_with_sockets(2, |_| {});
    pool.pause();
    assert!(
        pool.checkout(|c| *c).unwrap().is_none(),
        "paused: no fast path"
    );
    let mut tickets = Vec::new();
    for _ in 0..3 {
        let Begin::Wait(t) = pool
            .begin_wait(Duration::from_secs(5), None, |c| *c)
            .unwrap()
        else {
            panic!("paused requests queue even with idle connections");
        };
        tickets.push(t);
    }
    assert_eq!(pool.stats(false).paused, 1);
    assert_eq!(pool.waiting(), 3);
    pool.resume();
    let resolved: Vec<bool> = tickets.iter().map(|t| t.waiter().is_resolved()).collect();
    assert_eq!(resolved, vec![true, true, false], "oldest two served first");
    assert_eq!(pool.stats(false).paused, 0);
}

#[test]
fn failover_retires_every_connection_opened_before() {
    let (pool, mut d, _c, _s) = pool_with_sockets(3, |_| {});
    let lent = pool.checkout(|c| *c).unwrap().unwrap().value;
    let closed = pool.failover();
    assert_eq!(closed.len(), 2, "idle ones now");
    let back = pool.checkin(lent as usize, |c| *c == lent).unwrap();
    assert!(matches!(back, Checkin::Close(..)), "the lent one on return");
    d.run(&pool);
    let s = pool.stats(false);
    assert_eq!(
        (s.failovers, s.connections_num, s.pool_available),
        (1, 6, 3)
    );
}

#[test]
fn one_server_event_drains_once() {
    let (pool, mut d, _c, _s) = pool_with_sockets(2, |_| {});
    let a = pool.checkout(|c| *c).unwrap().unwrap().value;
    let b = pool.checkout(|c| *c).unwrap().unwrap().value;
    assert!(
        pool.failover_from(a as usize).is_some(),
        "first error drains"
    );
    d.run(&pool);
    // The second connection failed for the same event: it is already
    // retired on return; its error must not drain the fresh replacements.
    assert!(pool.failover_from(b as usize).is_none());
    assert_eq!(pool.stats(false).failovers, 1);
    for c in [a, b] {
        assert!(matches!(
            pool.checkin(c as usize, |x| *x == c).unwrap(),
            Checkin::Close(..)
        ));
    }
}

#[test]
fn a_server_hang_up_is_seen_without_polling_even_right_after_use() {
    // Bypass window of a minute: no poll. The hang-up watch still knows.
    let (pool, mut d, _clients, servers) =
        pool_with_sockets(2, |c| c.liveness_bypass = Some(Duration::from_secs(60)));
    let a = pool.checkout(|c| *c).unwrap().unwrap().value;
    pool.checkin(a as usize, |c| *c == a).unwrap();
    drop(servers); // both servers hang up
    d.broken.extend([1, 2]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut got = None;
    while std::time::Instant::now() < deadline {
        // Until the watch has seen both hang-ups, a checkout may still
        // succeed; give it back and look again.
        match pool.checkout(|c| *c).unwrap() {
            Some(l) => {
                let c = l.value;
                pool.checkin(c as usize, |x| *x == c).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            None => {
                got = Some(());
                break;
            }
        }
    }
    assert!(got.is_some(), "hung-up connections are not lent");
    let s = pool.stats(false);
    assert_eq!(s.liveness_polls, 0, "found without a syscall on checkout");
    assert_eq!(s.liveness_suspects, 2);
    d.run(&pool);
    assert_eq!(d.validated.len(), 2);
}

#[test]
fn a_retired_connection_socket_is_forgotten_while_its_replacement_opens() {
    // After fork() the child points every socket the pool reports at
    // /dev/null; a closed connection's fd number may already belong to
    // another file, so it must not be reported.
    let (pool, _d, clients, _s) = pool_with_sockets(2, |_| {});
    let mut fds: Vec<i32> = clients.iter().map(|c| c.as_raw_fd()).collect();
    let mut reported = pool.sockets();
    reported.sort_unstable();
    fds.sort_unstable();
    assert_eq!(reported, fds);
    let retired = pool.drain();
    assert_eq!(retired.len(), 2);
    assert_eq!(
        pool.size(),
        2,
        "replacements are being opened in the same slots"
    );
    assert_eq!(pool.sockets(), Vec::<i32>::new());
}

#[test]
fn the_hang_up_watch_runs_only_while_the_pool_is_open() {
    let pool: Pool<u64> = Pool::new(config(1, 1)).unwrap();
    let (_, running) = pool.hangup_watch().unwrap();
    assert!(!running, "never opened: no thread, no descriptors");
    pool.open().unwrap();
    let (backend, running) = pool.hangup_watch().unwrap();
    assert_eq!(
        running,
        backend != ferropool_core::hangup::Backend::Inert,
        "{backend:?}"
    );
    drop(pool.close());
    assert!(!pool.hangup_watch().unwrap().1, "closed: stopped");
    let null: Pool<u64> = Pool::new(common::null_config(1)).unwrap();
    null.open().unwrap();
    assert!(
        null.hangup_watch().is_none(),
        "null pools keep nothing to watch"
    );
}

#[test]
fn the_hang_up_watch_backend_is_the_one_asked_for() {
    // CI runs this file with FERROPOOL_HANGUP_WATCH=poll too: the hang-up
    // tests above then run on the portable backend.
    let pool: Pool<u64> = Pool::new(config(1, 1)).unwrap();
    let (backend, _) = pool.hangup_watch().unwrap();
    assert_eq!(backend, ferropool_core::hangup::Backend::from_env());
    if std::env::var(ferropool_core::hangup::BACKEND_ENV).as_deref() == Ok("poll") {
        assert_eq!(backend, ferropool_core::hangup::Backend::Poll);
    }
}
