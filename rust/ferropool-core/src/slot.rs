//! A slot holds one connection and its bookkeeping, guarded by a state word.
//!
//! The state word packs a phase (3 bits) and a sequence number that grows on
//! every transition. Every transition is a compare-and-set from the exact
//! word last seen, so a given word can be left only once: the thread whose
//! compare-and-set succeeds owns the slot until it publishes the next phase.
//! That ownership, represented by [`Owned`], is the only way to reach the
//! payload and bookkeeping in the `UnsafeCell`; it is what makes the
//! `unsafe` below sound.
//!
//! Phases and who owns the slot in each:
//! - `Free`: nobody; not counted in the pool size.
//! - `Reserved`: the holder of the creation ticket (a connection is being
//!   opened, or its attempt is waiting for a retry).
//! - `Idle`: nobody; any borrower may take it with a compare-and-set.
//! - `InUse`: the borrower. It holds no word, only the payload's key, so it
//!   gets ownership back through the `InUse -> Returning` compare-and-set.
//! - `Returning`, `Retiring`: the thread processing the return or removal.
//! - `Handoff`: the waiter the connection was granted to.
//! - `Validating`: the holder of a validation ticket (a worker pinging a
//!   connection whose socket looked suspect, or due for a keepalive).

use crate::histogram::Histogram;
use crate::sync::{AtomicU64, AtomicUsize, Ordering, UnsafeCell};

pub type SlotId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Free = 0,
    Reserved = 1,
    Idle = 2,
    InUse = 3,
    Returning = 4,
    Handoff = 5,
    Retiring = 6,
    /// Being validated (liveness or keepalive ping): owned by the ticket
    /// holder, like `Reserved`.
    Validating = 7,
}

const PHASE_BITS: u32 = 3;
const PHASE_MASK: u64 = (1 << PHASE_BITS) - 1;

#[inline]
pub fn phase_of(word: u64) -> Phase {
    match word & PHASE_MASK {
        0 => Phase::Free,
        1 => Phase::Reserved,
        2 => Phase::Idle,
        3 => Phase::InUse,
        4 => Phase::Returning,
        5 => Phase::Handoff,
        6 => Phase::Retiring,
        _ => Phase::Validating,
    }
}

/// The word that follows `word` when moving to `phase`.
#[inline]
fn successor(word: u64, phase: Phase) -> u64 {
    ((word >> PHASE_BITS).wrapping_add(1) << PHASE_BITS) | phase as u64
}

/// Bookkeeping only the owner of a slot reads or writes.
#[derive(Debug)]
pub struct SlotData<T> {
    pub payload: Option<T>,
    pub uses: u64,
    /// The connection's registration with the hang-up watch (0: not
    /// watched).
    pub hup_token: u64,
    /// Reconnection attempt state while `Reserved`.
    pub attempt: Option<crate::backoff::Backoff>,
}

impl<T> SlotData<T> {
    const fn empty() -> Self {
        Self {
            payload: None,
            uses: 0,
            hup_token: 0,
            attempt: None,
        }
    }
}

#[derive(Debug)]
pub struct Slot<T> {
    state: AtomicU64,
    /// The front end's identity for the payload (an object address), so a
    /// returned connection finds its slot without any attribute on it.
    /// Zero when empty. Readable by anyone; written only by the owner.
    pub(crate) key: AtomicUsize,
    /// When the connection last went idle; read by the idle sweep before it
    /// decides to take the slot.
    pub(crate) last_returned: AtomicU64,
    /// When the connection must be retired; read by the idle sweep.
    pub(crate) expires_at: AtomicU64,
    /// When the connection was last lent, `NEVER` for the pool's own
    /// leases (checks, pings); read by the leak sweep.
    pub(crate) lent_at: AtomicU64,
    /// The `lent_at` of the lease already reported as a leak, so a lease
    /// is reported once.
    pub(crate) leak_reported: AtomicU64,
    /// The connection's socket + 1 (0: none), readable without owning the
    /// slot: after fork(), the child neutralises inherited sockets.
    pub(crate) socket: AtomicU64,
    /// The drain generation the connection was opened in; readable without
    /// owning the slot (failover decides from it whether to drain again).
    pub(crate) generation: AtomicU64,
    /// The use counters of the borrows of this slot (see `Tally`).
    pub(crate) tally: Tally,
    data: UnsafeCell<SlotData<T>>,
}

/// What a borrow counts, kept per slot rather than in the pool's shared
/// counters: only the slot's owner writes it, so an update is a plain load
/// and store where a shared counter takes a locked add, on a cache line
/// every borrowing thread writes. An owner's writes reach the next owner
/// through the state word's compare-and-set, like the rest of the slot.
/// `Pool::stats` and `Pool::histograms` add the slots up; their resets
/// keep a baseline instead of zeroing what an owner may be writing.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests served from this slot on the fast path (`checkout`).
    pub(crate) requests: AtomicU64,
    /// Time lent to borrowers.
    pub(crate) usage: Histogram,
}

impl Tally {
    /// One more request served (by the slot's owner).
    #[inline]
    pub(crate) fn count_request(&self) {
        let n = self.requests.load(Ordering::Relaxed) + 1;
        self.requests.store(n, Ordering::Relaxed);
    }
}

