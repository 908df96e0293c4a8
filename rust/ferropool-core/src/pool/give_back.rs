//! Giving connections back: returns, discards, handoff to the oldest
//! waiter, and retiring connections that must not be lent again.
//!
//! Whatever frees capacity while requests are queued must pass it on: in a
//! full pool as a replacement being opened (`after_capacity_change` grows
//! for waiters), in a null pool as a connect ticket granted to the oldest
//! waiter (`grant_capacity`). Nothing here may leave a request queued
//! while the capacity it waits for is free.

use std::collections::VecDeque;

use super::Pool;
use crate::clock::Nanos;
use crate::error::{NotLent, PoolError};
use crate::maintenance::{Action, CloseReason, Ticket};
use crate::slot::{Owned, Phase};
use crate::stats::bump;
use crate::sync::{lock, store_load_barrier, Arc, Ordering};
use crate::waiter::Waiter;

/// What became of a returned connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Checkin<T> {
    /// Back in the pool, or handed to a waiting request.
    Kept,
    /// Not kept: the caller closes it (a replacement is already on its way
    /// when one is needed).
    Close(T, CloseReason),
}

/// Where a healthy connection went when it became available.
#[must_use = "a waiter must be woken, a refused payload closed"]
pub(super) enum Available<T> {
    /// Idle in the pool.
    Idle,
    /// Granted to this waiter, who must be woken (outside every lock).
    Granted(Arc<Waiter>),
    /// The pool closed meanwhile: the caller closes this payload.
    Refused(Option<T>),
}

impl<T> Available<T> {
    /// Wake the waiter if there is one; return a payload to close if any.
    pub(super) fn finish(self) -> Option<T> {
        match self {
            Available::Idle => None,
            Available::Granted(w) => {
                w.wake();
                None
            }
            Available::Refused(p) => p,
        }
    }
}

/// How a connection that is discarded was found broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Returned by its borrower in a broken state (`returns_bad`).
    ReturnedBroken,
    /// Found broken by the pool (`connections_lost`).
    FoundBroken,
}

impl<T: Send> Pool<T> {
    /// Take back the connection whose key is `key`. `verify` runs while the
    /// slot is owned and must confirm the payload is the object returned;
    /// on any refusal the pool is left unchanged.
    pub fn checkin(
        &self,
        key: usize,
        verify: impl FnOnce(&T) -> bool,
    ) -> Result<Checkin<T>, PoolError> {
        let owned = self.own_lent(key, verify)?;
        let now = self.now();
        self.count_usage(&owned, now);
        if self.is_closing() {
            let payload = self.release_slot(owned);
            return Ok(Self::to_close(payload, CloseReason::PoolClosed));
        }
        if let Some(reason) = self.retire_reason(&owned, now) {
            let (payload, replacement) = self.retire_split(owned, reason);
            match replacement {
                Some(t) => self.push_actions([Action::Create(t)]),
                None => self.after_capacity_change(),
            }
            return Ok(Self::to_close(payload, reason));
        }
        if self.null {
            return Ok(self.null_checkin(owned, now));
        }
        // The server hung up while it was lent: a ping decides before anyone
        // (a waiter first of all) gets it.
        if self.liveness_bypass.nanos() != super::OFF && self.hung_up(&owned) {
            let ticket = self.to_validation(owned);
            self.push_actions([Action::Validate(ticket)]);
            return Ok(Checkin::Kept);
        }
        match self.make_available(owned, now).finish() {
            None => Ok(Checkin::Kept),
            Some(p) => Ok(Checkin::Close(p, CloseReason::PoolClosed)),
        }
    }

    /// Take back a broken connection; the caller closes the returned
    /// payload. A replacement is opened if the pool needs one.
    pub fn discard(
        &self,
        key: usize,
        verify: impl FnOnce(&T) -> bool,
        loss: Loss,
    ) -> Result<Option<T>, PoolError> {
        let owned = self.own_lent(key, verify)?;
        let now = self.now();
        self.count_usage(&owned, now);
        match loss {
            Loss::ReturnedBroken => bump(&self.counters.returns_bad, 1),
            Loss::FoundBroken => bump(&self.counters.connections_lost, 1),
        }
        let (payload, replacement) = self.retire_split(owned, CloseReason::Broken);
        self.push_actions(replacement.map(Action::Create));
        self.after_capacity_change();
        Ok(payload)
    }

    fn to_close(payload: Option<T>, reason: CloseReason) -> Checkin<T> {
        match payload {
            Some(p) => Checkin::Close(p, reason),
            None => Checkin::Kept,
        }
    }

