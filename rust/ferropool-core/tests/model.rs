//! Property test: random sequences of pool operations against a model of
//! what must hold after every step.
//!
//! The model tracks which payloads the test holds, which waits are pending
//! and which payloads were handed back for closing. After each operation:
//! - no payload is held twice, and nothing closed is held;
//! - every payload ever opened is in exactly one place: held, idle, granted
//!   to a waiter, or closed (nothing lost, nothing counted twice);
//! - idle + in use + being created == size, and size stays within max_size
//!   except for connections lent or being opened before a resize down;
//! - no slot is left in a transient phase, and the stats agree.
//!
//! A second model runs null pools, whose requests open their own
//! connections on tickets: there, in addition, no request stays queued
//! while the pool is below max_size (capacity freed by any retire path is
//! granted to the oldest waiter).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{config, null_config};
use ferropool_core::{
    Action, Begin, Checkin, Connected, Failure, Loss, Pool, Served, Ticket, WaitTicket,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Borrow,
    FinishWait(usize),
    CancelWait(usize),
    Return(usize),
    Discard(usize),
    Work { fail: bool },
    Drain,
    Resize { min: usize, max: usize },
    Check,
    Pause,
    Resume,
    Failover,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Borrow),
        2 => any::<usize>().prop_map(Op::FinishWait),
        1 => any::<usize>().prop_map(Op::CancelWait),
        6 => any::<usize>().prop_map(Op::Return),
        1 => any::<usize>().prop_map(Op::Discard),
        5 => any::<bool>().prop_map(|f| Op::Work { fail: f && rand_fail(f) }),
        1 => Just(Op::Drain),
        1 => (0usize..4, 1usize..6).prop_map(|(min, max)| Op::Resize { min, max: max.max(min) }),
        1 => Just(Op::Check),
        1 => Just(Op::Pause),
        2 => Just(Op::Resume),
        1 => Just(Op::Failover),
        1 => Just(Op::Close),
    ]
}

// Connection failures are rarer than successes.
fn rand_fail(f: bool) -> bool {
    f
}

struct Model {
    pool: Pool<u64>,
    held: Vec<u64>,
    waits: Vec<WaitTicket>,
    closed: HashSet<u64>,
    opened: u64,
    resized_down: bool,
    checkouts: u64,
}

impl Model {
    fn new(min: usize, max: usize) -> Self {
        let mut cfg = config(min, max);
        cfg.max_connecting = 2;
        // Every idle connection is due for a keepalive ping, so the model
        // also exercises validation tickets.
        cfg.keepalive_interval = Some(Duration::from_nanos(1));
        cfg.leak_timeout = Some(Duration::from_nanos(1));
        cfg.reconnect_timeout = Duration::from_secs(3600);
        let pool = Pool::new(cfg).unwrap();
        pool.open().unwrap();
        Self {
            pool,
            held: Vec::new(),
            waits: Vec::new(),
            closed: HashSet::new(),
            opened: 0,
            resized_down: false,
            checkouts: 0,
        }
    }

