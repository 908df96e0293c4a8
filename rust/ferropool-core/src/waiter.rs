//! A request waiting for a connection, and the handshake that hands one over.
//!
//! The waiter's state moves once, from `WAITING` to exactly one of
//! `GRANTED` (a connection was handed over), `ABANDONED` (the waiter gave up:
//! timeout, cancellation, interrupt) or `CLOSED` (the pool closed). Both the
//! granting side and the waiter race for that single compare-and-set, so a
//! waiter that gave up can never also receive a connection, and a grant the
//! waiter did not see in time is still claimed by it (see `Pool::finish_wait`).

use std::time::Duration;

use crate::slot::SlotId;
use crate::sync::{lock, AtomicU64, Condvar, Mutex, Ordering};

const WAITING: u64 = 0;
const GRANTED: u64 = 1;
const ABANDONED: u64 = 2;
const CLOSED: u64 = 3;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A connection was handed over: claim slot `id` with `word`.
    Granted { id: SlotId, word: u64 },
    /// This side gave up first.
    Abandoned,
    /// The pool closed.
    Closed,
}

/// Called when a waiter is resolved, for waiters that are not threads
/// blocked in [`Waiter::park`] (an event loop's future, for example).
pub type WakeFn = Box<dyn Fn() + Send + Sync>;

pub struct Waiter {
    state: AtomicU64,
    grant_id: AtomicU64,
    grant_word: AtomicU64,
    signalled: Mutex<bool>,
    cond: Condvar,
    on_wake: Option<WakeFn>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Waiter {
    pub fn new(on_wake: Option<WakeFn>) -> Self {
        Self {
            state: AtomicU64::new(WAITING),
            grant_id: AtomicU64::new(0),
            grant_word: AtomicU64::new(0),
            signalled: Mutex::new(false),
            cond: Condvar::new(),
            on_wake,
        }
    }

    /// Granting side: offer slot `id` (in `Handoff` with `word`). `false`
    /// if the waiter already gave up or was closed; the slot stays with the
    /// caller.
    pub(crate) fn grant(&self, id: SlotId, word: u64) -> bool {
        // Only the single thread that popped this waiter from the queue
        // writes these, and the SeqCst compare-and-set below publishes them.
        self.grant_id.store(u64::from(id), Ordering::Relaxed);
        self.grant_word.store(word, Ordering::Relaxed);
        self.state
            .compare_exchange(WAITING, GRANTED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Pool side: the pool closed.
    pub(crate) fn close(&self) -> bool {
        self.state
            .compare_exchange(WAITING, CLOSED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Waiting side: give up unless already resolved; return how it ended.
    pub(crate) fn resolve(&self) -> Outcome {
        match self
            .state
            .compare_exchange(WAITING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => Outcome::Abandoned,
            Err(state) => self.outcome(state),
        }
    }

    fn outcome(&self, state: u64) -> Outcome {
        match state {
            GRANTED => Outcome::Granted {
                id: self.grant_id.load(Ordering::Relaxed) as SlotId,
                word: self.grant_word.load(Ordering::Relaxed),
            },
            CLOSED => Outcome::Closed,
            _ => Outcome::Abandoned,
        }
    }

    /// Whether the wait is over (granted, closed or abandoned).
    pub fn is_resolved(&self) -> bool {
        self.state.load(Ordering::SeqCst) != WAITING
    }

    /// Wake the waiter after it was resolved. Called outside every pool
    /// lock, because `on_wake` may run arbitrary front-end code.
    pub(crate) fn wake(&self) {
        {
            let mut s = lock(&self.signalled);
            *s = true;
            self.cond.notify_all();
        }
        if let Some(f) = &self.on_wake {
            f();
        }
    }

    /// Block the calling thread until woken or `timeout` passes. Returns
    /// whether the waiter is resolved. Spurious returns are harmless: the
    /// caller loops on its own deadline.
    pub fn park(&self, timeout: Duration) -> bool {
        let guard = lock(&self.signalled);
        if !*guard && !self.is_resolved() {
            #[cfg(not(loom))]
            {
                let _unused = self
                    .cond
                    .wait_timeout(guard, timeout)
                    .unwrap_or_else(|p| p.into_inner());
            }
            #[cfg(loom)]
            {
                let _ = timeout;
                drop(self.cond.wait(guard).unwrap());
            }
        }
        self.is_resolved()
    }
}
