//! Borrowing: the lock-free checkout and the queued wait behind it.
//!
//! A slot is lent only by the thread whose compare-and-set took it; the
//! fast path must never take a lock, and a wait's deadline is computed
//! once, when it begins.

use std::time::Duration;

use super::{Checkin, Pool};
use crate::clock::{Nanos, WaitInstant};
use crate::error::PoolError;
use crate::maintenance::{Action, CloseReason, Ticket};
use crate::slot::{phase_of, Owned, Phase, SlotId};
use crate::stats::bump;
use crate::sync::{lock, store_load_barrier, Arc, Ordering};
use crate::waiter::{Outcome, Waiter, WakeFn};

/// A connection lent to a borrower: its slot and what the caller read from
/// the payload while it owned the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lent<R> {
    pub id: SlotId,
    pub value: R,
}

/// A place in the waiter queue.
#[derive(Debug)]
pub struct WaitTicket {
    waiter: Arc<Waiter>,
    /// When the wait began and when it gives up, on the precise clock.
    queued_at: WaitInstant,
    deadline: WaitInstant,
}

impl WaitTicket {
    pub fn waiter(&self) -> &Waiter {
        &self.waiter
    }
}

/// What a finished wait was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Served<R> {
    /// A connection, lent to the caller.
    Lent(Lent<R>),
    /// Null pool: capacity was freed for this request. Open a connection on
    /// the ticket and report it with `connected_to_caller` (or
    /// `connect_failed_caller`), as after [`Begin::Connect`].
    Connect(Ticket),
}

impl<R> Served<R> {
    /// The lent connection, if a connection was handed over.
    pub fn lent(self) -> Option<Lent<R>> {
        match self {
            Served::Lent(l) => Some(l),
            Served::Connect(_) => None,
        }
    }
}

/// What a request that found nothing idle must do next.
#[derive(Debug)]
pub enum Begin<R> {
    /// A connection became available meanwhile.
    Ready(Lent<R>),
    /// Null pool with spare capacity: open a connection on this ticket
    /// yourself and report it with `connected_to_caller`.
    Connect(Ticket),
    /// Queued: wait on the ticket, then call `finish_wait` (or
    /// `cancel_wait`). A null pool's request may be granted capacity (a
    /// connect ticket) instead of a connection.
    Wait(WaitTicket),
}

impl<T: Send> Pool<T> {
    /// The fast path: lend an idle connection, or `None` if the request has
    /// to queue (nothing idle, someone already queued, or a null pool).
    /// `read` runs while the slot is owned, to copy what the caller needs
    /// out of the payload (for a Python object: a new reference).
    #[inline]
    pub fn checkout<R>(&self, read: impl FnOnce(&T) -> R) -> Result<Option<Lent<R>>, PoolError> {
        self.check_open()?;
        let idle = !self.null
            && self.waiting.load(Ordering::SeqCst) == 0
            && self.idle.load(Ordering::Relaxed) != 0;
        match idle.then(|| self.take_idle()).flatten() {
            Some((owned, now)) => {
                owned.slot().tally.count_request();
                Ok(Some(self.lend(owned, now, false, read)))
            }
            None => {
                bump(&self.counters.requests_num, 1);
                Ok(None)
            }
        }
    }

    /// Take an idle slot that may be lent: expired ones are retired and
    /// suspect ones (see `liveness`) sent for validation on the way. The
    /// slot comes back still owned, ready for `lend`, with the time read
    /// for its lease.
    ///
    /// Which idle slot: with `lifo`, the lowest (the connection returned
    /// last is reused); otherwise the first after the slot lent last, so
    /// use rotates over every idle connection, as psycopg_pool's FIFO deque
    /// does. The cursor is a hint read and written with relaxed atomics
    /// (the slot's compare-and-set is what decides), on a line of its own.
    pub(super) fn take_idle(&self) -> Option<(Owned<'_, T>, Nanos)> {
        let mut now = None;
        let start = if self.lifo {
            0
        } else {
            self.cursor.0.load(Ordering::Relaxed)
        };
        for (id, slot) in self.slots.iter_from(start) {
            let Some(owned) = slot.acquire(id, Phase::Idle, Phase::Retiring) else {
                continue;
            };
            self.idle.fetch_sub(1, Ordering::SeqCst);
            let t = *now.get_or_insert_with(|| self.now());
            if let Some(reason) = self.retire_reason(&owned, t) {
                let actions = self.retire(owned, reason);
                self.push_actions(actions);
                continue;
            }
            if self.looks_dead(&owned, t) {
                let ticket = self.to_validation(owned);
                self.push_actions([Action::Validate(ticket)]);
                continue;
            }
            if !self.lifo {
                self.cursor.0.store(id as usize + 1, Ordering::Relaxed);
            }
            return Some((owned, t));
        }
        None
    }