    fn close_all(&mut self, payloads: Vec<u64>) {
        for p in payloads {
            assert!(self.closed.insert(p), "{p} closed twice");
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Borrow => {
                if let Ok(r) = self.pool.checkout(|c| *c) {
                    self.checkouts += 1;
                    match r {
                        Some(l) => self.held.push(l.value),
                        None => match self.pool.begin_wait(Duration::from_secs(60), None, |c| *c) {
                            Ok(Begin::Ready(l)) => self.held.push(l.value),
                            Ok(Begin::Wait(t)) => self.waits.push(t),
                            Ok(Begin::Connect(_)) => unreachable!("not a null pool"),
                            Err(_) => {}
                        },
                    }
                }
            }
            Op::FinishWait(i) if !self.waits.is_empty() => {
                let t = self.waits.remove(i % self.waits.len());
                if let Ok(s) = self.pool.finish_wait(t, |c| *c) {
                    self.held.push(s.lent().expect("not a null pool").value);
                }
            }
            Op::CancelWait(i) if !self.waits.is_empty() => {
                let t = self.waits.remove(i % self.waits.len());
                let p = self.pool.cancel_wait(t);
                self.close_all(p.into_iter().collect());
            }
            Op::Return(i) if !self.held.is_empty() => {
                let c = self.held.remove(i % self.held.len());
                match self.pool.checkin(c as usize, |x| *x == c).unwrap() {
                    Checkin::Kept => {}
                    Checkin::Close(p, _) => self.close_all(vec![p]),
                }
            }
            Op::Discard(i) if !self.held.is_empty() => {
                let c = self.held.remove(i % self.held.len());
                let p = self
                    .pool
                    .discard(c as usize, |x| *x == c, Loss::ReturnedBroken)
                    .unwrap();
                self.close_all(p.into_iter().collect());
            }
            Op::Work { fail } => match self.pool.next_action(Duration::ZERO) {
                Some(Action::Create(t)) if fail => {
                    let failure = if self.opened % 2 == 0 {
                        Failure::Transient
                    } else {
                        Failure::Permanent
                    };
                    let _ = self.pool.connect_failed(t, "refused".into(), failure);
                }
                Some(Action::Create(t)) => {
                    self.opened += 1;
                    let p = self.opened;
                    if let Connected::Refused(p) =
                        self.pool.connected(t, p, p as usize, -1, Duration::ZERO)
                    {
                        self.close_all(vec![p]);
                    }
                }
                Some(Action::Close(p, _)) => self.close_all(vec![p]),
                Some(Action::Validate(t)) => {
                    if let Some(l) = self.pool.claim_validation(t, |c| *c) {
                        let c = l.value;
                        let p = if fail {
                            self.pool
                                .discard(c as usize, |x| *x == c, Loss::FoundBroken)
                                .unwrap()
                        } else {
                            match self.pool.checkin(c as usize, |x| *x == c).unwrap() {
                                Checkin::Kept => None,
                                Checkin::Close(p, _) => Some(p),
                            }
                        };
                        self.close_all(p.into_iter().collect());
                    }
                }
                Some(Action::Leak { .. } | Action::Stop) | None => {}
            },
            Op::Drain => {
                let p = self.pool.drain();
                self.close_all(p);
            }
            Op::Resize { min, max } => {
                if max < self.pool.max_size() {
                    self.resized_down = true;
                }
                let p = self.pool.resize(min, max).unwrap();
                self.close_all(p);
            }
            Op::Check => {
                let lent = self.pool.take_for_check(|c| *c);
                for l in lent {
                    match self
                        .pool
                        .checkin(l.value as usize, |x| *x == l.value)
                        .unwrap()
                    {
                        Checkin::Kept => {}
                        Checkin::Close(p, _) => self.close_all(vec![p]),
                    }
                }
            }
            Op::Pause => self.pool.pause(),
            Op::Resume => self.pool.resume(),
            Op::Failover => {
                let p = self.pool.failover();
                self.close_all(p);
            }
            Op::Close => {
                let p = self.pool.close();
                self.close_all(p);
            }
            _ => {}
        }
    }

