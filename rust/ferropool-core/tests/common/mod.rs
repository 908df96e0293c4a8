//! Helpers shared by the core's integration tests: a pool of plain numbers
//! standing in for connections, and a driver that plays the front end's
//! worker role (open on Create, count on Close).

#![allow(dead_code)]

use std::time::Duration;

use ferropool_core::{Action, Config, Pool};

pub type TestPool = Pool<u64>;

pub fn config(min_size: usize, max_size: usize) -> Config {
    Config {
        name: "test".into(),
        min_size,
        max_size,
        ..Config::default()
    }
}

/// Payloads are distinct non-zero numbers; the key is the number itself.
pub struct Driver {
    pub next_payload: u64,
    pub closed: Vec<u64>,
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
                    match pool.connected(t, p, p as usize, Duration::ZERO) {
                        ferropool_core::Connected::Added => opened += 1,
                        ferropool_core::Connected::Refused(p) => self.closed.push(p),
                    }
                }
                Action::Close(p, _) => self.closed.push(p),
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
