//! The `Core` class: one ferropool-core pool holding Python connections.
//!
//! A `Core` holds its pool behind a pointer so that a fork child can start
//! over in place (`restart_after_fork`): the pool inherited from the parent
//! is leaked, never used, closed or freed again, since its connections are
//! the parent's sessions and its locks may be held by threads that do not
//! exist in the child. Tickets and waits remember which pool (epoch) they
//! came from, and one from an inherited pool is refused without touching
//! either pool. This module must never free a pool other than in `Drop`.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ferropool_core::config::{as_seconds, positive_seconds, seconds};

use ferropool_core::{
    Begin, Checkin, Config, ConnectFailed, Connected, Failure, Loss, Pool, Served, WaitTicket,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{self, config_to_py, to_py};
use crate::status::Status;
use crate::wait;

/// A connection as the core holds it: the object and, for a psycopg
/// connection, the reader of its transaction status, made once when the
/// pool gets the connection (psycopg sets `pgconn` once, in the
/// constructor): a fast return reads the status through it, sparing two
/// attribute lookups on every return.
pub(crate) struct Conn {
    obj: Py<PyAny>,
    status: Option<Status>,
}

impl Conn {
    fn new(conn: &Bound<'_, PyAny>) -> Self {
        Self {
            obj: conn.clone().unbind(),
            status: Status::of(conn),
        }
    }

    /// A new reference to the connection, for its borrower.
    #[inline]
    pub(crate) fn lend(&self, py: Python<'_>) -> Py<PyAny> {
        self.obj.clone_ref(py)
    }

    /// Whether this is the connection `ptr` points to.
    #[inline]
    pub(crate) fn is(&self, ptr: *mut pyo3::ffi::PyObject) -> bool {
        self.obj.as_ptr() == ptr
    }

    /// Whether the connection is out of any transaction; false for a
    /// connection whose status cannot be read (not psycopg's).
    #[inline]
    pub(crate) fn is_idle(&self, py: Python<'_>) -> bool {
        self.status.as_ref().is_some_and(|s| s.is_idle(py))
    }
}

impl<'py> IntoPyObject<'py> for Conn {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(self.obj.into_bound(py))
    }
}

/// A claim on a reserved slot: open a connection and report it back.
#[pyclass(frozen, module = "ferropool._core", name = "Ticket")]
pub struct Ticket {
    inner: ferropool_core::Ticket,
    /// The epoch of the pool it belongs to (see `Core::epoch`).
    epoch: u64,
}

impl Ticket {
    fn new(py: Python<'_>, inner: ferropool_core::Ticket, epoch: u64) -> PyResult<Py<Self>> {
        Py::new(py, Self { inner, epoch })
    }
}

#[pymethods]
impl Ticket {
    fn __repr__(&self) -> String {
        format!("<Ticket slot={}>", self.inner.id)
    }
}

/// What a maintenance worker must do (`Action.kind`).
#[pyclass(
    frozen,
    eq,
    eq_int,
    hash,
    module = "ferropool._core",
    name = "ActionKind"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// Open a connection on `ticket`; report with connected() or
    /// connect_failed().
    #[pyo3(name = "CREATE")]
    Create,
    /// Close `conn` (no longer counted) for `reason`.
    #[pyo3(name = "CLOSE")]
    Close,
    /// Ping the connection of `ticket` (claim_validation()), then give it
    /// back with checkin() or discard().
    #[pyo3(name = "VALIDATE")]
    Validate,
    /// A lease outlived leak_timeout: see `leak`.
    #[pyo3(name = "LEAK")]
    Leak,
    /// The pool closed and nothing is left to do: the worker exits.
    #[pyo3(name = "STOP")]
    Stop,
}

impl ActionKind {
    fn as_str(self) -> &'static str {
        match self {
            ActionKind::Create => "CREATE",
            ActionKind::Close => "CLOSE",
            ActionKind::Validate => "VALIDATE",
            ActionKind::Leak => "LEAK",
            ActionKind::Stop => "STOP",
        }
    }
}

/// A lease held past leak_timeout (`Action.leak`).
#[pyclass(frozen, module = "ferropool._core", name = "Leak")]
pub struct Leak {
    /// The connection's key: id() of the connection object.
    #[pyo3(get)]
    key: usize,
    /// Seconds the lease has been held.
    #[pyo3(get)]
    held: f64,
    /// True the first time this lease is reported (log it then); later
    /// sweeps repeat the action while the lease lasts, so a connection
    /// whose borrower dropped it is noticed.
    #[pyo3(get)]
    first: bool,
}