    /// Liveness: poll the socket of a connection idle past the bypass
    /// window. Cheap (one non-blocking syscall) and only off the hottest
    /// path: a connection reused within the window is not polled.
    fn looks_dead(&self, owned: &Owned<'_, T>, now: Nanos) -> bool {
        let bypass = self.liveness_bypass.nanos();
        if bypass == super::OFF {
            return false;
        }
        if self.hung_up(owned) {
            return true;
        }
        let idle_for = now.saturating_sub(owned.slot().last_returned.load(Ordering::Relaxed));
        if idle_for < bypass {
            return false;
        }
        let Some(fd) = owned.slot().fd() else {
            return false;
        };
        bump(&self.counters.liveness_polls, 1);
        let dead = crate::liveness::socket_looks_dead(fd);
        if dead {
            bump(&self.counters.liveness_suspects, 1);
        }
        dead
    }

    /// The hang-up watch already knows (no syscall): the server closed this
    /// connection's socket.
    pub(super) fn hung_up(&self, owned: &Owned<'_, T>) -> bool {
        let Some(h) = &self.hangup else {
            return false;
        };
        let token = owned.read(|d| d.hup_token);
        let dead = h.hung_up(owned.id(), token);
        if dead {
            bump(&self.counters.liveness_suspects, 1);
        }
        dead
    }

    /// Park an owned slot for validation; the ticket goes to a worker.
    pub(super) fn to_validation(&self, mut owned: Owned<'_, T>) -> Ticket {
        owned.advance(Phase::Validating);
        let id = owned.id();
        Ticket {
            id,
            word: owned.park(),
        }
    }

    /// Hand an owned slot to a borrower.
    pub(super) fn lend<R>(
        &self,
        mut owned: Owned<'_, T>,
        now: Nanos,
        internal: bool,
        read: impl FnOnce(&T) -> R,
    ) -> Lent<R> {
        let id = owned.id();
        // The pool's own leases (checks, pings) are neither uses nor leaks.
        let lent_at = if internal { crate::clock::NEVER } else { now };
        owned.slot().lent_at.store(lent_at, Ordering::Relaxed);
        let value = owned.with(|d| {
            if !internal {
                d.uses += 1;
            }
            read(d.payload.as_ref().expect("a lent slot holds a connection"))
        });
        owned.lend();
        Lent { id, value }
    }

