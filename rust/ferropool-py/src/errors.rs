//! Core errors to Python exceptions, one variant to one type.
//!
//! The exception classes live in `ferropool.errors` (they subclass
//! psycopg's OperationalError); they are looked up once, lazily, because
//! that module imports this one.

use ferropool_core::{ConfigError, PoolError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static POOL_CLOSED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static POOL_TIMEOUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TOO_MANY_REQUESTS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn raise(py: Python<'_>, cell: &'static PyOnceLock<Py<PyType>>, name: &str, msg: String) -> PyErr {
    match cell.import(py, "ferropool.errors", name) {
        Ok(ty) => PyErr::from_type(ty.clone(), msg),
        Err(e) => e,
    }
}

pub fn to_py(py: Python<'_>, err: PoolError) -> PyErr {
    let msg = err.to_string();
    match err {
        PoolError::Closed { .. } | PoolError::NotOpen { .. } | PoolError::CannotReopen { .. } => {
            raise(py, &POOL_CLOSED, "PoolClosed", msg)
        }
        PoolError::Timeout { .. } => raise(py, &POOL_TIMEOUT, "PoolTimeout", msg),
        PoolError::TooManyRequests { .. } => raise(py, &TOO_MANY_REQUESTS, "TooManyRequests", msg),
        PoolError::NotLent { .. } => PyValueError::new_err(msg),
    }
}

/// A wait begun in the parent process, finished in a fork child after the
/// core restarted: nothing can come of it (`PoolTimeout`, as for any wait
/// that got nothing).
pub fn forked_wait(py: Python<'_>, name: &str) -> PyErr {
    let msg = format!(
        "couldn't get a connection: the wait began in the parent process before fork(), \
         and the pool '{name}' started over in this child process"
    );
    raise(py, &POOL_TIMEOUT, "PoolTimeout", msg)
}

pub fn config_to_py(err: ConfigError) -> PyErr {
    PyValueError::new_err(err.to_string())
}
