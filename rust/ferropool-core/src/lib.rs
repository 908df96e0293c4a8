//! ferropool-core: the lock-free heart of a connection pool.
//!
//! The idea in one paragraph (after HikariCP's `ConcurrentBag`): connections
//! live in slots whose state changes only by compare-and-set. A borrower
//! scans the slots and takes the first idle one; a return stores it back.
//! Neither takes a lock. Only when nothing is idle does a request queue, in
//! FIFO order, behind a mutex; then every returned or newly opened
//! connection goes straight to the oldest request still waiting, through a
//! handshake that a request which timed out can never win.
//!
//! The core never opens, checks or closes a connection and never calls into
//! the front end (Python). It answers "here is a connection", "wait", "open
//! one on this ticket", "close this one", and the front end carries those
//! actions out. Capacity, lifetimes (max_lifetime with jitter, max_idle,
//! max_uses, drain generations) and psycopg_pool's counters are all kept
//! here.
//!
//! Glossary: one name per concept, the same in Rust and Python.
//! - **connection** (payload `T`): the front end's object; the core holds
//!   it, never looks inside. Its **key** (the object's address) finds its
//!   slot when it comes back.
//! - **slot**: one place in the table, holding at most one connection and
//!   its bookkeeping; its state word (phase + sequence) changes only by
//!   compare-and-set, and whoever wins owns the slot until it publishes.
//! - **borrower**: whoever holds a lent connection; **lease**: from the
//!   checkout that lends it to the return (`checkin`) or `discard`, timed
//!   for `usage_time` and watched for leaks (`leak_timeout`).
//! - **request**: one call to borrow; **waiter**: a request queued, FIFO,
//!   because nothing was idle. A **grant** hands a waiter a connection (or,
//!   in a null pool, capacity) through a one-shot handshake.
//! - **deadline**: when a wait gives up, computed once when it begins.
//! - **ticket**: a claim on a slot the core parked for the front end:
//!   open a connection in it (creation), or ping its connection
//!   (validation). The word in the ticket proves who may continue.
//! - **capacity**: max_size as a bound (`MAX_POOL_SIZE` for "no bound");
//!   **size** counts idle + in use + being created against it.
//! - **max_connecting**: connections opened at once to serve waiters.
//! - **retire**: take a connection out of service because it expired
//!   (max_lifetime with jitter, **drain generation**: a counter bumped by
//!   `drain`/`failover`, max_uses), broke, or is surplus; it is closed and,
//!   where the pool needs it, replaced in the same slot.
//! - **null pool**: keeps nothing idle; a request with capacity opens its
//!   own connection on a ticket, and a returned one goes to a waiter or is
//!   closed.
//! - **action**: work for the front end's workers (create, close,
//!   validate, leak report, stop), taken with `next_action`.
//! - **lifo**: checkout order; off (the default) spreads use over the idle
//!   connections, on reuses the one returned last.
//! - **off**: an optional duration that is `None` (Python `None`); inside,
//!   one sentinel for all of them.
//! - **open / closing**: `open()` starts the pool; `close()` moves it to
//!   the closing phase for good (`is_closing`). A pool never opened is
//!   neither.
//!
//! Invariants (tested with loom and property tests):
//! - a connection is lent to at most one borrower at a time;
//! - idle + in use + being created <= max_size at every instant;
//! - a returned or new connection goes to the oldest live waiter first, and
//!   a waiter that gave up never swallows one;
//! - a connection past its lifetime, drain generation or use limit is never
//!   lent: expiry is checked at checkout and at return;
//! - no request stays queued while the capacity it waits for is free (a
//!   null pool grants freed capacity to the oldest waiter).
//!
//! The core must never call into the front end, block while holding a
//! slot, or wake a waiter while holding a lock.

pub mod backoff;
pub mod clock;
pub mod config;
pub mod error;
pub mod hangup;
pub mod histogram;
mod jitter;
pub mod liveness;
pub mod maintenance;
mod pool;
mod slot;
mod stats;
pub(crate) mod sync;
mod table;
pub mod waiter;

pub use backoff::Failure;
pub use config::{Config, ConfigError};
pub use error::{NotLent, PoolError};
pub use maintenance::{Action, CloseReason, Ticket};
pub use pool::{Begin, Checkin, ConnectFailed, Connected, Lent, Loss, Pool, Served, WaitTicket};
pub use slot::SlotId;
pub use stats::Stats;
