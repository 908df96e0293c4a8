//! The maintenance queue: work the core asks its front end to carry out.
//!
//! The core never opens or closes a connection itself (that is driver code
//! in the front end). It queues actions here; the front end's workers take
//! them with `Pool::next_action` and report back (`connected`,
//! `connect_failed`). Timers (retry a connection, sweep idle connections,
//! refill to min_size) live in the same queue so one condition variable
//! wakes a worker for either.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::clock::Nanos;
use crate::slot::SlotId;

/// A claim on a `Reserved` slot: whoever holds it opens the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket {
    pub id: SlotId,
    pub word: u64,
}

/// Why a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Past max_lifetime.
    Expired,
    /// Created before the last `drain()`.
    Drained,
    /// Reached max_uses.
    MaxUses,
    /// Idle above min_size for longer than max_idle.
    Idle,
    /// Above max_size after a resize.
    Resized,
    /// Found broken, or returned broken.
    Broken,
    /// The pool is closed.
    PoolClosed,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Expired => "expired",
            CloseReason::Drained => "drained",
            CloseReason::MaxUses => "max_uses",
            CloseReason::Idle => "idle",
            CloseReason::Resized => "resized",
            CloseReason::Broken => "broken",
            CloseReason::PoolClosed => "pool closed",
        }
    }
}

/// Work for a front-end worker.
#[derive(Debug)]
pub enum Action<T> {
    /// Open a connection and report with `connected` or `connect_failed`.
    Create(Ticket),
    /// Close this connection (it is no longer counted).
    Close(T, CloseReason),
    /// Ping the connection held by this ticket (`claim_validation`), then
    /// give it back with `checkin`, or `discard` it if the ping failed.
    Validate(Ticket),
    /// The lease of the connection with this key has been held for `held`
    /// (longer than leak_timeout). Repeated at every sweep while the lease
    /// lasts, so a borrower that lost the connection is noticed; `first` is
    /// set once, for the report.
    Leak {
        key: usize,
        held: std::time::Duration,
        first: bool,
    },
    /// The pool closed and nothing is left to do: the worker should exit.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Try opening the connection of this ticket again.
    Retry(Ticket),
    /// Close idle connections above min_size, retire expired idle ones.
    IdleSweep,
    /// Bring the pool back to min_size after attempts were given up.
    Refill,
}

#[derive(Debug)]
pub(crate) struct MaintState<T> {
    pub ready: VecDeque<Action<T>>,
    /// (due, tiebreak, timer), earliest first.
    pub timers: BinaryHeap<Reverse<(Nanos, u64, Timer)>>,
    pub timer_seq: u64,
    /// Set when the pool closes: workers drain `ready` and then stop.
    pub stopping: bool,
    pub sweep_scheduled_at: Option<Nanos>,
}

impl<T> Default for MaintState<T> {
    fn default() -> Self {
        Self {
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            stopping: false,
            sweep_scheduled_at: None,
        }
    }
}

impl<T> MaintState<T> {
    pub fn push(&mut self, action: Action<T>) {
        self.ready.push_back(action);
    }

    pub fn schedule(&mut self, due: Nanos, timer: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((due, self.timer_seq, timer)));
    }

    /// The next timer due at or before `now`.
    pub fn pop_due(&mut self, now: Nanos) -> Option<Timer> {
        match self.timers.peek() {
            Some(Reverse((due, _, _))) if *due <= now => self.timers.pop().map(|Reverse(t)| t.2),
            _ => None,
        }
    }

    pub fn next_due(&self) -> Option<Nanos> {
        self.timers.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Bring every pending retry forward to `now`: a connection just
    /// succeeded, so the server is back and waiting out backoff is waste.
    pub fn expedite_retries(&mut self, now: Nanos) {
        if !self
            .timers
            .iter()
            .any(|Reverse((due, _, t))| matches!(t, Timer::Retry(_)) && *due > now)
        {
            return;
        }
        let timers = std::mem::take(&mut self.timers);
        self.timers = timers
            .into_iter()
            .map(|Reverse((due, seq, t))| match t {
                Timer::Retry(_) => Reverse((due.min(now), seq, t)),
                _ => Reverse((due, seq, t)),
            })
            .collect();
    }

    /// Remove every pending retry, returning their tickets.
    pub fn take_retries(&mut self) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        let timers = std::mem::take(&mut self.timers);
        self.timers = timers
            .into_iter()
            .filter(|Reverse((_, _, t))| match t {
                Timer::Retry(ticket) => {
                    tickets.push(*ticket);
                    false
                }
                _ => true,
            })
            .collect();
        tickets
    }
}