#[pymethods]
impl Leak {
    fn __repr__(&self) -> String {
        format!(
            "<Leak key={:#x} held={:.3} first={}>",
            self.key,
            self.held,
            if self.first { "True" } else { "False" }
        )
    }
}

/// One piece of maintenance work, from next_action(): `kind` says what,
/// and which of `ticket` (CREATE, VALIDATE), `conn` and `reason` (CLOSE)
/// or `leak` (LEAK) is set.
#[pyclass(frozen, module = "ferropool._core", name = "Action")]
pub struct Action {
    #[pyo3(get)]
    kind: ActionKind,
    #[pyo3(get)]
    ticket: Option<Py<Ticket>>,
    #[pyo3(get)]
    conn: Option<Py<PyAny>>,
    reason: Option<&'static str>,
    #[pyo3(get)]
    leak: Option<Py<Leak>>,
}

impl Action {
    fn new(py: Python<'_>, action: ferropool_core::Action<Conn>, epoch: u64) -> PyResult<Self> {
        let mut out = Self {
            kind: ActionKind::Stop,
            ticket: None,
            conn: None,
            reason: None,
            leak: None,
        };
        match action {
            ferropool_core::Action::Create(t) => {
                out.kind = ActionKind::Create;
                out.ticket = Some(Ticket::new(py, t, epoch)?);
            }
            ferropool_core::Action::Validate(t) => {
                out.kind = ActionKind::Validate;
                out.ticket = Some(Ticket::new(py, t, epoch)?);
            }
            ferropool_core::Action::Close(conn, reason) => {
                out.kind = ActionKind::Close;
                out.conn = Some(conn.obj);
                out.reason = Some(reason.as_str());
            }
            ferropool_core::Action::Leak { key, held, first } => {
                out.kind = ActionKind::Leak;
                let leak = Leak {
                    key,
                    held: held.as_secs_f64(),
                    first,
                };
                out.leak = Some(Py::new(py, leak)?);
            }
            ferropool_core::Action::Stop => {}
        }
        Ok(out)
    }
}

#[pymethods]
impl Action {
    /// Why `conn` is closed (CLOSE): "idle", "expired", "max_uses",
    /// "drained", "resized", "broken" or "pool closed".
    #[getter]
    fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    fn __repr__(&self) -> String {
        let kind = self.kind.as_str();
        match (&self.ticket, self.reason, &self.leak) {
            (Some(t), _, _) => format!("<Action {kind} slot={}>", t.get().inner.id),
            (_, Some(r), _) => format!("<Action {kind} reason={r:?}>"),
            (_, _, Some(l)) => format!("<Action {kind} {}>", l.get().__repr__()),
            _ => format!("<Action {kind}>"),
        }
    }
}

/// What follows a failed connection attempt (connect_failed()).
#[pyclass(
    frozen,
    eq,
    eq_int,
    hash,
    module = "ferropool._core",
    name = "ConnectOutcome"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectOutcome {
    /// Another attempt is scheduled (after a backoff).
    #[pyo3(name = "RETRY")]
    Retry,
    /// Attempts failed for reconnect_timeout: the capacity is given back;
    /// call the reconnect_failed hook. The pool keeps trying to reach
    /// min_size.
    #[pyo3(name = "GAVE_UP")]
    GaveUp,
    /// The pool closed (or the ticket is stale): nothing more is tried.
    #[pyo3(name = "CLOSED")]
    Closed,
    /// The pool was resized below what was reserved: no retry needed.
    #[pyo3(name = "NOT_NEEDED")]
    NotNeeded,
}

/// A queued request whose end is signalled by a callback (for event loops)
/// instead of a blocked thread. The holder calls `finish()` once signalled
/// or once its own deadline passed, or `cancel()` if it stops waiting.
#[pyclass(frozen, module = "ferropool._core", name = "Waiting")]
pub struct Waiting {
    core: Py<Core>,
    ticket: Mutex<Option<WaitTicket>>,
    /// The epoch of the pool the wait is queued in.
    epoch: u64,
}

