//! The pool: slots, the FIFO waiter queue, capacity and lifetime rules.
//!
//! Fast path: a checkout scans the slots for an `Idle` one and takes it with
//! one compare-and-set; a return moves it back with one store. Neither takes
//! a lock. The waiter queue has a mutex, entered only when there is nothing
//! idle (or someone is already queued, so newcomers do not overtake them).
//!
//! The lost-wakeup race between "a borrower finds nothing and queues" and
//! "a connection is returned and finds nobody queued" is closed Dekker
//! style: the borrower increments `waiting` then scans again; the returner
//! publishes `Idle` then reads `waiting` (all SeqCst). At least one of them
//! sees the other; if the returner does, it re-runs the handoff under the
//! queue lock (`rescue`).
//!
//! Capacity: `size` counts every slot that is `Reserved`, `Idle`, `InUse`,
//! `Returning`, `Handoff` or `Retiring` on its way to a replacement, and a
//! slot is only reserved after `size` was incremented below `capacity`, so
//! idle + in use + being created never exceeds max_size.
//!
//! Lock order: `queue` before `maint`; `ready` is a leaf. Waiters are woken
//! only after every lock is released.

mod borrow;
mod give_back;
mod lifecycle;

use std::collections::VecDeque;
use std::time::Duration;

use crate::clock::{saturating_nanos, Clock, Nanos};
use crate::config::{capacity_of, positive, positive_or_off, validate_sizes, Config, ConfigError};
use crate::error::PoolError;
use crate::histogram::{HistogramSnapshot, Totals};
use crate::jitter::Jitter;
use crate::maintenance::{Action, MaintState, Ticket};
use crate::slot::{Owned, Phase, SlotId};
use crate::stats::{Counters, Stats};
use crate::sync::{lock, Arc, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use crate::table::SlotTable;
use crate::waiter::Waiter;

pub use borrow::{Begin, Lent, Served, WaitTicket};
pub use give_back::{Checkin, Loss};
pub use lifecycle::{ConnectFailed, Connected};

/// The pool's phase: `NEW` until `open()`, `OPEN`, then `CLOSING` for good
/// once `close()` began (requests refused, returns closed).
const NEW: usize = 0;
const OPEN: usize = 1;
const CLOSING: usize = 2;

/// Added to `waiting` while the pool is paused, so the fast path's single
/// `waiting != 0` test also sends requests to the queue during a pause.
const PAUSE_BIAS: usize = 1 << 40;

/// An optional duration setting that is off (`None`): the one sentinel for
/// all of them. It is also "never" on the timeline, so a comparison with a
/// setting that is off can only come out as "not due".
const OFF: Nanos = crate::clock::NEVER;

/// An optional duration setting, readable without a lock: nanoseconds, or
/// [`OFF`]. (A duration of 584 years or more also reads as off.)
#[derive(Debug)]
struct OptionalNanos(AtomicU64);

impl OptionalNanos {
    fn new(d: Option<Duration>) -> Self {
        Self(AtomicU64::new(d.map_or(OFF, saturating_nanos)))
    }

    /// The raw value, [`OFF`] when off.
    #[inline]
    fn nanos(&self) -> Nanos {
        self.0.load(Ordering::Relaxed)
    }

    fn get(&self) -> Option<Duration> {
        let n = self.nanos();
        (n != OFF).then(|| Duration::from_nanos(n))
    }

    fn set(&self, d: Option<Duration>) {
        self.0
            .store(d.map_or(OFF, saturating_nanos), Ordering::Relaxed);
    }
}

/// A value alone on its cache line, so that writing it (the checkout
/// cursor) does not evict the read-mostly fields next to it from other
/// cores' caches.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

/// A connection pool core holding payloads of type `T` (connections).
pub struct Pool<T> {
    name: String,
    clock: Clock,
    jitter: Jitter,
    slots: SlotTable<T>,
    phase: AtomicUsize,
    /// Idle + in use + being created (+ retiring towards a replacement).
    size: AtomicUsize,
    /// Slots `Idle`, or about to be (incremented before the store).
    idle: AtomicUsize,
    /// Slots `Reserved`: connections being opened or waiting to retry.
    creating: AtomicUsize,
    /// Requests in the waiter queue (equal to its length outside the lock),
    /// plus `PAUSE_BIAS` while paused.
    waiting: AtomicUsize,
    min_size: AtomicUsize,
    max_size: AtomicUsize,
    max_waiting: AtomicUsize,
    max_lifetime_ns: AtomicU64,
    max_idle_ns: AtomicU64,
    reconnect_timeout_ns: AtomicU64,
    max_uses: AtomicU64,
    /// Idle time after which a checkout polls the socket.
    liveness_bypass: OptionalNanos,
    /// Idle time after which a connection is pinged.
    keepalive_interval: OptionalNanos,
    /// Lease time after which a lease is reported as a leak.
    leak_timeout: OptionalNanos,
    lifetime_jitter: f64,
    max_connecting: usize,
    null: bool,
    lifo: bool,
    /// Where the next checkout starts looking for an idle slot (unless
    /// `lifo`): one past the slot lent last. A hint, not a claim: racing
    /// checkouts may start at the same slot, and the compare-and-set on the
    /// slot decides.
    cursor: Padded<AtomicUsize>,
    drain_generation: AtomicU64,
    /// Connections opened successfully so far: a connect failure's backoff
    /// starts over once this moved since its run of failures began.
    connect_successes: AtomicU64,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    maint: Mutex<MaintState<T>>,
    maint_cond: Condvar,
    /// Signalled when connections become available, for `wait_ready`.
    ready: Mutex<()>,
    ready_cond: Condvar,
    ready_watchers: AtomicUsize,
    counters: Counters,
    /// The slots' tallies as of the last resets (see `slot::Tally`).
    tally_base: Mutex<TallyBase>,
    /// Hang-up watch for idle connections (not for null pools); its thread
    /// and descriptors exist only while the pool is open.
    hangup: Option<crate::hangup::HangupWatch>,
    last_connect_error: Mutex<Option<String>>,
}

/// The slots' tallies as of the last `stats(reset)` (requests, usage) and
/// the last `histograms(reset)` (usage): what those report is what was
/// tallied since.
#[derive(Debug, Default)]
struct TallyBase {
    requests: u64,
    usage_ns: u64,
    usage_time: Totals,
}

impl<T: Send> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("stats", &self.stats(false))
            .finish_non_exhaustive()
    }
}

