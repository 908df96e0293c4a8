//! Opening, closing, resizing, draining and checking the pool; the results
//! of connection attempts; and the maintenance loop the workers run.

use std::time::Duration;

use super::{Pool, CLOSING, NEW, OFF, OPEN};
use crate::backoff::{Backoff, Failure, MAX_DELAY};
use crate::clock::{saturating_nanos, Nanos};
use crate::config::ConfigError;
use crate::error::PoolError;
use crate::maintenance::{Action, CloseReason, Ticket, Timer};
use crate::slot::{Owned, Phase};
use crate::stats::bump;
use crate::sync::{lock, store_load_barrier, Ordering};

use super::borrow::Lent;

/// What became of a newly opened connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Connected<T> {
    /// In the pool (or handed to a waiter).
    Added,
    /// Not wanted (the pool closed meanwhile): the caller closes it.
    Refused(T),
}

/// What follows a failed connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailed {
    /// Another attempt is scheduled after this delay.
    Retry(Duration),
    /// Attempts failed for longer than reconnect_timeout: the capacity is
    /// given back and the front end calls its `reconnect_failed` hook.
    GaveUp,
    /// The pool closed; nothing more will be tried.
    Closed,
    /// The pool was resized below what was reserved: no retry needed.
    NotNeeded,
}