impl Waiting {
    fn take(&self) -> Option<WaitTicket> {
        self.ticket.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The pool the wait is queued in, unless the core restarted after a
    /// fork since: then the wait belongs to the inherited pool, which must
    /// not be touched, and nothing will ever come of it.
    fn pool(&self) -> Option<&Pool<Conn>> {
        let core = self.core.get();
        (core.epoch.load(Ordering::Relaxed) == self.epoch).then(|| core.pool())
    }
}

#[pymethods]
impl Waiting {
    /// The granted connection, or (null pools) a Ticket to open one on;
    /// PoolTimeout if none came in time (the wait is abandoned now if still
    /// pending); PoolClosed if the pool closed.
    fn finish(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let ticket = self
            .take()
            .ok_or_else(|| PyValueError::new_err("this wait is already finished"))?;
        let Some(pool) = self.pool() else {
            return Err(errors::forked_wait(py, self.core.get().pool().name()));
        };
        let epoch = self.epoch;
        let served = pool
            .finish_wait(ticket, |c| c.lend(py))
            .map_err(|e| to_py(py, e))?;
        to_python(py, served, epoch)
    }

    /// Stop waiting. A connection granted meanwhile goes back to the pool;
    /// if the pool closed meanwhile it is returned for the caller to close.
    fn cancel(&self) -> Option<Conn> {
        let ticket = self.take()?;
        self.pool()?.cancel_wait(ticket)
    }

    /// Whether the wait was resolved (granted, closed or abandoned; a wait
    /// begun before the core restarted after a fork counts as resolved).
    #[getter]
    fn resolved(&self) -> bool {
        self.pool().is_none()
            || self
                .ticket
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_none_or(|t| t.waiter().is_resolved())
    }
}

/// One pool's core. Payloads are connection objects; a returned connection
/// is found by its address, so nothing is stored on the object.
#[pyclass(frozen, module = "ferropool._core", name = "Core")]
pub struct Core {
    /// The pool, from `Box::into_raw`, never null. Replaced only by
    /// `restart_after_fork` (in a fork child, where the calling thread is
    /// the only one), which leaks the pool it replaces; freed only in
    /// `Drop`. One load on the hot path, as cheap as a field.
    pool: AtomicPtr<Pool<Conn>>,
    /// How many times the pool was replaced after a fork: the tickets and
    /// waits of an inherited pool carry an older epoch and are refused.
    epoch: AtomicU64,
    /// The process the current pool was made in.
    pid: AtomicU32,
    /// Which borrows need the Python slow path (`SLOW_CHECKOUT`,
    /// `SLOW_CHECKIN`), set by the runner's `update_fast_path` and read by
    /// the hot path (`lender.rs`) without a Python attribute lookup.
    fast_path: AtomicU8,
}

/// A checkout must go through the runner: a check, an on_checkout hook,
/// leak tracking or an implicit open is configured.
pub(crate) const SLOW_CHECKOUT: u8 = 1;
/// A return must go through the runner: a reset, an on_checkin hook or
/// leak tracking is configured.
pub(crate) const SLOW_CHECKIN: u8 = 2;

impl Core {
    fn with_pool(pool: Pool<Conn>) -> Self {
        Self {
            pool: AtomicPtr::new(Box::into_raw(Box::new(pool))),
            epoch: AtomicU64::new(0),
            pid: AtomicU32::new(std::process::id()),
            fast_path: AtomicU8::new(0),
        }
    }