    fn count_usage(&self, owned: &Owned<'_, T>, now: Nanos) {
        let leased_at = owned.slot().lent_at.load(Ordering::Relaxed);
        if leased_at != crate::clock::NEVER {
            let used = now.saturating_sub(leased_at);
            owned.slot().tally.usage.record_exclusive(used);
        }
    }

    /// Own the lent slot holding `key`, refusing unknown or returned ones.
    fn own_lent(
        &self,
        key: usize,
        verify: impl FnOnce(&T) -> bool,
    ) -> Result<Owned<'_, T>, PoolError> {
        let refuse = |reason| PoolError::NotLent {
            name: self.name.clone(),
            reason,
        };
        if key == 0 {
            return Err(refuse(NotLent::Unknown));
        }
        for (id, slot) in self.slots.iter() {
            if slot.key.load(Ordering::SeqCst) != key {
                continue;
            }
            let Some(owned) = slot.acquire(id, Phase::InUse, Phase::Returning) else {
                return Err(refuse(NotLent::AlreadyReturned));
            };
            if owned.read(|d| d.payload.as_ref().is_some_and(verify)) {
                return Ok(owned);
            }
            // Same key, other object: not ours after all. Put it back as it
            // was; its borrower holds no word, so nothing else changes.
            owned.lend();
            return Err(refuse(NotLent::Unknown));
        }
        Err(refuse(NotLent::Unknown))
    }

    /// Null pool return: hand the connection to a waiter, or close it. The
    /// decision is taken under the queue lock, so a request that queued
    /// because the pool was full is either handed this connection or finds
    /// the capacity it frees.
    pub(super) fn null_checkin(&self, mut owned: Owned<'_, T>, now: Nanos) -> Checkin<T> {
        owned.slot().last_returned.store(now, Ordering::Relaxed);
        let mut queue = lock(&self.queue);
        owned.advance(Phase::Handoff);
        while !self.is_paused() {
            let Some(w) = queue.pop_front() else {
                break;
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if w.grant(owned.id(), owned.word()) {
                let _granted = owned.park();
                drop(queue);
                w.wake();
                return Checkin::Kept;
            }
        }
        let payload = self.release_slot(owned);
        drop(queue);
        Self::to_close(payload, CloseReason::Idle)
    }

    /// Give an owned, healthy connection to the oldest waiter, or make it
    /// idle; the caller wakes the waiter (outside every lock) with
    /// [`Available::finish`].
    pub(super) fn make_available(&self, owned: Owned<'_, T>, now: Nanos) -> Available<T> {
        owned.slot().last_returned.store(now, Ordering::Relaxed);
        let owned = if self.grantable() {
            let mut queue = lock(&self.queue);
            match self.grant_oldest(&mut queue, owned) {
                Ok(w) => return Available::Granted(w),
                Err(o) => o,
            }
        } else {
            owned
        };
        let id = owned.id();
        let slot = owned.slot();
        self.idle.fetch_add(1, Ordering::SeqCst);
        owned.publish(Phase::Idle);
        store_load_barrier();
        // `close()` sets the phase, then takes every idle slot; we published
        // `Idle`, then read the phase (SeqCst both): if close's scan may
        // have missed this slot, take it back ourselves.
        if self.is_closing() {
            if let Some(owned) = slot.acquire(id, Phase::Idle, Phase::Retiring) {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                return Available::Refused(self.release_slot(owned));
            }
            return Available::Idle;
        }
        self.notify_ready();
        // Dekker half: a request may have queued between our read of
        // `waiting` and the publish; it will not see this slot unless we
        // hand it over ourselves.
        if self.grantable() {
            self.rescue();
        }
        Available::Idle
    }

    /// Grant an owned slot to the oldest waiter still waiting. `Err` gives
    /// the slot back (in `Returning`) when nobody is waiting any more.
    fn grant_oldest<'a>(
        &self,
        queue: &mut VecDeque<Arc<Waiter>>,
        mut owned: Owned<'a, T>,
    ) -> Result<Arc<Waiter>, Owned<'a, T>> {
        owned.advance(Phase::Handoff);
        while let Some(w) = queue.pop_front() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if w.grant(owned.id(), owned.word()) {
                // The waiter claims the slot with this word.
                let _granted = owned.park();
                return Ok(w);
            }
        }
        owned.advance(Phase::Returning);
        Err(owned)
    }

    /// Serve queued requests from idle slots. Closes the lost-wakeup window
    /// left by the lock-free return path.
    pub(super) fn rescue(&self) {
        let mut woken = Vec::new();
        {
            let mut queue = lock(&self.queue);
            while !queue.is_empty() && !self.is_paused() {
                let Some((owned, _)) = self.take_idle() else {
                    break;
                };
                match self.grant_oldest(&mut queue, owned) {
                    Ok(w) => woken.push(w),
                    Err(owned) => {
                        self.idle.fetch_add(1, Ordering::SeqCst);
                        owned.publish(Phase::Idle);
                        break;
                    }
                }
            }
        }
        for w in woken {
            w.wake();
        }
    }

    /// Retire an owned connection; the actions close it and, if the pool
    /// still needs it, open a replacement in the same slot.
    pub(super) fn retire(&self, owned: Owned<'_, T>, reason: CloseReason) -> Vec<Action<T>> {
        let (payload, replacement) = self.retire_split(owned, reason);
        payload
            .map(|p| Action::Close(p, reason))
            .into_iter()
            .chain(replacement.map(Action::Create))
            .collect()
    }

    /// Retire an owned connection, returning its payload (for the caller to
    /// close) and the ticket of its replacement if one is needed. The
    /// replacement reuses the slot, so the pool size does not dip.
    pub(super) fn retire_split(
        &self,
        mut owned: Owned<'_, T>,
        reason: CloseReason,
    ) -> (Option<T>, Option<Ticket>) {
        if matches!(
            reason,
            CloseReason::Expired | CloseReason::Drained | CloseReason::MaxUses
        ) {
            bump(&self.counters.connections_retired, 1);
        }
        let replace = self.is_open()
            && !self.null
            && !matches!(reason, CloseReason::Idle | CloseReason::Resized)
            && self.size.load(Ordering::SeqCst) <= self.capacity();
        if !replace {
            return (self.release_slot(owned), None);
        }
        let payload = Self::empty_slot(&mut owned);
        owned.advance(Phase::Reserved);
        self.creating.fetch_add(1, Ordering::SeqCst);
        let id = owned.id();
        let ticket = Ticket {
            id,
            word: owned.park(),
        };
        (payload, Some(ticket))
    }

    /// Capacity was freed or needs changed: refill to min_size and grow for
    /// queued requests (null pools: grant the capacity to them).
    pub(super) fn after_capacity_change(&self) {
        if !self.is_open() {
            return;
        }
        if self.null {
            self.grant_capacity();
            return;
        }
        let mut tickets = self.fill_to_min();
        if self.grantable() {
            let queue = lock(&self.queue);
            tickets.extend(self.grow_for_waiters(queue.len()));
        }
        self.push_actions(tickets.into_iter().map(Action::Create));
    }

    /// Null pool: give free capacity to the oldest queued requests, each as
    /// a connect ticket (what `begin_wait` gives a request that finds
    /// capacity). Taken under the queue lock, after the capacity was freed:
    /// a request queueing meanwhile either finds the capacity itself or is
    /// in the queue when this looks.
    pub(super) fn grant_capacity(&self) {
        let mut woken = Vec::new();
        {
            let mut queue = lock(&self.queue);
            self.grant_capacity_locked(&mut queue, &mut woken);
        }
        for w in woken {
            w.wake();
        }
    }

    /// [`Pool::grant_capacity`] with the queue locked; the caller wakes
    /// `woken` once every lock is released.
    pub(super) fn grant_capacity_locked(
        &self,
        queue: &mut VecDeque<Arc<Waiter>>,
        woken: &mut Vec<Arc<Waiter>>,
    ) {
        while !queue.is_empty() && !self.is_paused() && self.is_open() {
            let Some(ticket) = self.reserve() else {
                return;
            };
            let mut granted = false;
            while let Some(w) = queue.pop_front() {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                // The word is `Reserved`: the waiter knows it got capacity.
                if w.grant(ticket.id, ticket.word) {
                    woken.push(w);
                    granted = true;
                    break;
                }
            }
            if !granted {
                // Everyone queued had given up: nobody to open it for.
                if let Some(owned) = self.claim_ticket(ticket) {
                    let _empty = self.release_reserved(owned);
                }
                return;
            }
        }
    }

    /// Reserve slots until the pool counts min_size connections.
    pub(super) fn fill_to_min(&self) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        while self.size.load(Ordering::SeqCst) < self.min_size() {
            match self.reserve() {
                Some(t) => tickets.push(t),
                None => break,
            }
        }
        tickets
    }
}