impl<T: Send> Pool<T> {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let clock = Clock::new();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed)
            ^ (&clock as *const Clock as u64);
        Ok(Self {
            name: config.name.clone(),
            clock,
            jitter: Jitter::new(seed),
            slots: SlotTable::new(),
            phase: AtomicUsize::new(NEW),
            size: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            creating: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            min_size: AtomicUsize::new(config.min_size),
            max_size: AtomicUsize::new(config.capacity()),
            max_waiting: AtomicUsize::new(config.max_waiting),
            max_lifetime_ns: AtomicU64::new(saturating_nanos(config.max_lifetime)),
            max_idle_ns: AtomicU64::new(saturating_nanos(config.max_idle)),
            reconnect_timeout_ns: AtomicU64::new(saturating_nanos(config.reconnect_timeout)),
            max_uses: AtomicU64::new(config.max_uses),
            liveness_bypass: OptionalNanos::new(config.liveness_bypass),
            keepalive_interval: OptionalNanos::new(config.keepalive_interval),
            leak_timeout: OptionalNanos::new(config.leak_timeout),
            lifetime_jitter: config.lifetime_jitter,
            max_connecting: config.max_connecting,
            null: config.null,
            lifo: config.lifo,
            cursor: Padded(AtomicUsize::new(0)),
            drain_generation: AtomicU64::new(0),
            connect_successes: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
            maint: Mutex::new(MaintState::default()),
            maint_cond: Condvar::new(),
            ready: Mutex::new(()),
            ready_cond: Condvar::new(),
            ready_watchers: AtomicUsize::new(0),
            counters: Counters::default(),
            tally_base: Mutex::new(TallyBase::default()),
            hangup: (!config.null).then(crate::hangup::HangupWatch::new),
            last_connect_error: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn is_open(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == OPEN
    }

    /// Whether `close()` has begun (for good): requests are refused and
    /// returned connections closed. Not the opposite of `is_open`, which is
    /// also false before `open()`.
    pub fn is_closing(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == CLOSING
    }

    /// True once `open()` was called, even if the pool is closed since.
    pub fn was_opened(&self) -> bool {
        self.phase.load(Ordering::SeqCst) != NEW
    }

    pub fn min_size(&self) -> usize {
        self.min_size.load(Ordering::SeqCst)
    }

    /// max_size as configured (0 means no bound, for null pools).
    pub fn max_size(&self) -> usize {
        let cap = self.max_size.load(Ordering::SeqCst);
        if cap == crate::config::MAX_POOL_SIZE && self.null {
            0
        } else {
            cap
        }
    }

    fn capacity(&self) -> usize {
        self.max_size.load(Ordering::SeqCst)
    }

    pub fn max_waiting(&self) -> usize {
        self.max_waiting.load(Ordering::Relaxed)
    }

    pub fn set_max_waiting(&self, n: usize) {
        self.max_waiting.store(n, Ordering::Relaxed);
    }

    pub fn max_lifetime(&self) -> Duration {
        Duration::from_nanos(self.max_lifetime_ns.load(Ordering::Relaxed))
    }

    /// Applies to connections opened from now on.
    pub fn set_max_lifetime(&self, d: Duration) -> Result<(), ConfigError> {
        let d = positive("max_lifetime", d)?;
        self.max_lifetime_ns
            .store(saturating_nanos(d), Ordering::Relaxed);
        Ok(())
    }

    pub fn max_idle(&self) -> Duration {
        Duration::from_nanos(self.max_idle_ns.load(Ordering::Relaxed))
    }

    pub fn set_max_idle(&self, d: Duration) -> Result<(), ConfigError> {
        let d = positive("max_idle", d)?;
        self.max_idle_ns
            .store(saturating_nanos(d), Ordering::Relaxed);
        Ok(())
    }

    pub fn reconnect_timeout(&self) -> Duration {
        Duration::from_nanos(self.reconnect_timeout_ns.load(Ordering::Relaxed))
    }

    pub fn set_reconnect_timeout(&self, d: Duration) {
        self.reconnect_timeout_ns
            .store(saturating_nanos(d), Ordering::Relaxed);
    }

    pub fn max_uses(&self) -> u64 {
        self.max_uses.load(Ordering::Relaxed)
    }

    pub fn set_max_uses(&self, n: u64) {
        self.max_uses.store(n, Ordering::Relaxed);
    }

    /// The liveness bypass window (None: liveness checks are off; zero:
    /// poll at every checkout).
    pub fn liveness_bypass(&self) -> Option<Duration> {
        self.liveness_bypass.get()
    }

    pub fn set_liveness_bypass(&self, d: Option<Duration>) {
        self.liveness_bypass.set(d);
    }

    pub fn keepalive_interval(&self) -> Option<Duration> {
        self.keepalive_interval.get()
    }

    pub fn set_keepalive_interval(&self, d: Option<Duration>) -> Result<(), ConfigError> {
        self.keepalive_interval
            .set(positive_or_off("keepalive_interval", d)?);
        self.kick_sweep();
        Ok(())
    }

    pub fn leak_timeout(&self) -> Option<Duration> {
        self.leak_timeout.get()
    }

    pub fn set_leak_timeout(&self, d: Option<Duration>) -> Result<(), ConfigError> {
        self.leak_timeout.set(positive_or_off("leak_timeout", d)?);
        self.kick_sweep();
        Ok(())
    }

    pub fn max_connecting(&self) -> usize {
        self.max_connecting
    }

    pub fn lifo(&self) -> bool {
        self.lifo
    }

    pub fn is_null(&self) -> bool {
        self.null
    }

    /// How the hang-up watch learns of hang-ups (None: null pools have no
    /// watch), and whether its thread runs (only while the pool is open).
    pub fn hangup_watch(&self) -> Option<(crate::hangup::Backend, bool)> {
        self.hangup.as_ref().map(|h| (h.backend(), h.is_running()))
    }

    /// The pool's settings as they are now (sizes after `resize`, lifetimes
    /// as last set): what a pool built in its place starts from.
    pub fn config(&self) -> Config {
        Config {
            name: self.name.clone(),
            min_size: self.min_size(),
            max_size: self.max_size(),
            max_waiting: self.max_waiting(),
            max_lifetime: self.max_lifetime(),
            lifetime_jitter: self.lifetime_jitter,
            max_idle: self.max_idle(),
            reconnect_timeout: self.reconnect_timeout(),
            max_uses: self.max_uses(),
            max_connecting: self.max_connecting,
            lifo: self.lifo,
            null: self.null,
            liveness_bypass: self.liveness_bypass(),
            keepalive_interval: self.keepalive_interval(),
            leak_timeout: self.leak_timeout(),
        }
    }

    /// Whether new checkouts are held back (`pause()`).
    pub fn is_paused(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) >= PAUSE_BIAS
    }

    /// Counters and measures; with `reset`, counters restart from zero.
    pub fn stats(&self, reset: bool) -> Stats {
        let mut s = Stats::default();
        self.counters.read_into(&mut s, reset);
        let (requests, usage) = self.tallies();
        {
            let mut base = lock(&self.tally_base);
            s.requests_num += requests.wrapping_sub(base.requests);
            s.usage_ms = usage.sum_ns.wrapping_sub(base.usage_ns) / 1_000_000;
            if reset {
                base.requests = requests;
                base.usage_ns = usage.sum_ns;
            }
        }
        s.pool_min = self.min_size() as u64;
        s.pool_max = self.max_size() as u64;
        s.pool_size = self.size.load(Ordering::SeqCst) as u64;
        s.pool_available = self.available() as u64;
        s.requests_waiting = self.queued() as u64;
        s.paused = u64::from(self.is_paused());
        s
    }

    /// Histograms of wait, usage and connection times, as (name, snapshot);
    /// with `reset`, they restart from zero.
    pub fn histograms(&self, reset: bool) -> [(&'static str, HistogramSnapshot); 3] {
        [
            ("wait_time", self.counters.wait_time.snapshot(reset)),
            ("usage_time", self.usage_histogram(reset)),
            ("connect_time", self.counters.connect_time.snapshot(reset)),
        ]
    }

    /// The slots' tallies added up: fast-path requests, and usage.
    fn tallies(&self) -> (u64, Totals) {
        let mut requests = 0u64;
        let mut usage = Totals::default();
        for (_, slot) in self.slots.iter() {
            requests = requests.wrapping_add(slot.tally.requests.load(Ordering::Relaxed));
            usage.add(&slot.tally.usage.totals(false));
        }
        (requests, usage)
    }

    fn usage_histogram(&self, reset: bool) -> HistogramSnapshot {
        let (_, usage) = self.tallies();
        let mut base = lock(&self.tally_base);
        let since = usage.since(&base.usage_time);
        if reset {
            base.usage_time = usage;
        }
        since.snapshot()
    }

    /// Connections idle in the pool right now.
    pub fn available(&self) -> usize {
        self.slots
            .iter()
            .filter(|(_, s)| s.phase() == Phase::Idle)
            .count()
    }

    /// Idle + in use + being created.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::SeqCst)
    }

    /// Requests waiting in the queue.
    pub fn waiting(&self) -> usize {
        self.queued()
    }

    /// Requests in the queue, without the pause bias.
    #[inline]
    fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst) % PAUSE_BIAS
    }

    /// Whether a returned connection may be granted to a queued request:
    /// someone waits and the pool is not paused.
    #[inline]
    fn grantable(&self) -> bool {
        let w = self.waiting.load(Ordering::SeqCst);
        w > 0 && w < PAUSE_BIAS
    }

    /// The last error met opening a connection, if any since the last
    /// success.
    pub fn last_connect_error(&self) -> Option<String> {
        lock(&self.last_connect_error).clone()
    }

    /// Connections retired and queued for a worker to close.
    pub fn queued_closes(&self) -> usize {
        lock(&self.maint)
            .ready
            .iter()
            .filter(|a| matches!(a, Action::Close(..)))
            .count()
    }

    /// Count of slots in each phase, for tests and diagnostics.
    pub fn phase_counts(&self) -> [usize; 8] {
        let mut counts = [0usize; 8];
        for (_, s) in self.slots.iter() {
            counts[s.phase() as usize] += 1;
        }
        counts
    }

    // ---- helpers shared by the submodules ----

    fn check_open(&self) -> Result<(), PoolError> {
        match self.phase.load(Ordering::SeqCst) {
            OPEN => Ok(()),
            NEW => Err(PoolError::NotOpen {
                name: self.name.clone(),
            }),
            _ => Err(PoolError::Closed {
                name: self.name.clone(),
            }),
        }
    }

    /// Take `size` for one more connection if below capacity.
    fn take_capacity(&self) -> bool {
        let cap = self.capacity();
        self.size
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    /// Reserve a slot for a new connection, counted in `size` and
    /// `creating`. `None` when the pool is at capacity.
    fn reserve(&self) -> Option<Ticket> {
        if !self.take_capacity() {
            return None;
        }
        self.creating.fetch_add(1, Ordering::SeqCst);
        let mut owned = self.free_slot();
        owned.with(|d| d.attempt = None);
        let id = owned.id();
        Some(Ticket {
            id,
            word: owned.park(),
        })
    }

    /// A `Free` slot moved to `Reserved`; capacity is already taken.
    fn free_slot(&self) -> Owned<'_, T> {
        loop {
            for (id, slot) in self.slots.iter() {
                if let Some(o) = slot.acquire(id, Phase::Free, Phase::Reserved) {
                    return o;
                }
            }
            if let Some((id, slot)) = self.slots.extend() {
                if let Some(o) = slot.acquire(id, Phase::Free, Phase::Reserved) {
                    return o;
                }
            }
            // Capacity was taken first, so a free slot exists (or the table
            // can grow); another reserver got the one we saw. Try again.
            std::hint::spin_loop();
        }
    }

    fn slot_of(&self, id: SlotId) -> &crate::slot::Slot<T> {
        self.slots
            .get(id)
            .expect("slot ids come from the table and are never removed")
    }

    /// Take an owned slot's connection out, forgetting its key and socket
    /// (the fd number may soon belong to another file).
    pub(super) fn empty_slot(owned: &mut Owned<'_, T>) -> Option<T> {
        let payload = owned.with(|d| {
            d.attempt = None;
            d.payload.take()
        });
        owned.slot().key.store(0, Ordering::SeqCst);
        owned.slot().socket.store(0, Ordering::SeqCst);
        payload
    }

    /// Empty an owned slot and give its capacity back.
    fn release_slot(&self, mut owned: Owned<'_, T>) -> Option<T> {
        let payload = Self::empty_slot(&mut owned);
        owned.publish(Phase::Free);
        self.size.fetch_sub(1, Ordering::SeqCst);
        payload
    }

    fn push_actions(&self, actions: impl IntoIterator<Item = Action<T>>) {
        let mut m = lock(&self.maint);
        let mut n = 0;
        for a in actions {
            m.push(a);
            n += 1;
        }
        drop(m);
        for _ in 0..n {
            self.maint_cond.notify_one();
        }
    }

    fn notify_ready(&self) {
        if self.ready_watchers.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.ready);
            self.ready_cond.notify_all();
        }
    }

    /// Validate and apply new sizes; see `lifecycle::resize`.
    fn set_sizes(&self, min_size: usize, max_size: usize) -> Result<(), ConfigError> {
        validate_sizes(min_size, max_size, self.null)?;
        self.min_size.store(min_size, Ordering::SeqCst);
        self.max_size.store(capacity_of(max_size), Ordering::SeqCst);
        Ok(())
    }

    fn now(&self) -> Nanos {
        self.clock.now()
    }
}