    /// The `SLOW_*` bits: which borrows need the Python slow path.
    #[inline(always)]
    pub(crate) fn slow_bits(&self) -> u8 {
        // Relaxed: a flag only picks a path; one read just before a change
        // takes the path the settings had a moment earlier, as a Python
        // attribute read would.
        self.fast_path.load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub(crate) fn pool(&self) -> &Pool<Conn> {
        // SAFETY: `pool` always holds a pointer from `Box::into_raw` (set in
        // `with_pool` and `restart_after_fork`), never null. The pool it
        // points to is freed only in `Drop`, which takes `&mut self`, so no
        // borrow of `self` (and no reference derived from one) outlives it.
        // A pool replaced by `restart_after_fork` is leaked, never freed, so
        // a reference to it taken before the swap stays valid forever.
        // Acquire pairs with the swap's release: the new pool is fully
        // built before any thread sees its address.
        unsafe { &*self.pool.load(Ordering::Acquire) }
    }

    #[inline]
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The core ticket inside `ticket`, unless it comes from a pool this
    /// core replaced after a fork (whose slots must never be claimed: the
    /// same slot id and word may exist in the new pool).
    #[inline]
    fn current(&self, ticket: &Ticket) -> Option<ferropool_core::Ticket> {
        (ticket.epoch == self.epoch()).then_some(ticket.inner)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let pool = *self.pool.get_mut();
        // SAFETY: the pointer comes from `Box::into_raw` and was never freed
        // (pools replaced after a fork are leaked, not freed, and this one
        // is the current one); `&mut self` proves nothing else borrows it.
        drop(unsafe { Box::from_raw(pool) });
    }
}

fn size_arg(param: &'static str, value: i64) -> PyResult<usize> {
    usize::try_from(value)
        .map_err(|_| PyValueError::new_err(format!("{param} cannot be negative, got {value}")))
}

#[inline]
pub(crate) fn key(conn: &Bound<'_, PyAny>) -> usize {
    conn.as_ptr() as usize
}

/// What a finished wait got, for Python: the connection, or (null pools)
/// a Ticket to open one on.
fn to_python(py: Python<'_>, served: Served<Py<PyAny>>, epoch: u64) -> PyResult<Py<PyAny>> {
    match served {
        Served::Lent(l) => Ok(l.value),
        Served::Connect(t) => Ok(Ticket::new(py, t, epoch)?.into_any()),
    }
}

/// A wait's timeout in seconds: NaN refused, negative as zero, huge as
/// "forever".
fn wait_timeout(timeout: f64) -> PyResult<Duration> {
    if timeout.is_nan() {
        return Err(PyValueError::new_err("timeout must be a number, got nan"));
    }
    Ok(Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX))
}

fn optional_seconds(param: &'static str, value: Option<f64>) -> PyResult<Option<Duration>> {
    value
        .map(|v| seconds(param, v).map_err(config_to_py))
        .transpose()
}

#[pymethods]
impl Core {
    /// Every setting is a required keyword: the defaults are the Python
    /// layer's (psycopg_pool's), written there once.
    #[new]
    #[pyo3(signature = (
        *, name, min_size, max_size, max_waiting, max_lifetime, max_idle,
        reconnect_timeout, null, max_uses, max_connecting, lifo, lifetime_jitter,
        liveness_bypass, keepalive_interval, leak_timeout
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        min_size: i64,
        max_size: i64,
        max_waiting: i64,
        max_lifetime: f64,
        max_idle: f64,
        reconnect_timeout: f64,
        null: bool,
        max_uses: i64,
        max_connecting: i64,
        lifo: bool,
        lifetime_jitter: f64,
        liveness_bypass: Option<f64>,
        keepalive_interval: Option<f64>,
        leak_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let config = Config {
            name,
            min_size: size_arg("min_size", min_size)?,
            max_size: size_arg("max_size", max_size)?,
            max_waiting: size_arg("max_waiting", max_waiting)?,
            max_lifetime: positive_seconds("max_lifetime", max_lifetime).map_err(config_to_py)?,
            lifetime_jitter,
            max_idle: positive_seconds("max_idle", max_idle).map_err(config_to_py)?,
            reconnect_timeout: seconds("reconnect_timeout", reconnect_timeout)
                .map_err(config_to_py)?,
            max_uses: size_arg("max_uses", max_uses)? as u64,
            max_connecting: size_arg("max_connecting", max_connecting)?,
            lifo,
            null,
            liveness_bypass: optional_seconds("liveness_bypass", liveness_bypass)?,
            keepalive_interval: optional_seconds("keepalive_interval", keepalive_interval)?,
            leak_timeout: optional_seconds("leak_timeout", leak_timeout)?,
        };
        // The first pool of a process calibrates the slot clock (a few ms
        // asleep): not with the GIL held.
        py.detach(ferropool_core::clock::calibrate);
        let pool = Pool::new(config).map_err(config_to_py)?;
        Ok(Self::with_pool(pool))
    }

