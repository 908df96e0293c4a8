//! Blocking waits with the GIL released.
//!
//! A blocked thread must not hold the GIL, yet Ctrl-C must still stop it:
//! Python runs signal handlers in the main thread only, so the main thread
//! waits in short slices and runs the handlers between them; other threads
//! wait in one go (nothing to check for them, and no wake-ups to pay for).
//! Which thread is the main one is asked each time, never cached: after a
//! fork() from another thread, the forking thread is the child's main
//! thread, and a cached answer would leave Ctrl-C unheard for a long slice.
//! Nothing here may block with the GIL held.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// How often the main thread looks for signals while it waits.
pub const SIGNAL_SLICE: Duration = Duration::from_millis(50);
/// Slice for other threads: long, only bounded so a lost wake-up (there
/// should be none) cannot hang forever.
pub const THREAD_SLICE: Duration = Duration::from_secs(5);

/// The `threading` module (a module object is the same across fork).
static THREADING: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

pub fn slice(py: Python<'_>) -> PyResult<Duration> {
    let threading = THREADING
        .get_or_try_init(py, || py.import("threading").map(Bound::unbind))?
        .bind(py);
    let main = threading.call_method0("main_thread")?.getattr("ident")?;
    let current = threading.call_method0("get_ident")?;
    Ok(if current.eq(main)? {
        SIGNAL_SLICE
    } else {
        THREAD_SLICE
    })
}
