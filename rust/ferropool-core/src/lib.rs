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
//! Invariants (tested with loom and property tests):
//! - a connection is lent to at most one borrower at a time;
//! - idle + in use + being created <= max_size at every instant;
//! - a returned or new connection goes to the oldest live waiter first, and
//!   a waiter that gave up never swallows one;
//! - a connection past its lifetime, drain generation or use limit is never
//!   lent: expiry is checked at checkout and at return.

pub mod backoff;
pub mod clock;
pub mod config;
pub mod error;
mod hangup;
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

pub use config::{Config, ConfigError};
pub use error::{NotLent, PoolError};
pub use maintenance::{Action, CloseReason, Ticket};
pub use pool::{Begin, Checkin, ConnectFailed, Connected, Lent, Loss, Pool, WaitTicket};
pub use slot::SlotId;
pub use stats::Stats;