    /// In a fork child: start over with an empty pool built from the
    /// current settings (sizes after resize(), lifetimes as last set), open
    /// if the inherited one was. The inherited pool and every connection it
    /// holds are kept alive forever, untouched (nothing is sent on, closed
    /// or freed from them: they are the parent's sessions); their sockets
    /// are returned for the caller to point at /dev/null. Tickets and waits
    /// from before are refused from now on. RuntimeError in the process
    /// that made the pool.
    fn restart_after_fork(&self) -> PyResult<Vec<i32>> {
        let pid = std::process::id();
        if self.pid.load(Ordering::Relaxed) == pid {
            return Err(PyRuntimeError::new_err(
                "restart_after_fork() is for a child process after fork(); \
                 this core's pool was made in this process",
            ));
        }
        let (next, sockets) = self.pool().successor_after_fork().map_err(config_to_py)?;
        // Right after fork() the calling thread is the child's only thread,
        // so nothing reads `pool` meanwhile; the inherited pool is leaked
        // (see `pool()`), never freed.
        let _inherited = self
            .pool
            .swap(Box::into_raw(Box::new(next)), Ordering::AcqRel);
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Relaxed);
        Ok(sockets)
    }

    /// Start accepting requests; min_size connections are queued for the
    /// workers to open.
    fn open(&self, py: Python<'_>) -> PyResult<()> {
        self.pool().open().map_err(|e| to_py(py, e))
    }

    /// Which borrows take the runner's slow path: a checkout when
    /// `slow_checkout` (a check, an on_checkout hook, leak tracking, an
    /// implicit open), a return when `slow_checkin` (a reset, an on_checkin
    /// hook, leak tracking). Read by the pools' hot path in this module.
    fn set_fast_path(&self, slow_checkout: bool, slow_checkin: bool) {
        let bits = if slow_checkout { SLOW_CHECKOUT } else { 0 }
            | if slow_checkin { SLOW_CHECKIN } else { 0 };
        self.fast_path.store(bits, Ordering::Relaxed);
    }

    /// The flags set by set_fast_path(), as (slow_checkout, slow_checkin).
    #[getter]
    fn fast_path(&self) -> (bool, bool) {
        let bits = self.slow_bits();
        (bits & SLOW_CHECKOUT != 0, bits & SLOW_CHECKIN != 0)
    }

    /// Fast path: an idle connection, or None if the request must wait.
    #[inline]
    fn checkout(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.pool().checkout(|c| c.lend(py)) {
            Ok(lent) => Ok(lent.map(|l| l.value)),
            Err(e) => Err(to_py(py, e)),
        }
    }

    /// Slow path: wait up to `timeout` seconds in FIFO order, with the GIL
    /// released. Returns a connection, or a Ticket (null pools with spare
    /// capacity, found at once or granted while waiting: open the
    /// connection yourself).
    fn wait(&self, py: Python<'_>, timeout: f64) -> PyResult<Py<PyAny>> {
        let timeout = wait_timeout(timeout)?;
        let begin = self
            .pool()
            .begin_wait(timeout, None, |c| c.lend(py))
            .map_err(|e| to_py(py, e))?;
        let ticket = match begin {
            Begin::Ready(lent) => return Ok(lent.value),
            Begin::Connect(t) => return Ok(Ticket::new(py, t, self.epoch())?.into_any()),
            Begin::Wait(ticket) => ticket,
        };
        let slice = wait::slice(py)?;
        loop {
            let resolved = py.detach(|| self.pool().park(&ticket, slice));
            // Signals are checked before a grant is taken too: a signal
            // that arrived during the park (Rust's condvar retries on
            // EINTR, so the park was not cut short) would otherwise run its
            // handler in Python code once this call returned a connection,
            // and a KeyboardInterrupt there loses the connection.
            if let Err(e) = py.check_signals() {
                // Interrupted: a connection (or null-pool capacity) granted
                // meanwhile goes back to the pool or the next waiter; if the
                // pool closed meanwhile, the connection is closed here.
                if let Some(conn) = self.pool().cancel_wait(ticket) {
                    let _ignored = conn.obj.call_method0(py, "close");
                }
                return Err(e);
            }
            if resolved || self.pool().expired(&ticket) {
                break;
            }
        }
        let served = self
            .pool()
            .finish_wait(ticket, |c| c.lend(py))
            .map_err(|e| to_py(py, e))?;
        to_python(py, served, self.epoch())
    }

    /// Slow path for event loops: queue in FIFO order without blocking.
    /// Returns a connection (one became available), a Ticket (null pools
    /// with spare capacity), or a Waiting handle; `waker()` is called, from
    /// any thread, once the wait is resolved.
    fn wait_async(slf: &Bound<'_, Self>, timeout: f64, waker: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let timeout = wait_timeout(timeout)?;
        let on_wake: ferropool_core::waiter::WakeFn = Box::new(move || {
            Python::attach(|py| {
                if let Err(e) = waker.call0(py) {
                    e.write_unraisable(py, None);
                }
            });
        });
        let core = slf.get();
        let epoch = core.epoch();
        let begin = core
            .pool()
            .begin_wait(timeout, Some(on_wake), |c| c.lend(py))
            .map_err(|e| to_py(py, e))?;
        match begin {
            Begin::Ready(lent) => Ok(lent.value),
            Begin::Connect(t) => Ok(Ticket::new(py, t, epoch)?.into_any()),
            Begin::Wait(ticket) => Ok(Py::new(
                py,
                Waiting {
                    core: slf.clone().unbind(),
                    ticket: Mutex::new(Some(ticket)),
                    epoch,
                },
            )?
            .into_any()),
        }
    }

    /// Give back a lent connection. None if kept (idle or handed to a
    /// waiter); otherwise the reason it must be closed by the caller.
    #[inline]
    fn checkin(&self, py: Python<'_>, conn: &Bound<'_, PyAny>) -> PyResult<Option<&'static str>> {
        let ptr = conn.as_ptr();
        match self.pool().checkin(key(conn), |p| p.is(ptr)) {
            Ok(Checkin::Kept) => Ok(None),
            Ok(Checkin::Close(_, reason)) => Ok(Some(reason.as_str())),
            Err(e) => Err(to_py(py, e)),
        }
    }

    /// Give back a broken connection (the caller closes it). `returned`:
    /// broken by its borrower (returns_bad) rather than found broken by the
    /// pool (connections_lost).
    fn discard(&self, py: Python<'_>, conn: &Bound<'_, PyAny>, returned: bool) -> PyResult<()> {
        let ptr = conn.as_ptr();
        let loss = if returned {
            Loss::ReturnedBroken
        } else {
            Loss::FoundBroken
        };
        self.pool()
            .discard(key(conn), |p| p.is(ptr), loss)
            .map(drop)
            .map_err(|e| to_py(py, e))
    }

    /// The next maintenance action, waiting up to `timeout` seconds with
    /// the GIL released; None on timeout.
    fn next_action(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<Action>> {
        let timeout = seconds("timeout", timeout).map_err(config_to_py)?;
        let epoch = self.epoch();
        py.detach(|| self.pool().next_action(timeout))
            .map(|a| Action::new(py, a, epoch))
            .transpose()
    }

    /// Take the connection of a validation ticket (lent to the pool itself)
    /// to ping it; give it back with checkin() or discard(conn, False).
    /// None if the ticket is stale.
    fn claim_validation(&self, py: Python<'_>, ticket: &Ticket) -> Option<Py<PyAny>> {
        self.pool()
            .claim_validation(self.current(ticket)?, |c| c.lend(py))
            .map(|l| l.value)
    }

    /// Take back a lent connection that its borrower lost (garbage) without
    /// returning it; counted as reclaimed. The caller closes it.
    fn reclaim(&self, py: Python<'_>, conn: &Bound<'_, PyAny>) -> PyResult<()> {
        let ptr = conn.as_ptr();
        self.pool()
            .reclaim(key(conn), |p| p.is(ptr))
            .map(drop)
            .map_err(|e| to_py(py, e))
    }

    /// Like failover(), seen on `conn`: None (nothing done) if `conn`
    /// predates the last drain, so one server event drains once.
    fn failover_from(&self, conn: &Bound<'_, PyAny>) -> Option<Vec<Conn>> {
        self.pool().failover_from(key(conn))
    }

    /// Hold back new checkouts until resume().
    fn pause(&self) {
        self.pool().pause();
    }

    /// Serve the requests queued during a pause, oldest first.
    fn resume(&self) {
        self.pool().resume();
    }

    /// Report a connection opened on `ticket`. False if the pool no longer
    /// wants it (closed, or the ticket is from before a fork): the caller
    /// closes it.
    #[pyo3(signature = (ticket, conn, took, fd = None))]
    fn connected(
        &self,
        ticket: &Ticket,
        conn: &Bound<'_, PyAny>,
        took: f64,
        fd: Option<i32>,
    ) -> bool {
        let Some(ticket) = self.current(ticket) else {
            return false;
        };
        let fd = fd.unwrap_or(-1);
        let took = Duration::try_from_secs_f64(took.max(0.0)).unwrap_or_default();
        matches!(
            self.pool()
                .connected(ticket, Conn::new(conn), key(conn), fd, took),
            Connected::Added
        )
    }

    /// Report a failed attempt on `ticket` (`message` free of secrets):
    /// what follows it. `permanent`: the error will come back however soon
    /// the attempt is retried (a wrong password, an unknown role or
    /// database, an invalid option), so retries back off from 1 s to 60 s
    /// instead of from 50 ms to 400 ms.
    #[pyo3(signature = (ticket, message, permanent = false))]
    fn connect_failed(&self, ticket: &Ticket, message: String, permanent: bool) -> ConnectOutcome {
        let Some(ticket) = self.current(ticket) else {
            return ConnectOutcome::Closed;
        };
        let failure = if permanent {
            Failure::Permanent
        } else {
            Failure::Transient
        };
        match self.pool().connect_failed(ticket, message, failure) {
            ConnectFailed::Retry(_) => ConnectOutcome::Retry,
            ConnectFailed::GaveUp => ConnectOutcome::GaveUp,
            ConnectFailed::Closed => ConnectOutcome::Closed,
            ConnectFailed::NotNeeded => ConnectOutcome::NotNeeded,
        }
    }

    /// Null pools: the caller opened `conn` on its ticket; lend it to the
    /// caller. False if the pool closed meanwhile, or the ticket is from
    /// before a fork (the caller closes it).
    #[pyo3(signature = (ticket, conn, took, fd = None))]
    fn connected_to_caller(
        &self,
        ticket: &Ticket,
        conn: &Bound<'_, PyAny>,
        took: f64,
        fd: Option<i32>,
    ) -> bool {
        let Some(ticket) = self.current(ticket) else {
            return false;
        };
        let fd = fd.unwrap_or(-1);
        let took = Duration::try_from_secs_f64(took.max(0.0)).unwrap_or_default();
        self.pool()
            .connected_to_caller(ticket, Conn::new(conn), key(conn), fd, took, |_| ())
            .is_ok()
    }

    /// Null pools: the caller failed to connect on its ticket.
    fn connect_failed_caller(&self, ticket: &Ticket, message: String) {
        if let Some(ticket) = self.current(ticket) {
            self.pool().connect_failed_caller(ticket, message);
        }
    }

    /// Close the pool; returns the idle connections for the caller to close.
    fn close(&self) -> Vec<Conn> {
        self.pool().close()
    }

    /// Retire every connection opened so far; returns the idle ones to close.
    fn drain(&self) -> Vec<Conn> {
        self.pool().drain()
    }

    /// Change the sizes; returns idle connections above max_size to close.
    fn resize(&self, min_size: i64, max_size: i64) -> PyResult<Vec<Conn>> {
        let min_size = size_arg("min_size", min_size)?;
        let max_size = size_arg("max_size", max_size)?;
        self.pool().resize(min_size, max_size).map_err(config_to_py)
    }

    /// Lend every idle connection to the pool itself for a health check;
    /// return each with checkin() or discard(conn, returned=False).
    fn take_for_check(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        self.pool()
            .take_for_check(|c| c.lend(py))
            .into_iter()
            .map(|l| l.value)
            .collect()
    }

    /// Wait until min_size connections are idle (True), or the pool closed
    /// or `timeout` passed (False).
    fn wait_ready(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds("timeout", timeout).map_err(config_to_py)?;
        let deadline = self.pool().clock().wait_now().after(timeout);
        let slice = wait::slice(py)?;
        loop {
            let left = self.pool().clock().wait_left(deadline);
            let ready = py.detach(|| self.pool().wait_ready(slice.min(left)));
            if ready {
                return Ok(true);
            }
            if !self.pool().is_open() || left.is_zero() {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// Counters and measures with psycopg_pool's keys; `reset` zeroes the
    /// counters after reading them.
    #[pyo3(signature = (reset = false))]
    fn stats<'py>(&self, py: Python<'py>, reset: bool) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.pool().stats(reset).entries() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Histograms of wait, usage and connection times: name -> (upper
    /// bounds in seconds, cumulative counts with +Inf last, sum in seconds).
    #[pyo3(signature = (reset = false))]
    fn histograms<'py>(&self, py: Python<'py>, reset: bool) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, h) in self.pool().histograms(reset) {
            d.set_item(name, (h.bounds, h.cumulative, h.sum))?;
        }
        Ok(d)
    }

    #[getter]
    fn name(&self) -> &str {
        self.pool().name()
    }

    #[getter]
    fn min_size(&self) -> usize {
        self.pool().min_size()
    }

    #[getter]
    fn max_size(&self) -> usize {
        self.pool().max_size()
    }

    /// Idle + in use + being opened.
    #[getter]
    fn size(&self) -> usize {
        self.pool().size()
    }

    /// Idle connections.
    #[getter]
    fn available(&self) -> usize {
        self.pool().available()
    }

    /// Requests waiting for a connection.
    #[getter]
    fn waiting(&self) -> usize {
        self.pool().waiting()
    }

    /// Open: accepting requests (False before open() and after close()).
    #[getter]
    fn is_open(&self) -> bool {
        self.pool().is_open()
    }

    /// open() was called, even if the pool is closed since.
    #[getter]
    fn was_opened(&self) -> bool {
        self.pool().was_opened()
    }

    #[getter]
    fn get_max_waiting(&self) -> usize {
        self.pool().max_waiting()
    }

    #[setter]
    fn set_max_waiting(&self, value: i64) -> PyResult<()> {
        self.pool().set_max_waiting(size_arg("max_waiting", value)?);
        Ok(())
    }

    #[getter]
    fn get_max_lifetime(&self) -> f64 {
        as_seconds(self.pool().max_lifetime())
    }

    #[setter]
    fn set_max_lifetime(&self, value: f64) -> PyResult<()> {
        let d = positive_seconds("max_lifetime", value).map_err(config_to_py)?;
        self.pool().set_max_lifetime(d).map_err(config_to_py)
    }

    #[getter]
    fn get_max_idle(&self) -> f64 {
        as_seconds(self.pool().max_idle())
    }

    #[setter]
    fn set_max_idle(&self, value: f64) -> PyResult<()> {
        let d = positive_seconds("max_idle", value).map_err(config_to_py)?;
        self.pool().set_max_idle(d).map_err(config_to_py)
    }

    #[getter]
    fn get_reconnect_timeout(&self) -> f64 {
        as_seconds(self.pool().reconnect_timeout())
    }

    #[setter]
    fn set_reconnect_timeout(&self, value: f64) -> PyResult<()> {
        let d = seconds("reconnect_timeout", value).map_err(config_to_py)?;
        self.pool().set_reconnect_timeout(d);
        Ok(())
    }

    #[getter]
    fn get_max_uses(&self) -> u64 {
        self.pool().max_uses()
    }

    #[setter]
    fn set_max_uses(&self, value: i64) -> PyResult<()> {
        self.pool()
            .set_max_uses(size_arg("max_uses", value)? as u64);
        Ok(())
    }

    #[getter]
    fn get_liveness_bypass(&self) -> Option<f64> {
        self.pool().liveness_bypass().map(as_seconds)
    }

    #[setter]
    fn set_liveness_bypass(&self, value: Option<f64>) -> PyResult<()> {
        self.pool()
            .set_liveness_bypass(optional_seconds("liveness_bypass", value)?);
        Ok(())
    }

    #[getter]
    fn get_keepalive_interval(&self) -> Option<f64> {
        self.pool().keepalive_interval().map(as_seconds)
    }

    #[setter]
    fn set_keepalive_interval(&self, value: Option<f64>) -> PyResult<()> {
        self.pool()
            .set_keepalive_interval(optional_seconds("keepalive_interval", value)?)
            .map_err(config_to_py)
    }

    #[getter]
    fn get_leak_timeout(&self) -> Option<f64> {
        self.pool().leak_timeout().map(as_seconds)
    }

    #[setter]
    fn set_leak_timeout(&self, value: Option<f64>) -> PyResult<()> {
        self.pool()
            .set_leak_timeout(optional_seconds("leak_timeout", value)?)
            .map_err(config_to_py)
    }

    #[getter]
    fn max_connecting(&self) -> usize {
        self.pool().max_connecting()
    }

    /// Checkout order: True reuses the connection returned last; False
    /// spreads use over the idle connections.
    #[getter]
    fn lifo(&self) -> bool {
        self.pool().lifo()
    }

    #[getter]
    fn paused(&self) -> bool {
        self.pool().is_paused()
    }

    /// The last error met opening a connection since the last success.
    #[getter]
    fn last_connect_error(&self) -> Option<String> {
        self.pool().last_connect_error()
    }

    fn __repr__(&self) -> String {
        format!("<ferropool._core.Core {:?}>", self.pool().name())
    }
}