impl<T: Send> Pool<T> {
    /// Start accepting requests and open min_size connections; start the
    /// hang-up watch. Opening an open pool does nothing; a closed pool
    /// cannot be reopened.
    pub fn open(&self) -> Result<(), PoolError> {
        match self
            .phase
            .compare_exchange(NEW, OPEN, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                if let Some(h) = &self.hangup {
                    h.start(&self.name);
                }
                let tickets = self.fill_to_min();
                self.push_actions(tickets.into_iter().map(Action::Create));
                if !self.null {
                    // OFF is "never": the min skips settings that are off.
                    let first = self
                        .max_idle_ns
                        .load(Ordering::Relaxed)
                        .min(self.keepalive_interval.nanos())
                        .min(self.leak_timeout.nanos());
                    self.schedule(self.now().saturating_add(first), Timer::IdleSweep);
                }
                Ok(())
            }
            Err(OPEN) => Ok(()),
            Err(_) => Err(PoolError::CannotReopen {
                name: self.name.clone(),
            }),
        }
    }

    /// Close the pool: fail every waiter with `Closed`, stop the workers
    /// once their queue is empty, stop the hang-up watch (its thread joined,
    /// its descriptors closed), and return the idle connections for the
    /// caller to close. Lent connections are closed when they come back.
    /// Closing a pool that was never opened does nothing (as psycopg_pool).
    pub fn close(&self) -> Vec<T> {
        let woken = {
            let mut queue = lock(&self.queue);
            if self.phase.load(Ordering::SeqCst) != OPEN {
                return Vec::new();
            }
            self.phase.store(CLOSING, Ordering::SeqCst);
            store_load_barrier();
            let woken: Vec<_> = queue.drain(..).filter(|w| w.close()).collect();
            self.waiting.store(0, Ordering::SeqCst);
            woken
        };
        for w in woken {
            w.wake();
        }
        let mut payloads = Vec::new();
        for (id, slot) in self.slots.iter() {
            if let Some(owned) = slot.acquire(id, Phase::Idle, Phase::Retiring) {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                payloads.extend(self.release_slot(owned));
            }
        }
        let mut tickets = Vec::new();
        let mut validations = Vec::new();
        {
            let mut m = lock(&self.maint);
            m.stopping = true;
            tickets.extend(m.take_retries());
            for action in std::mem::take(&mut m.ready) {
                match action {
                    Action::Close(p, _) => payloads.push(p),
                    Action::Create(t) => tickets.push(t),
                    Action::Validate(t) => validations.push(t),
                    Action::Leak { .. } | Action::Stop => {}
                }
            }
        }
        for t in tickets {
            // A ticket already taken by a worker fails to claim here; that
            // worker's `connected` will find the pool closed instead.
            if let Some(owned) = self.slot_of(t.id).claim(t.id, t.word, Phase::Reserved) {
                payloads.extend(self.release_reserved(owned));
            }
        }
        for t in validations {
            if let Some(owned) = self.slot_of(t.id).claim(t.id, t.word, Phase::Retiring) {
                payloads.extend(self.release_slot(owned));
            }
        }
        self.maint_cond.notify_all();
        {
            let _g = lock(&self.ready);
            self.ready_cond.notify_all();
        }
        // Connections still lent may come back and be looked up on the
        // board; with the watch stopped they read as not hung up, and they
        // are closed on return anyway.
        if let Some(h) = &self.hangup {
            h.stop();
        }
        payloads
    }

    /// Change min_size and max_size. Idle connections above the new
    /// max_size are returned for the caller to close; lent ones are closed
    /// when they come back. On a refused size the pool is unchanged.
    pub fn resize(&self, min_size: usize, max_size: usize) -> Result<Vec<T>, ConfigError> {
        self.set_sizes(min_size, max_size)?;
        let mut payloads = Vec::new();
        while self.size.load(Ordering::SeqCst) > self.capacity() {
            let Some(owned) = self.take_any_idle() else {
                break;
            };
            payloads.extend(self.release_slot(owned));
        }
        self.after_capacity_change();
        Ok(payloads)
    }

    fn take_any_idle(&self) -> Option<Owned<'_, T>> {
        // Highest slots first: with `lifo` they are the least used
        // (checkout scans from the lowest); otherwise any will do.
        for (id, slot) in self.slots.iter().rev() {
            if let Some(owned) = slot.acquire(id, Phase::Idle, Phase::Retiring) {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                return Some(owned);
            }
        }
        None
    }

    /// Retire every connection opened so far: idle ones now (returned for
    /// the caller to close, replacements queued), lent ones when they come
    /// back.
    pub fn drain(&self) -> Vec<T> {
        self.drain_generation.fetch_add(1, Ordering::SeqCst);
        let mut payloads = Vec::new();
        let mut creates = Vec::new();
        for (id, slot) in self.slots.iter() {
            if let Some(owned) = slot.acquire(id, Phase::Idle, Phase::Retiring) {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                let (p, t) = self.retire_split(owned, CloseReason::Drained);
                payloads.extend(p);
                creates.extend(t);
            }
        }
        self.push_actions(creates.into_iter().map(Action::Create));
        payloads
    }

    /// Lend every idle connection to the pool itself for a health check.
    /// The caller returns each with `checkin` or `discard(FoundBroken)`.
    /// Expired ones are retired on the way (their close is queued).
    pub fn take_for_check<R>(&self, mut read: impl FnMut(&T) -> R) -> Vec<Lent<R>> {
        let mut lent = Vec::new();
        for (id, slot) in self.slots.iter() {
            let Some(owned) = slot.acquire(id, Phase::Idle, Phase::Retiring) else {
                continue;
            };
            self.idle.fetch_sub(1, Ordering::SeqCst);
            let now = self.now();
            match self.retire_reason(&owned, now) {
                Some(reason) => {
                    let actions = self.retire(owned, reason);
                    self.push_actions(actions);
                }
                None => lent.push(self.lend(owned, now, true, &mut read)),
            }
        }
        self.after_capacity_change();
        lent
    }

    /// Put a new connection in the slot reserved by `ticket`. `key`
    /// identifies the payload on return (non-zero, unique while alive);
    /// `fd` is its socket, for liveness polls (-1 if unknown).
    pub fn connected(
        &self,
        ticket: Ticket,
        payload: T,
        key: usize,
        fd: i32,
        took: Duration,
    ) -> Connected<T> {
        let Some(mut owned) = self.claim_connected(ticket, took) else {
            return Connected::Refused(payload);
        };
        // Not wanted if the pool closed, or shrank below what was reserved
        // (a resize down while this connection was being opened).
        if !self.is_open() || self.size.load(Ordering::SeqCst) > self.capacity() {
            let _ = self.release_slot(owned);
            return Connected::Refused(payload);
        }
        let now = self.now();
        self.install(&mut owned, payload, key, fd, now);
        self.connect_successes.fetch_add(1, Ordering::SeqCst);
        *lock(&self.last_connect_error) = None;
        lock(&self.maint).expedite_retries(now);
        self.maint_cond.notify_all();
        if let Some(p) = self.make_available(owned, now).finish() {
            return Connected::Refused(p);
        }
        self.after_capacity_change();
        Connected::Added
    }

    /// Null pool: the requesting thread opened the connection itself; lend
    /// it straight to that thread.
    pub fn connected_to_caller<R>(
        &self,
        ticket: Ticket,
        payload: T,
        key: usize,
        fd: i32,
        took: Duration,
        read: impl FnOnce(&T) -> R,
    ) -> Result<Lent<R>, T> {
        let Some(mut owned) = self.claim_connected(ticket, took) else {
            return Err(payload);
        };
        if !self.is_open() {
            let _ = self.release_slot(owned);
            return Err(payload);
        }
        let now = self.now();
        self.install(&mut owned, payload, key, fd, now);
        self.connect_successes.fetch_add(1, Ordering::SeqCst);
        Ok(self.lend(owned, now, false, read))
    }

    /// Own the slot of an attempt that succeeded, and count the attempt.
    fn claim_connected(&self, ticket: Ticket, took: Duration) -> Option<Owned<'_, T>> {
        let owned = self.claim_ticket(ticket)?;
        self.creating.fetch_sub(1, Ordering::SeqCst);
        let took = saturating_nanos(took);
        bump(&self.counters.connections_num, 1);
        bump(&self.counters.connections_ns, took);
        self.counters.connect_time.record(took);
        Some(owned)
    }

    /// Count an attempt that failed with `message`.
    fn count_failed_attempt(&self, message: String) {
        bump(&self.counters.connections_num, 1);
        bump(&self.counters.connections_errors, 1);
        *lock(&self.last_connect_error) = Some(message);
    }

    /// Give back the capacity of a reserved slot whose attempt is over.
    pub(super) fn release_reserved(&self, owned: Owned<'_, T>) -> Option<T> {
        self.creating.fetch_sub(1, Ordering::SeqCst);
        self.release_slot(owned)
    }

    pub(super) fn claim_ticket(&self, ticket: Ticket) -> Option<Owned<'_, T>> {
        self.slots
            .get(ticket.id)?
            .claim(ticket.id, ticket.word, Phase::Reserved)
    }

    fn install(&self, owned: &mut Owned<'_, T>, payload: T, key: usize, fd: i32, now: Nanos) {
        let lifetime = self.max_lifetime_ns.load(Ordering::Relaxed) as f64;
        let jittered = self.jitter.scale(lifetime, -self.lifetime_jitter, 0.0);
        let expires_at = if jittered >= u64::MAX as f64 {
            u64::MAX
        } else {
            now.saturating_add(jittered as u64)
        };
        let generation = self.drain_generation.load(Ordering::SeqCst);
        let hup_token = self
            .hangup
            .as_ref()
            .map_or(0, |h| h.register(owned.id(), fd));
        owned.with(|d| {
            d.payload = Some(payload);
            d.uses = 0;
            d.attempt = None;
            d.hup_token = hup_token;
        });
        owned.slot().expires_at.store(expires_at, Ordering::SeqCst);
        owned.slot().generation.store(generation, Ordering::SeqCst);
        owned.slot().key.store(key, Ordering::SeqCst);
        owned
            .slot()
            .socket
            .store(u64::try_from(fd).map_or(0, |f| f + 1), Ordering::SeqCst);
    }

    /// A connection attempt on `ticket` failed with `message` (already
    /// free of secrets); `failure` says whether retrying soon can help.
    /// Schedules the retry, or gives up after reconnect_timeout.
    ///
    /// Each reserved slot keeps its own backoff, but a success anywhere in
    /// the pool since the slot's run of failures began ends that run: the
    /// next failure starts over at the first delay, with a fresh give-up
    /// point.
    pub fn connect_failed(
        &self,
        ticket: Ticket,
        message: String,
        failure: Failure,
    ) -> ConnectFailed {
        let Some(mut owned) = self.claim_ticket(ticket) else {
            return ConnectFailed::Closed;
        };
        self.count_failed_attempt(message);
        if !self.is_open() {
            let _ = self.release_reserved(owned);
            return ConnectFailed::Closed;
        }
        if self.size.load(Ordering::SeqCst) > self.capacity() {
            // Resized down meanwhile: this attempt is no longer needed.
            let _ = self.release_reserved(owned);
            return ConnectFailed::NotNeeded;
        }
        let now = self.now();
        let run = self.connect_successes.load(Ordering::SeqCst);
        let attempt = match owned.read(|d| d.attempt) {
            Some(a) if a.run() == run => a.next(now, failure, &self.jitter),
            _ => Backoff::start(now, self.reconnect_timeout(), failure, run, &self.jitter),
        };
        if attempt.exhausted(now) {
            let _ = self.release_reserved(owned);
            // Keep trying to reach min_size, with a fresh give-up period
            // (and, for a permanent failure, delays from a second again).
            self.schedule(
                now.saturating_add(saturating_nanos(MAX_DELAY)),
                Timer::Refill,
            );
            return ConnectFailed::GaveUp;
        }
        owned.with(|d| d.attempt = Some(attempt));
        let delay = attempt.delay();
        let id = owned.id();
        let retry = Ticket {
            id,
            word: owned.park(),
        };
        self.schedule(
            now.saturating_add(saturating_nanos(delay)),
            Timer::Retry(retry),
        );
        ConnectFailed::Retry(delay)
    }

    /// Null pool: the requesting thread failed to connect; give the
    /// reserved capacity back (to the oldest queued request, if any).
    pub fn connect_failed_caller(&self, ticket: Ticket, message: String) {
        let Some(owned) = self.claim_ticket(ticket) else {
            return;
        };
        self.count_failed_attempt(message);
        let _ = self.release_reserved(owned);
        self.after_capacity_change();
    }

    /// Take the connection held by a validation ticket, lent to the pool
    /// itself; the caller pings it, then `checkin` or `discard(FoundBroken)`.
    /// `None` if the ticket is stale (the pool closed meanwhile).
    pub fn claim_validation<R>(
        &self,
        ticket: Ticket,
        read: impl FnOnce(&T) -> R,
    ) -> Option<Lent<R>> {
        let owned = self
            .slots
            .get(ticket.id)?
            .claim(ticket.id, ticket.word, Phase::Retiring)?;
        Some(self.lend(owned, self.now(), true, read))
    }

    /// The server is going away or changed role: retire every connection
    /// opened before now (idle ones are returned for the caller to close,
    /// lent ones are retired when they come back) and open new ones.
    pub fn failover(&self) -> Vec<T> {
        bump(&self.counters.failovers, 1);
        self.drain()
    }

    /// Failover seen on the connection with `key`: drain, unless that
    /// connection predates the last drain (then it is already being retired
    /// and draining again would throw away its fresh replacements too).
    /// `None` when nothing was drained.
    pub fn failover_from(&self, key: usize) -> Option<Vec<T>> {
        let current = self.drain_generation.load(Ordering::SeqCst);
        let stale = self.slots.iter().any(|(_, s)| {
            s.key.load(Ordering::SeqCst) == key && s.generation.load(Ordering::SeqCst) < current
        });
        (!stale).then(|| self.failover())
    }

    /// The sockets of every connection the pool counts (idle, lent, being
    /// validated). For a child process after fork(): it must stop those
    /// sockets from ever being written to, since they are the parent's.
    pub fn sockets(&self) -> Vec<i32> {
        self.slots
            .iter()
            .filter(|(_, s)| s.phase() != Phase::Free)
            .filter_map(|(_, s)| s.fd())
            .collect()
    }

    /// In a fork child: a pool to use in place of this one, built from this
    /// one's current settings (sizes after `resize`, lifetimes as last set)
    /// and open if this one is, with the sockets of every connection this
    /// one counts, for the caller to point at /dev/null (they are the
    /// parent's sessions).
    ///
    /// Reads only atomics: the locks of this pool may be held by threads
    /// that do not exist in the child. This pool must never be used,
    /// closed or dropped afterwards: leak it. Its connections are the
    /// parent's; anything sent on them, a close included, would end or
    /// corrupt the parent's sessions, and its hang-up watch's descriptors
    /// are shared with the parent's watch.
    pub fn successor_after_fork(&self) -> Result<(Pool<T>, Vec<i32>), ConfigError> {
        let was_open = self.is_open();
        let sockets = self.sockets();
        let next = Pool::new(self.config())?;
        if was_open {
            // A new pool opens: it cannot have been closed.
            let _opened = next.open();
        }
        Ok((next, sockets))
    }

    /// Hold back new checkouts: they queue until `resume()`. Connections
    /// returned meanwhile go idle. Lent connections are unaffected.
    pub fn pause(&self) {
        let _queue = lock(&self.queue);
        if !self.is_paused() {
            self.waiting.fetch_add(super::PAUSE_BIAS, Ordering::SeqCst);
        }
    }

    /// Serve the requests queued during a pause, oldest first.
    pub fn resume(&self) {
        {
            let _queue = lock(&self.queue);
            if self.is_paused() {
                self.waiting.fetch_sub(super::PAUSE_BIAS, Ordering::SeqCst);
            }
        }
        self.rescue();
        self.after_capacity_change();
    }

    /// Run the idle sweep now (settings changed).
    pub(super) fn kick_sweep(&self) {
        if self.is_open() && !self.null {
            self.schedule(self.now(), Timer::IdleSweep);
        }
    }

    fn schedule(&self, due: Nanos, timer: Timer) {
        let mut m = lock(&self.maint);
        if m.stopping {
            return;
        }
        if timer == Timer::IdleSweep {
            if m.sweep_scheduled_at.is_some_and(|at| at <= due) {
                return;
            }
            m.sweep_scheduled_at = Some(due);
        }
        m.schedule(due, timer);
        drop(m);
        self.maint_cond.notify_one();
    }

    /// The next piece of work for a worker, waiting up to `timeout`.
    /// `None` when nothing came in time; `Stop` once the pool is closed and
    /// its queue is empty. Call without holding anything the front end
    /// needs elsewhere: this blocks.
    pub fn next_action(&self, timeout: Duration) -> Option<Action<T>> {
        // The worker's own wait is timed on the precise clock; the timers
        // it fires are slot times.
        let deadline = self.clock.wait_now().after(timeout);
        loop {
            let now = self.now();
            let due: Vec<Timer> = {
                let mut m = lock(&self.maint);
                std::iter::from_fn(|| m.pop_due(now)).collect()
            };
            for timer in due {
                self.fire(timer, now);
            }
            let mut m = lock(&self.maint);
            if let Some(action) = m.ready.pop_front() {
                return Some(action);
            }
            if m.stopping {
                // Let the other workers see it too.
                self.maint_cond.notify_all();
                return Some(Action::Stop);
            }
            let left = self.clock.wait_left(deadline);
            if left.is_zero() {
                return None;
            }
            let wait = match m.next_due() {
                Some(due) => {
                    let now = self.now();
                    if due <= now {
                        continue;
                    }
                    left.min(Duration::from_nanos(due - now))
                }
                None => left,
            };
            #[cfg(not(loom))]
            {
                let _unused = self
                    .maint_cond
                    .wait_timeout(m, wait)
                    .unwrap_or_else(|p| p.into_inner());
            }
            #[cfg(loom)]
            {
                let _ = wait;
                drop(m);
                loom::thread::yield_now();
            }
        }
    }

    /// Run a due timer. Called without the maintenance lock held, so the
    /// work may take the queue lock.
    fn fire(&self, timer: Timer, now: Nanos) {
        match timer {
            Timer::Retry(ticket) => self.push_actions([Action::Create(ticket)]),
            Timer::Refill => self.after_capacity_change(),
            Timer::IdleSweep => {
                lock(&self.maint).sweep_scheduled_at = None;
                if self.is_open() {
                    let next = self.sweep(now);
                    self.schedule(next, Timer::IdleSweep);
                }
            }
        }
    }

    /// The periodic sweep: report leases held past leak_timeout, retire
    /// expired idle connections, close idle ones above min_size unused for
    /// max_idle (oldest first), and send idle ones unused for
    /// keepalive_interval to be pinged. Returns when to sweep next: the
    /// moment the next connection would qualify for any of these.
    fn sweep(&self, now: Nanos) -> Nanos {
        let max_idle = self.max_idle_ns.load(Ordering::Relaxed);
        let mut next = now.saturating_add(max_idle);
        let mut actions = self.find_leaks(now, &mut next);
        let keepalive = self.keepalive_interval.nanos();
        if keepalive != OFF {
            // Connections lent or being pinged now will be due again one
            // interval after they come back: look at least that often.
            next = next.min(now.saturating_add(keepalive));
        }
        let leak = self.leak_timeout.nanos();
        if leak != OFF {
            // Leases taken after this sweep are due one timeout from now.
            next = next.min(now.saturating_add(leak));
        }
        let mut idle: Vec<(Nanos, crate::slot::SlotId)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.phase() == Phase::Idle)
            .map(|(id, s)| (s.last_returned.load(Ordering::SeqCst), id))
            .collect();
        idle.sort_unstable();
        let mut freed = false;
        for (last_returned, id) in idle {
            let slot = self.slot_of(id);
            let expires_at = slot.expires_at.load(Ordering::SeqCst);
            let surplus = self.size.load(Ordering::SeqCst) > self.min_size();
            let idle_too_long = last_returned.saturating_add(max_idle) <= now;
            let ping_due = keepalive != OFF && last_returned.saturating_add(keepalive) <= now;
            if expires_at > now && !(surplus && idle_too_long) && !ping_due {
                next = next.min(expires_at);
                if surplus {
                    next = next.min(last_returned.saturating_add(max_idle));
                }
                if keepalive != OFF {
                    next = next.min(last_returned.saturating_add(keepalive));
                }
                continue;
            }
            let Some(owned) = slot.acquire(id, Phase::Idle, Phase::Retiring) else {
                continue;
            };
            self.idle.fetch_sub(1, Ordering::SeqCst);
            // Owned now: re-read, it may have been lent and returned since.
            let last_returned = slot.last_returned.load(Ordering::SeqCst);
            let reason = if slot.expires_at.load(Ordering::SeqCst) <= now {
                CloseReason::Expired
            } else if surplus && last_returned.saturating_add(max_idle) <= now {
                CloseReason::Idle
            } else if keepalive != OFF && last_returned.saturating_add(keepalive) <= now {
                bump(&self.counters.keepalive_pings, 1);
                actions.push(Action::Validate(self.to_validation(owned)));
                continue;
            } else {
                // Used meanwhile: keep it.
                actions.extend(
                    self.make_available(owned, last_returned)
                        .finish()
                        .map(|p| Action::Close(p, CloseReason::PoolClosed)),
                );
                continue;
            };
            let (payload, replacement) = self.retire_split(owned, reason);
            freed |= replacement.is_none();
            actions.extend(payload.map(|p| Action::Close(p, reason)));
            actions.extend(replacement.map(Action::Create));
        }
        self.push_actions(actions);
        if freed {
            self.after_capacity_change();
        }
        next.max(now.saturating_add(1_000_000))
    }

    /// Leases held past leak_timeout, as actions (see `Action::Leak`).
    fn find_leaks(&self, now: Nanos, next: &mut Nanos) -> Vec<Action<T>> {
        let timeout = self.leak_timeout.nanos();
        if timeout == OFF {
            return Vec::new();
        }
        let mut leaks = Vec::new();
        for (_, slot) in self.slots.iter() {
            if slot.phase() != Phase::InUse {
                continue;
            }
            let lent_at = slot.lent_at.load(Ordering::Relaxed);
            let due = lent_at.saturating_add(timeout);
            if due > now {
                *next = (*next).min(due);
                continue;
            }
            // Look again one leak_timeout from now, while the lease lasts.
            *next = (*next).min(now.saturating_add(timeout));
            // The first sweep to see this lease overdue reports it.
            let first = slot.leak_reported.swap(lent_at, Ordering::Relaxed) != lent_at;
            if first {
                bump(&self.counters.leaks_detected, 1);
            }
            leaks.push(Action::Leak {
                key: slot.key.load(Ordering::Relaxed),
                held: Duration::from_nanos(now.saturating_sub(lent_at)),
                first,
            });
        }
        leaks
    }

    /// A lent connection was found unreachable by its borrower (garbage
    /// collected without being returned): take it back as broken.
    pub fn reclaim(
        &self,
        key: usize,
        verify: impl FnOnce(&T) -> bool,
    ) -> Result<Option<T>, PoolError> {
        bump(&self.counters.leaks_reclaimed, 1);
        self.discard(key, verify, crate::Loss::ReturnedBroken)
    }

    /// Block until at least min_size connections are idle, the pool
    /// closes, or `slice` passes. Returns whether the pool is ready.
    pub fn wait_ready(&self, slice: Duration) -> bool {
        let ready = || self.available() >= self.min_size() || !self.is_open();
        if ready() {
            return self.is_open();
        }
        self.ready_watchers.fetch_add(1, Ordering::SeqCst);
        let guard = lock(&self.ready);
        if !ready() {
            #[cfg(not(loom))]
            {
                let _unused = self
                    .ready_cond
                    .wait_timeout(guard, slice)
                    .unwrap_or_else(|p| p.into_inner());
            }
            #[cfg(loom)]
            {
                let _ = slice;
                drop(guard);
            }
        }
        self.ready_watchers.fetch_sub(1, Ordering::SeqCst);
        self.is_open() && self.available() >= self.min_size()
    }
}
