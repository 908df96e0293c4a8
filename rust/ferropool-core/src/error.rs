//! Errors a borrower can meet, one variant per Python exception type.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum PoolError {
    /// The pool was closed (maps to `PoolClosed`).
    Closed { name: String },
    /// `open()` on a pool that was closed (maps to `PoolClosed`).
    CannotReopen { name: String },
    /// The pool was never opened (maps to `PoolClosed`, as psycopg_pool).
    NotOpen { name: String },
    /// No connection within the deadline (maps to `PoolTimeout`).
    Timeout {
        waited: Duration,
        /// The last error met while opening connections, if any: the
        /// usual reason why nothing came.
        last_connect_error: Option<String>,
    },
    /// The waiting queue is full (maps to `TooManyRequests`).
    TooManyRequests { name: String, waiting: usize },
    /// A connection given back that this pool has not lent (maps to
    /// `ValueError`); the pool is left unchanged.
    NotLent { name: String, reason: NotLent },
}

/// Why a returned connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLent {
    /// The pool holds it but it is not lent out: returned twice.
    AlreadyReturned,
    /// The pool does not hold it at all.
    Unknown,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Closed { name } => write!(f, "the pool '{name}' is already closed"),
            PoolError::CannotReopen { name } => write!(
                f,
                "the pool '{name}' has already been opened/closed and cannot be reused"
            ),
            PoolError::NotOpen { name } => write!(f, "the pool '{name}' is not open yet"),
            PoolError::Timeout {
                waited,
                last_connect_error,
            } => {
                write!(
                    f,
                    "couldn't get a connection after {:.2} sec",
                    waited.as_secs_f64()
                )?;
                if let Some(e) = last_connect_error {
                    write!(f, "; last connection error: {e}")?;
                }
                Ok(())
            }
            PoolError::TooManyRequests { name, waiting } => {
                write!(
                    f,
                    "the pool '{name}' has already {waiting} requests waiting"
                )
            }
            PoolError::NotLent { name, reason } => match reason {
                NotLent::AlreadyReturned => write!(
                    f,
                    "can't return connection to pool '{name}': it was already returned"
                ),
                NotLent::Unknown => write!(
                    f,
                    "can't return connection to pool '{name}': it doesn't come from this pool"
                ),
            },
        }
    }
}

impl std::error::Error for PoolError {}
