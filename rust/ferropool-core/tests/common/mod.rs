//! Helpers shared by the core's integration tests: a pool of plain numbers
//! standing in for connections, and a driver that plays the front end's
//! worker role (open on Create, count on Close).

#![allow(dead_code)]

use std::time::Duration;

use ferropool_core::{Action, Config, Pool};

pub type TestPool = Pool<u64>;

/// A configuration with every setting spelled out (the core has no
/// defaults: the front end owns them): psycopg_pool's sizes and lifetimes,
/// one connection opened at a time, use spread over idle connections, and
/// the optional checks off.
pub fn config(min_size: usize, max_size: usize) -> Config {
    Config {
        name: "test".into(),
        min_size,
        max_size,
        max_waiting: 0,
        max_lifetime: Duration::from_secs(3600),
        lifetime_jitter: 0.05,
        max_idle: Duration::from_secs(600),
        reconnect_timeout: Duration::from_secs(300),
        max_uses: 0,
        max_connecting: 1,
        lifo: false,
        null: false,
        liveness_bypass: None,
        keepalive_interval: None,
        leak_timeout: None,
    }
}

/// A null pool's configuration: nothing kept, at most `max_size` at once.
pub fn null_config(max_size: usize) -> Config {
    Config {
        null: true,
        ..config(0, max_size)
    }
}

/// Payloads are distinct non-zero numbers; the key is the number itself.
pub struct Driver {
    pub next_payload: u64,
    pub closed: Vec<u64>,
    /// Sockets to give new connections, by payload (for liveness tests).
    pub fds: std::collections::HashMap<u64, i32>,
    /// Payloads whose validation ping fails.
    pub broken: std::collections::HashSet<u64>,
    pub validated: Vec<u64>,
    pub leaks: Vec<usize>,
}

impl Default for Driver {
    fn default() -> Self {
        Self::new()
    }
}

impl Driver {
    pub fn new() -> Self {
        Self {
            next_payload: 1,
            closed: Vec::new(),
            fds: Default::default(),
            broken: Default::default(),
            validated: Vec::new(),
            leaks: Vec::new(),
        }
    }

    /// Carry out every queued action (without waiting for timers).
    /// Returns how many connections were opened.
    pub fn run(&mut self, pool: &TestPool) -> usize {
        let mut opened = 0;
        while let Some(action) = pool.next_action(Duration::ZERO) {
            match action {
                Action::Create(t) => {
                    let p = self.next_payload;
                    self.next_payload += 1;
                    let fd = self.fds.get(&p).copied().unwrap_or(-1);
                    match pool.connected(t, p, p as usize, fd, Duration::ZERO) {
                        ferropool_core::Connected::Added => opened += 1,
                        ferropool_core::Connected::Refused(p) => self.closed.push(p),
                    }
                }
                Action::Close(p, _) => self.closed.push(p),
                Action::Validate(t) => {
                    if let Some(l) = pool.claim_validation(t, |c| *c) {
                        let c = l.value;
                        self.validated.push(c);
                        if self.broken.contains(&c) {
                            let p = pool
                                .discard(c as usize, |x| *x == c, ferropool_core::Loss::FoundBroken)
                                .unwrap();
                            self.closed.extend(p);
                        } else if let ferropool_core::Checkin::Close(p, _) =
                            pool.checkin(c as usize, |x| *x == c).unwrap()
                        {
                            self.closed.push(p);
                        }
                    }
                }
                Action::Leak { key, first, .. } => {
                    if first {
                        self.leaks.push(key);
                    }
                }
                Action::Stop => break,
            }
        }
        opened
    }
}

/// An open pool filled to min_size.
pub fn filled(min_size: usize, max_size: usize) -> (TestPool, Driver) {
    let pool = Pool::new(config(min_size, max_size)).expect("valid config");
    pool.open().expect("opens");
    let mut d = Driver::new();
    d.run(&pool);
    (pool, d)
}
