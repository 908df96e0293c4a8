//! One switch between std's synchronisation primitives and loom's models.
//!
//! Everything in the core that another thread can observe goes through this
//! module, so `RUSTFLAGS="--cfg loom" cargo test --release loom` explores the
//! interleavings of the real code rather than of a copy.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub(crate) use std::sync::atomic::Ordering;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;

/// The store-load barrier of a Dekker handshake: a store before it and a
/// load after it cannot be reordered, on either side of the handshake.
///
/// Every store and load of the core's handshakes is SeqCst, and under C11
/// (Rust's model) SeqCst operations fall in one total order that agrees
/// with program order: that is the barrier already, and on x86 the SeqCst
/// store is a locked exchange, a full barrier in hardware. An extra fence
/// would cost an `mfence` on every return. Loom, however, models SeqCst
/// accesses as AcqRel, which lets a store and a later load pass each
/// other; under loom an explicit SeqCst fence restores the C11 guarantee,
/// so that the models check the handshake the real code relies on.
#[inline(always)]
pub(crate) fn store_load_barrier() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// Lock a mutex, ignoring poisoning: the core never panics while holding a
/// lock on purpose, and a poisoned queue is still structurally valid (every
/// critical section leaves it consistent before it can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(loom)]
    {
        m.lock().unwrap()
    }
    #[cfg(not(loom))]
    {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An `UnsafeCell` with loom's closure API, so that loom can check that the
/// slot payload is never touched by two threads at once.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(data: T) -> Self {
        Self(std::cell::UnsafeCell::new(data))
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