    /// The slow path: queue behind earlier requests (or, for a null pool,
    /// get a ticket to connect). `timeout` starts the wait's one deadline.
    /// `on_wake` is called when the wait is resolved, for waiters that are
    /// not blocked threads.
    pub fn begin_wait<R>(
        &self,
        timeout: Duration,
        on_wake: Option<WakeFn>,
        read: impl FnOnce(&T) -> R,
    ) -> Result<Begin<R>, PoolError> {
        let queued_at = self.clock.wait_now();
        let deadline = queued_at.after(timeout);
        let mut queue = lock(&self.queue);
        self.check_open()?;
        // A null pool's spare capacity goes to this request, unless earlier
        // ones are queued: it must not overtake them.
        if self.null && queue.is_empty() && !self.is_paused() {
            if let Some(ticket) = self.reserve() {
                return Ok(Begin::Connect(ticket));
            }
        }
        // Announce ourselves before looking again: the Dekker half that
        // pairs with a return publishing `Idle` then reading `waiting`.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        store_load_barrier();
        if queue.is_empty() && !self.is_paused() {
            if let Some((owned, t)) = self.take_idle() {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Ok(Begin::Ready(self.lend(owned, t, false, read)));
            }
        }
        let max_waiting = self.max_waiting();
        if max_waiting > 0 && queue.len() >= max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            bump(&self.counters.requests_errors, 1);
            return Err(PoolError::TooManyRequests {
                name: self.name.clone(),
                waiting: queue.len(),
            });
        }
        bump(&self.counters.requests_queued, 1);
        let waiter = Arc::new(Waiter::new(on_wake));
        queue.push_back(waiter.clone());
        let grow = self.grow_for_waiters(queue.len());
        // Null pool: capacity left free while requests queue (they were
        // queued before it was freed, and its grant is still to come) goes
        // to the oldest now; this request may be among those served.
        let mut woken = Vec::new();
        if self.null {
            self.grant_capacity_locked(&mut queue, &mut woken);
        }
        drop(queue);
        for w in woken {
            w.wake();
        }
        self.push_actions(grow.into_iter().map(Action::Create));
        Ok(Begin::Wait(WaitTicket {
            waiter,
            queued_at,
            deadline,
        }))
    }

    /// Reserve capacity for waiting requests, a bounded number of
    /// connections at once. Called with the queue locked.
    pub(super) fn grow_for_waiters(&self, waiting: usize) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        if self.null {
            return tickets;
        }
        while self.creating.load(Ordering::SeqCst) < self.max_connecting.min(waiting) {
            match self.reserve() {
                Some(t) => tickets.push(t),
                None => break,
            }
        }
        tickets
    }

    /// Block the calling thread on the ticket until it is resolved or
    /// `slice` passes (so the caller can check for signals). Returns
    /// whether it is resolved.
    pub fn park(&self, ticket: &WaitTicket, slice: Duration) -> bool {
        let left = self.clock.wait_left(ticket.deadline);
        ticket.waiter.park(slice.min(left))
    }

    /// Whether the ticket's deadline has passed.
    pub fn expired(&self, ticket: &WaitTicket) -> bool {
        self.clock.wait_now() >= ticket.deadline
    }

    /// End a wait: take the granted connection (or, null pools, the
    /// granted capacity), or give up (timeout). Safe to call before the
    /// deadline too (the waiter gives up then).
    pub fn finish_wait<R>(
        &self,
        ticket: WaitTicket,
        read: impl FnOnce(&T) -> R,
    ) -> Result<Served<R>, PoolError> {
        let outcome = ticket.waiter.resolve();
        self.record_wait(self.clock.wait_now().since(ticket.queued_at));
        match outcome {
            // Capacity granted as a slot still `Reserved`: the word is the
            // ticket, claimed when the caller reports its attempt.
            Outcome::Granted { id, word } if phase_of(word) == Phase::Reserved => {
                Ok(Served::Connect(Ticket { id, word }))
            }
            Outcome::Granted { id, word } => {
                let owned = self
                    .slot_of(id)
                    .claim(id, word, Phase::Handoff)
                    .expect("a granted slot waits in Handoff for its waiter");
                Ok(Served::Lent(self.lend(owned, self.now(), false, read)))
            }
            Outcome::Closed => {
                bump(&self.counters.requests_errors, 1);
                Err(PoolError::Closed {
                    name: self.name.clone(),
                })
            }
            Outcome::Abandoned => {
                self.leave_queue(&ticket.waiter);
                bump(&self.counters.requests_errors, 1);
                Err(PoolError::Timeout {
                    waited: ticket.deadline.since(ticket.queued_at),
                    last_connect_error: self.last_connect_error(),
                })
            }
        }
    }

    /// Abandon a wait that the caller no longer wants (cancelled task,
    /// KeyboardInterrupt). A connection granted in the meantime goes back
    /// to the pool (or to the next waiter), never lost with the caller; if
    /// the pool closed meanwhile it is returned for the caller to close.
    /// Capacity granted meanwhile (null pools) goes to the next waiter.
    #[must_use = "a payload returned here must be closed"]
    pub fn cancel_wait(&self, ticket: WaitTicket) -> Option<T> {
        let mut to_close = None;
        match ticket.waiter.resolve() {
            Outcome::Granted { id, word } if phase_of(word) == Phase::Reserved => {
                if let Some(owned) = self.claim_ticket(Ticket { id, word }) {
                    let _empty = self.release_reserved(owned);
                    self.after_capacity_change();
                }
            }
            Outcome::Granted { id, word } => {
                let owned = self
                    .slot_of(id)
                    .claim(id, word, Phase::Returning)
                    .expect("a granted slot waits in Handoff for its waiter");
                let now = self.now();
                to_close = if self.null {
                    // A null pool keeps nothing idle: the next waiter gets
                    // it, or the caller closes it.
                    match self.null_checkin(owned, now) {
                        Checkin::Kept => None,
                        Checkin::Close(p, _) => Some(p),
                    }
                } else {
                    match self.retire_reason(&owned, now) {
                        Some(reason) => {
                            let actions = self.retire(owned, reason);
                            self.push_actions(actions);
                            None
                        }
                        None => self.make_available(owned, now).finish(),
                    }
                };
            }
            Outcome::Abandoned => self.leave_queue(&ticket.waiter),
            Outcome::Closed => {}
        }
        bump(&self.counters.requests_errors, 1);
        self.record_wait(self.clock.wait_now().since(ticket.queued_at));
        to_close
    }

    fn record_wait(&self, waited: Duration) {
        let ns = crate::clock::saturating_nanos(waited);
        bump(&self.counters.requests_wait_ns, ns);
        self.counters.wait_time.record(ns);
    }

    fn leave_queue(&self, waiter: &Arc<Waiter>) {
        let mut queue = lock(&self.queue);
        if let Some(pos) = queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            queue.remove(pos);
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Why an owned connection must not be lent again, if it must not.
    pub(super) fn retire_reason(&self, owned: &Owned<'_, T>, now: Nanos) -> Option<CloseReason> {
        if owned.slot().expires_at.load(Ordering::Relaxed) <= now {
            return Some(CloseReason::Expired);
        }
        let drained = owned.slot().generation.load(Ordering::Relaxed)
            < self.drain_generation.load(Ordering::SeqCst);
        let max_uses = self.max_uses();
        let used_up = owned.read(|d| max_uses > 0 && d.uses >= max_uses);
        if drained {
            Some(CloseReason::Drained)
        } else if used_up {
            Some(CloseReason::MaxUses)
        } else if self.size.load(Ordering::SeqCst) > self.capacity() {
            Some(CloseReason::Resized)
        } else {
            None
        }
    }
}
