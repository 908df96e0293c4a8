//! Blocking waits with the GIL released.
//!
//! A blocked thread must not hold the GIL, yet Ctrl-C must still stop it:
//! signals are delivered to the main thread only, so the main thread waits
//! in short slices and runs the signal handlers between them; other threads
//! wait in one go (nothing to check for them, and no wake-ups to pay for).

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// How often the main thread looks for signals while it waits.
pub const SIGNAL_SLICE: Duration = Duration::from_millis(50);
/// Slice for other threads: long, only bounded so a lost wake-up (there
/// should be none) cannot hang forever.
pub const THREAD_SLICE: Duration = Duration::from_secs(5);

static MAIN_THREAD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub fn slice(py: Python<'_>) -> PyResult<Duration> {
    let threading = py.import("threading")?;
    let main = MAIN_THREAD.get_or_try_init(py, || {
        threading.call_method0("main_thread").map(Bound::unbind)
    })?;
    let current = threading.call_method0("current_thread")?;
    Ok(if current.is(main.bind(py)) {
        SIGNAL_SLICE
    } else {
        THREAD_SLICE
    })
}