    fn check(&self) {
        check_held(&self.held, &self.closed);

        // [Free, Reserved, Idle, InUse, Returning, Handoff, Retiring]
        let phases = self.pool.phase_counts();
        assert_eq!(
            phases[4] + phases[6],
            0,
            "transient phase left behind: {phases:?}"
        );
        let (reserved, idle, in_use, handoff) = (phases[1], phases[2], phases[3], phases[5]);
        let validating = phases[7];
        assert_eq!(in_use, self.held.len(), "lent slots vs held payloads");
        let granted = self
            .waits
            .iter()
            .filter(|t| t.waiter().is_resolved())
            .count();
        assert!(handoff <= granted, "handoff slots without a granted waiter");

        let size = self.pool.size();
        assert_eq!(
            size,
            reserved + idle + in_use + handoff + validating,
            "size accounting"
        );
        let max = self.pool.max_size();
        if !self.resized_down {
            assert!(size <= max, "size {size} above max_size {max}");
        } else {
            assert!(
                size <= max || size - max <= in_use + handoff + reserved + validating,
                "size {size} above max_size {max} beyond lent/opening"
            );
        }

        // Conservation: every payload opened is somewhere, exactly once.
        let in_pool = (idle + in_use + handoff + validating + self.pool.queued_closes()) as u64;
        assert_eq!(
            self.opened,
            in_pool + self.closed.len() as u64,
            "payload lost or double-counted"
        );

        let s = self.pool.stats(false);
        assert_eq!(s.pool_available as usize, idle);
        let pending = self.waits.len() - granted;
        if self.pool.is_open() {
            assert_eq!(s.requests_waiting as usize, pending, "queue length");
        }
        assert_eq!(s.requests_num, self.checkouts);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(
        min in 0usize..3,
        extra in 0usize..3,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let max = (min + extra).max(1);
        let mut m = Model::new(min, max);
        m.check();
        for op in ops {
            m.apply(op);
            m.check();
        }
    }
}

#[derive(Debug, Clone)]
enum NullOp {
    Borrow,
    FinishWait(usize),
    CancelWait(usize),
    /// Report a request's own connect attempt: success, or failure.
    Connected(usize, bool),
    Return(usize),
    /// Closed by its borrower, failed rollback or reset.
    Discard(usize),
    /// New connections expire at once (true), or after an hour (false).
    Lifetime(bool),
    Resize(usize),
    Pause,
    Resume,
    Close,
}

fn null_op() -> impl Strategy<Value = NullOp> {
    prop_oneof![
        6 => Just(NullOp::Borrow),
        3 => any::<usize>().prop_map(NullOp::FinishWait),
        1 => any::<usize>().prop_map(NullOp::CancelWait),
        5 => (any::<usize>(), proptest::bool::weighted(0.2)).prop_map(|(i, f)| NullOp::Connected(i, f)),
        5 => any::<usize>().prop_map(NullOp::Return),
        2 => any::<usize>().prop_map(NullOp::Discard),
        1 => any::<bool>().prop_map(NullOp::Lifetime),
        1 => (1usize..4).prop_map(NullOp::Resize),
        1 => Just(NullOp::Pause),
        2 => Just(NullOp::Resume),
        1 => Just(NullOp::Close),
    ]
}

struct NullModel {
    pool: Pool<u64>,
    held: Vec<u64>,
    /// Tickets of requests opening their own connection.
    connecting: Vec<Ticket>,
    waits: Vec<WaitTicket>,
    closed: HashSet<u64>,
    opened: u64,
    resized_down: bool,
}

impl NullModel {
    fn new(max: usize) -> Self {
        let pool = Pool::new(null_config(max)).unwrap();
        pool.open().unwrap();
        Self {
            pool,
            held: Vec::new(),
            connecting: Vec::new(),
            waits: Vec::new(),
            closed: HashSet::new(),
            opened: 0,
            resized_down: false,
        }
    }

    fn close(&mut self, p: u64) {
        assert!(self.closed.insert(p), "{p} closed twice");
    }