// SAFETY: `data` is only reached through `Owned`, which exists only for the
// single thread whose compare-and-set moved the state word into an
// exclusive phase (see the module comment); every other field is atomic.
// Payloads cross threads, hence `T: Send`.
unsafe impl<T: Send> Sync for Slot<T> {}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Slot<T> {
    pub fn new() -> Self {
        Self {
            state: AtomicU64::new(Phase::Free as u64),
            key: AtomicUsize::new(0),
            last_returned: AtomicU64::new(0),
            expires_at: AtomicU64::new(0),
            lent_at: AtomicU64::new(0),
            leak_reported: AtomicU64::new(0),
            socket: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            tally: Tally::default(),
            data: UnsafeCell::new(SlotData::empty()),
        }
    }

    /// The connection's socket, if known.
    #[inline]
    pub(crate) fn fd(&self) -> Option<i32> {
        let v = self.socket.load(Ordering::SeqCst);
        v.checked_sub(1).and_then(|fd| i32::try_from(fd).ok())
    }

    #[inline]
    pub fn word(&self) -> u64 {
        self.state.load(Ordering::SeqCst)
    }

    #[inline]
    pub fn phase(&self) -> Phase {
        phase_of(self.word())
    }

    /// Move from `from` to the exclusive phase `to` if the slot is in `from`.
    #[inline]
    pub fn acquire(&self, id: SlotId, from: Phase, to: Phase) -> Option<Owned<'_, T>> {
        let word = self.state.load(Ordering::SeqCst);
        if phase_of(word) != from {
            return None;
        }
        self.claim(id, word, to)
    }

    /// Move from exactly `word` to `to`; `None` if the slot has moved on.
    /// Tickets and grants use this: their word proves who may continue.
    #[inline]
    pub fn claim(&self, id: SlotId, word: u64, to: Phase) -> Option<Owned<'_, T>> {
        let next = successor(word, to);
        self.state
            .compare_exchange(word, next, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| Owned {
                slot: self,
                id,
                word: next,
            })
    }
}

/// Exclusive ownership of a slot, obtained by a successful compare-and-set.
/// Dropping it without publishing a phase would strand the slot, so every
/// path ends in [`Owned::publish`], [`Owned::lend`] or [`Owned::park`].
#[must_use = "an owned slot must be published, lent or granted"]
#[derive(Debug)]
pub struct Owned<'a, T> {
    slot: &'a Slot<T>,
    id: SlotId,
    word: u64,
}

impl<'a, T> Owned<'a, T> {
    #[inline]
    pub fn id(&self) -> SlotId {
        self.id
    }

    #[inline]
    pub fn slot(&self) -> &'a Slot<T> {
        self.slot
    }

    /// Read or write the slot's bookkeeping and payload.
    #[inline]
    pub fn with<R>(&mut self, f: impl FnOnce(&mut SlotData<T>) -> R) -> R {
        self.slot.data.with_mut(|p| {
            // SAFETY: `self` exists only for the thread that won the
            // compare-and-set into the current exclusive phase, and `&mut
            // self` prevents two live borrows through it; no other thread
            // touches `data` until `publish`/`lend` releases the slot with a
            // SeqCst store that orders these writes before the next owner's
            // successful compare-and-set.
            f(unsafe { &mut *p })
        })
    }

    /// Read the slot's bookkeeping and payload.
    #[inline]
    pub fn read<R>(&self, f: impl FnOnce(&SlotData<T>) -> R) -> R {
        self.slot.data.with_mut(|p| {
            // SAFETY: as in `with`: only the owner reaches `data`, and a
            // shared borrow of the token cannot coexist with the `&mut`
            // borrow that `with` needs.
            f(unsafe { &*p })
        })
    }

    /// Move to another phase while keeping ownership (e.g. `Returning` to
    /// `Handoff`). Nobody else can move the word meanwhile.
    #[inline]
    pub fn advance(&mut self, to: Phase) {
        let next = successor(self.word, to);
        self.slot.state.store(next, Ordering::SeqCst);
        self.word = next;
    }

    /// The current word, for a grant or a ticket that will claim it later.
    #[inline]
    pub fn word(&self) -> u64 {
        self.word
    }

    /// Publish a non-exclusive phase (`Idle`, `Free`), giving up ownership.
    #[inline]
    pub fn publish(self, to: Phase) {
        self.slot
            .state
            .store(successor(self.word, to), Ordering::SeqCst);
    }

    /// Hand the slot to a borrower (`InUse`), giving up ownership. A
    /// release store where `publish` is SeqCst: the borrower's return takes
    /// the slot back with a compare-and-set that synchronises with it, and
    /// no handshake pairs this store with a load (returns, requests and
    /// `close()` meet on `Idle`, `waiting` and the pool's phase). On x86 it
    /// is a plain move where a SeqCst store is a locked exchange, once per
    /// borrow.
    #[inline]
    pub fn lend(self) {
        self.slot
            .state
            .store(successor(self.word, Phase::InUse), Ordering::Release);
    }

    /// Give up ownership while staying in the current phase: the holder of
    /// the word (a ticket or a grant) claims it back later.
    #[inline]
    pub fn park(self) -> u64 {
        self.word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_is_left_only_once() {
        let slot: Slot<u32> = Slot::new();
        let a = slot.acquire(0, Phase::Free, Phase::Reserved).unwrap();
        let w = a.park();
        assert!(slot.acquire(0, Phase::Free, Phase::Reserved).is_none());
        let b = slot.claim(0, w, Phase::Reserved).unwrap();
        assert!(
            slot.claim(0, w, Phase::Reserved).is_none(),
            "stale word must not claim"
        );
        b.publish(Phase::Idle);
        assert_eq!(slot.phase(), Phase::Idle);
    }
}