    fn apply(&mut self, op: NullOp) {
        match op {
            NullOp::Borrow => {
                assert!(matches!(self.pool.checkout(|c| *c), Ok(None) | Err(_)));
                match self.pool.begin_wait(Duration::from_secs(60), None, |c| *c) {
                    Ok(Begin::Connect(t)) => self.connecting.push(t),
                    Ok(Begin::Wait(t)) => self.waits.push(t),
                    Ok(Begin::Ready(_)) => panic!("a null pool keeps nothing idle"),
                    Err(_) => {}
                }
            }
            NullOp::FinishWait(i) if !self.waits.is_empty() => {
                let t = self.waits.remove(i % self.waits.len());
                match self.pool.finish_wait(t, |c| *c) {
                    Ok(Served::Lent(l)) => self.held.push(l.value),
                    Ok(Served::Connect(t)) => self.connecting.push(t),
                    Err(_) => {}
                }
            }
            NullOp::CancelWait(i) if !self.waits.is_empty() => {
                let t = self.waits.remove(i % self.waits.len());
                if let Some(p) = self.pool.cancel_wait(t) {
                    self.close(p);
                }
            }
            NullOp::Connected(i, fail) if !self.connecting.is_empty() => {
                let t = self.connecting.remove(i % self.connecting.len());
                if fail {
                    self.pool.connect_failed_caller(t, "refused".into());
                } else {
                    self.opened += 1;
                    let p = self.opened;
                    match self
                        .pool
                        .connected_to_caller(t, p, p as usize, -1, Duration::ZERO, |c| *c)
                    {
                        Ok(l) => self.held.push(l.value),
                        Err(p) => self.close(p),
                    }
                }
            }
            NullOp::Return(i) if !self.held.is_empty() => {
                let c = self.held.remove(i % self.held.len());
                match self.pool.checkin(c as usize, |x| *x == c).unwrap() {
                    Checkin::Kept => {}
                    Checkin::Close(p, _) => self.close(p),
                }
            }
            NullOp::Discard(i) if !self.held.is_empty() => {
                let c = self.held.remove(i % self.held.len());
                let p = self
                    .pool
                    .discard(c as usize, |x| *x == c, Loss::ReturnedBroken)
                    .unwrap();
                self.close(p.expect("a lent connection is given back to close"));
            }
            NullOp::Lifetime(expire) => {
                let d = if expire {
                    Duration::from_nanos(1)
                } else {
                    Duration::from_secs(3600)
                };
                self.pool.set_max_lifetime(d).unwrap();
            }
            NullOp::Resize(max) => {
                if max < self.pool.max_size() {
                    self.resized_down = true;
                }
                assert!(self.pool.resize(0, max).unwrap().is_empty());
            }
            NullOp::Pause => self.pool.pause(),
            NullOp::Resume => self.pool.resume(),
            NullOp::Close => {
                assert!(self.pool.close().is_empty(), "nothing idle to close");
            }
            _ => {}
        }
    }

    fn check(&self) {
        check_held(&self.held, &self.closed);

        // [Free, Reserved, Idle, InUse, Returning, Handoff, Retiring, Validating]
        let phases = self.pool.phase_counts();
        assert_eq!(phases[2], 0, "a null pool keeps nothing idle");
        assert_eq!(phases[4] + phases[6] + phases[7], 0, "{phases:?}");
        let (reserved, in_use, handoff) = (phases[1], phases[3], phases[5]);
        assert_eq!(in_use, self.held.len());
        let size = self.pool.size();
        assert_eq!(size, reserved + in_use + handoff, "size accounting");
        let resolved = self
            .waits
            .iter()
            .filter(|t| t.waiter().is_resolved())
            .count();
        // Every reserved slot is a request's connect ticket, or capacity
        // granted to a waiter; every handoff slot a connection granted.
        assert!(reserved >= self.connecting.len());
        assert!(
            reserved + handoff <= self.connecting.len() + resolved,
            "a reserved or handed-off slot nobody holds"
        );
        assert_eq!(
            self.opened,
            (in_use + handoff + self.closed.len()) as u64,
            "payload lost or double-counted"
        );
        let max = self.pool.max_size();
        if !self.resized_down {
            assert!(size <= max, "size {size} above max_size {max}");
        }
        let pending = self.waits.len() - resolved;
        if self.pool.is_open() && !self.pool.is_paused() {
            assert!(
                pending == 0 || size >= max,
                "{pending} request(s) queued with capacity free: size {size} < max_size {max}"
            );
            assert_eq!(self.pool.stats(false).requests_waiting as usize, pending);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn null_pools_never_strand_a_request(
        max in 1usize..4,
        ops in proptest::collection::vec(null_op(), 1..120),
    ) {
        let mut m = NullModel::new(max);
        m.check();
        for op in ops {
            m.apply(op);
            m.check();
        }
    }
}

/// Every model's first check: no payload held twice, none closed held.
fn check_held(held: &[u64], closed: &HashSet<u64>) {
    let set: HashSet<u64> = held.iter().copied().collect();
    assert_eq!(set.len(), held.len(), "a payload is held twice");
    assert!(set.is_disjoint(closed), "a closed payload is held");
}
