//! The pools' hot path: getconn, putconn and the `connection()` blocks.
//!
//! `Lender` (sync) and `AsyncLender` are the native bases of
//! `ConnectionPool` and `AsyncConnectionPool`. A borrow of an idle
//! connection, and its return, is one call into Rust each way: the core's
//! checkout (or checkin), psycopg's `conn._pool` marker, and on return the
//! transaction status read from `conn.pgconn` (a C object; see `status`).
//! Everything else goes to the Python slow path, the pool's runner: waiting,
//! `check`, hooks, leak tracking, rollback, reset, closing, `close_returns`
//! bookkeeping, and a subclass's own getconn/putconn. What decides is read
//! from atomics (the core's `SLOW_*` bits, set by the runner's
//! `update_fast_path`; this object's `CLOSE_RETURNS` and `OVERRIDDEN`),
//! never from Python attributes.
//!
//! The slow path is the pool's own Python methods (`_getconn_slow`,
//! `_putconn_slow`, `_enter_block`, `_exit_block`) and the runner's: the
//! sync pool calls them and returns what they return; the async pool
//! returns their coroutine for the caller to await, or, when the fast path
//! did everything, an awaitable that is already done (`Ready`, in `ready`),
//! so an `async with pool.connection()` block needs no event-loop round
//! trip.
//!
//! A block (`Block`, `AsyncBlock`) serves one entry at a time: entering
//! takes it with a compare-and-set and exiting frees it, so a block shared
//! by two threads (or nested) is refused rather than lending one
//! connection to two borrowers.
//!
//! This module must never wait, call a user callback on the fast path, or
//! keep global state: everything lives on the pool and block objects, so
//! it is as safe without the GIL as with it.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};
use std::sync::OnceLock;

use ferropool_core::Checkin;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyNone, PyString, PyTuple, PyType};

use crate::errors::to_py;
use crate::pool::{key, Core, SLOW_CHECKIN, SLOW_CHECKOUT};
use crate::ready::ready;
use crate::status;

/// `close_returns` is set: a connection's close() gives it back, and a
/// block must notice (the Python slow path keeps that bookkeeping).
const CLOSE_RETURNS: u8 = 1;
/// The pool's class overrides getconn or putconn: a block calls them.
const OVERRIDDEN: u8 = 2;

/// What a pool shares with its blocks: its core, its runner, its flags.
struct Lending {
    core: OnceLock<Py<Core>>,
    runner: OnceLock<Py<PyAny>>,
    flags: AtomicU8,
    /// The awaitable an async block's fast exit returns: done at once.
    done: OnceLock<Py<PyAny>>,
}

/// What came of a borrow on the fast path.
enum Lend {
    /// Lent and marked.
    Lent(Py<PyAny>),
    /// Checked out (or not: None, the request must wait) but the runner
    /// must finish it (`runner.getconn(conn, None)`).
    Runner(Option<Py<PyAny>>),
    /// Nothing done: the pool's `_getconn_slow(timeout)` does it all.
    Slow,
}

/// What is left of a return the fast path could not finish (`give_back`
/// gives `None` when the connection is back in the pool, or handed to a
/// waiter); `finish_return` carries it out.
enum Unfinished {
    /// Lent by this pool, still marked, not idle: a transaction to end.
    /// A block's exit commits it (`_exit_block`); `finish_return` (putconn)
    /// unmarks it and goes on as `Slow`.
    Busy,
    /// Unmarked; the rest is the pool's `_putconn_slow(conn)`.
    Slow,
    /// The core retired it: the runner closes it for this reason.
    Retired(&'static str),
    /// The core did not lend it (lent before a fork): `runner.checkin`.
    NotLent,
}

impl Lending {
    fn new() -> Self {
        Self {
            core: OnceLock::new(),
            runner: OnceLock::new(),
            flags: AtomicU8::new(0),
            done: OnceLock::new(),
        }
    }

    #[inline(always)]
    fn flags(&self) -> u8 {
        // Relaxed: a flag only picks a path (see `Core::slow_bits`).
        self.flags.load(Ordering::Relaxed)
    }

    fn set_flag(&self, flag: u8, on: bool) {
        if on {
            self.flags.fetch_or(flag, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!flag, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn core(&self) -> PyResult<&Core> {
        match self.core.get() {
            Some(core) => Ok(core.get()),
            None => Err(unbound()),
        }
    }

    fn runner<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyAny>> {
        match self.runner.get() {
            Some(runner) => Ok(runner.bind(py)),
            None => Err(unbound()),
        }
    }

    fn bind(
        &self,
        py: Python<'_>,
        core: Py<Core>,
        runner: Py<PyAny>,
        overridden: bool,
    ) -> PyResult<()> {
        if self.core.set(core).is_err() || self.runner.set(runner).is_err() {
            return Err(PyRuntimeError::new_err(
                "this pool is already bound to its core",
            ));
        }
        let _ = self.done.set(ready(py, None)?);
        self.set_flag(OVERRIDDEN, overridden);
        Ok(())
    }

    /// The fast path of getconn(timeout): see `Lend`.
    #[inline]
    fn lend(&self, pool: &Bound<'_, PyAny>, timeout: &Bound<'_, PyAny>) -> PyResult<Lend> {
        let py = pool.py();
        if !timeout.is_none() {
            // The timeout is checked (and used, if it comes to waiting) by
            // the slow path.
            return Ok(Lend::Slow);
        }
        let core = self.core()?;
        let lent = core
            .pool()
            .checkout(|c| c.lend(py))
            .map_err(|e| to_py(py, e))?;
        let Some(lent) = lent else {
            return Ok(Lend::Runner(None));
        };
        let conn = lent.value;
        if core.slow_bits() & SLOW_CHECKOUT != 0 {
            return Ok(Lend::Runner(Some(conn)));
        }
        // psycopg reads `_pool`: `with conn:` leaves a pooled connection
        // open, and close_returns gives it back.
        if let Err(e) = set_marker(conn.bind(py), pool) {
            // Not markable (not a psycopg connection?): never lost.
            let ptr = conn.as_ptr();
            let _ = core.pool().checkin(key(conn.bind(py)), |c| c.is(ptr));
            return Err(e);
        }
        Ok(Lend::Lent(conn))
    }

    /// The fast path of putconn(conn): `Err` when the connection is not
    /// this pool's (the runner's ValueError), `None` when it is back, else
    /// what is left (see `Unfinished`).
    #[inline]
    fn give_back(
        &self,
        pool: &Bound<'_, PyAny>,
        conn: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Unfinished>> {
        let py = pool.py();
        let core = self.core()?;
        let fast = self.flags() & CLOSE_RETURNS == 0 && core.slow_bits() & SLOW_CHECKIN == 0;
        if fast {
            // The core finds the connection among those it lent, by
            // identity: no need to read the marker. While the core holds
            // the slot, the status is read (from the pgconn it keeps) and
            // the marker cleared: once the slot is free, another borrower
            // may take the connection and mark it.
            let ptr = conn.as_ptr();
            let mut busy = false;
            let checkin = core.pool().checkin(key(conn), |c| {
                if !c.is(ptr) {
                    return false;
                }
                if !c.is_idle(py) {
                    busy = true;
                    return false;
                }
                unmark(conn).is_ok()
            });
            match checkin {
                Ok(Checkin::Kept) => return Ok(None),
                Ok(Checkin::Close(_, reason)) => {
                    return Ok(Some(Unfinished::Retired(reason.as_str())))
                }
                Err(_) if busy => return Ok(Some(Unfinished::Busy)),
                // Not among the connections the core lent: the marker says
                // whether this pool lent it before a fork.
                Err(_) => {}
            }
        }
        let marked = conn
            .getattr_opt(intern!(py, "_pool"))
            .ok()
            .flatten()
            .is_some_and(|p| p.is(pool));
        if !marked {
            self.runner(py)?
                .call_method1(intern!(py, "refuse"), (conn,))?;
            return Err(PyRuntimeError::new_err("refuse() returned"));
        }
        let idle = conn
            .getattr(intern!(py, "pgconn"))
            .is_ok_and(|pg| status::is_idle(&pg));
        if !idle {
            return Ok(Some(Unfinished::Busy));
        }
        unmark(conn)?;
        Ok(Some(if fast {
            Unfinished::NotLent
        } else {
            Unfinished::Slow
        }))
    }

    /// Carry out a borrow: the connection (sync), or what to await (async:
    /// `Ready` when done, else the slow path's coroutine).
    fn getconn(
        &self,
        pool: &Bound<'_, PyAny>,
        timeout: &Bound<'_, PyAny>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let py = pool.py();
        match self.lend(pool, timeout)? {
            Lend::Lent(conn) if is_async => ready(py, Some(conn)),
            Lend::Lent(conn) => Ok(conn),
            Lend::Runner(conn) => Ok(self
                .runner(py)?
                .call_method1(intern!(py, "getconn"), (conn, py.None()))?
                .unbind()),
            Lend::Slow => Ok(pool
                .call_method1(intern!(py, "_getconn_slow"), (timeout,))?
                .unbind()),
        }
    }

    /// Carry out a return: None when done, else what the slow path
    /// returned (a coroutine in async).
    fn putconn<'py>(
        &self,
        pool: &Bound<'py, PyAny>,
        conn: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.give_back(pool, conn)?
            .map(|rest| self.finish_return(pool, conn, rest))
            .transpose()
    }

    /// Carry out what `give_back` left of a return: the slow path's result.
    fn finish_return<'py>(
        &self,
        pool: &Bound<'py, PyAny>,
        conn: &Bound<'py, PyAny>,
        rest: Unfinished,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = pool.py();
        match rest {
            Unfinished::Busy => {
                unmark(conn)?;
                pool.call_method1(intern!(py, "_putconn_slow"), (conn,))
            }
            Unfinished::Slow => pool.call_method1(intern!(py, "_putconn_slow"), (conn,)),
            Unfinished::Retired(reason) => self
                .runner(py)?
                .call_method1(intern!(py, "close_connection"), (conn, reason)),
            Unfinished::NotLent => self
                .runner(py)?
                .call_method1(intern!(py, "checkin"), (conn,)),
        }
    }

    /// What a finished async call returns: an awaitable already done.
    #[inline]
    fn finished(&self, py: Python<'_>) -> Py<PyAny> {
        match self.done.get() {
            Some(done) => done.clone_ref(py).into_any(),
            None => py.None(),
        }
    }

    fn name(&self) -> String {
        self.core()
            .map(|c| c.pool().name().to_owned())
            .unwrap_or_default()
    }
}

fn unbound() -> PyErr {
    PyRuntimeError::new_err("this pool was not initialised (its __init__ did not run)")
}

/// Clear psycopg's marker: the connection is no longer lent by a pool.
#[inline]
fn unmark(conn: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = conn.py();
    set_marker(conn, PyNone::get(py).as_any())
}

/// `conn._pool = value`, psycopg's marker. A class without a `__setattr__`
/// of its own (psycopg's have none) is set through the generic setter
/// directly, as `setattr()` would end up doing: it spares interning the
/// name and a dispatch, on every borrow and every return.
#[inline]
fn set_marker(conn: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = conn.py();
    let name = intern!(py, "_pool");
    // SAFETY: `conn` is a live object, so its type is a live type object,
    // and Py_tp_setattro a slot every type has (NULL if unset).
    let setattro = unsafe { ffi::PyType_GetSlot(ffi::Py_TYPE(conn.as_ptr()), ffi::Py_tp_setattro) };
    if setattro != ffi::PyObject_GenericSetAttr as *mut std::ffi::c_void {
        return conn.setattr(name, value);
    }
    // SAFETY: the object's own setter, called as setattr() calls it, with
    // an interned str name and live references.
    let rc = unsafe { ffi::PyObject_GenericSetAttr(conn.as_ptr(), name.as_ptr(), value.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PyErr::fetch(py))
    }
}

/// The native base of `ConnectionPool`: getconn, putconn and connection()
/// in Rust; the subclass binds it to its core and runner (`_bind`) and
/// provides the slow path.
#[pyclass(frozen, subclass, module = "ferropool._core", name = "Lender")]
pub struct Lender {
    lending: Lending,
}

impl Lender {
    /// getconn(timeout): the connection.
    pub(crate) fn getconn(
        &self,
        pool: &Bound<'_, PyAny>,
        timeout: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        self.lending.getconn(pool, timeout, false)
    }

    /// connection(timeout): a block to enter.
    pub(crate) fn connection(
        slf: &Bound<'_, Self>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Block>> {
        Py::new(
            slf.py(),
            Block {
                state: BlockState::new(slf.as_any(), timeout),
                lender: slf.clone().unbind(),
            },
        )
    }

    /// putconn(conn).
    pub(crate) fn putconn(&self, pool: &Bound<'_, PyAny>, conn: &Bound<'_, PyAny>) -> PyResult<()> {
        self.lending.putconn(pool, conn).map(drop)
    }
}

impl AsyncLender {
    /// connection(timeout): a block to enter.
    pub(crate) fn connection(
        slf: &Bound<'_, Self>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<AsyncBlock>> {
        Py::new(
            slf.py(),
            AsyncBlock {
                state: BlockState::new(slf.as_any(), timeout),
                lender: slf.clone().unbind(),
            },
        )
    }
}

/// The native base of `AsyncConnectionPool`: connection() and the fast
/// path of getconn and putconn (`_getconn`, `_putconn`), returning
/// awaitables.
#[pyclass(frozen, subclass, module = "ferropool._core", name = "AsyncLender")]
pub struct AsyncLender {
    lending: Lending,
}

/// The methods both lenders have, and each one's own (`$own`).
macro_rules! lender_methods {
    ($ty:ty, $($own:tt)*) => {
        #[pymethods]
        impl $ty {
            $($own)*

            /// Accepts (and ignores) the subclass's constructor arguments.
            #[new]
            #[pyo3(signature = (*_args, **_kwargs))]
            fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
                Self {
                    lending: Lending::new(),
                }
            }

            /// Subscripting the class (for type checkers) gives the class.
            #[classmethod]
            fn __class_getitem__<'py>(
                cls: &Bound<'py, PyType>,
                _item: &Bound<'py, PyAny>,
            ) -> Bound<'py, PyType> {
                cls.clone()
            }

            /// Bind the pool to its `core` and `runner` (the slow path);
            /// `overridden`: its class overrides getconn or putconn, so
            /// blocks call them. Once, from the subclass's __init__.
            fn _bind(
                &self,
                py: Python<'_>,
                core: Py<Core>,
                runner: Py<PyAny>,
                overridden: bool,
            ) -> PyResult<()> {
                self.lending.bind(py, core, runner, overridden)
            }

            /// True: a connection's close() gives it back to the pool
            /// instead of closing it (psycopg reads this).
            #[getter]
            fn get_close_returns(&self) -> bool {
                self.lending.flags() & CLOSE_RETURNS != 0
            }

            #[setter]
            fn set_close_returns(&self, value: bool) {
                self.lending.set_flag(CLOSE_RETURNS, value);
            }
        }
    };
}

lender_methods! {
    Lender,
    // getconn(), putconn() and connection() are C methods (see `entry`).
}

lender_methods! {
    AsyncLender,
    /// The fast path of getconn(): an awaitable giving the connection.
    #[pyo3(signature = (timeout = None))]
    fn _getconn(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let none = PyNone::get(slf.py());
        slf.get()
            .lending
            .getconn(slf.as_any(), timeout.unwrap_or(none.as_any()), true)
    }

    /// The fast path of putconn(): an awaitable finishing the return.
    fn _putconn(slf: &Bound<'_, Self>, conn: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let lending = &slf.get().lending;
        Ok(match lending.putconn(slf.as_any(), conn)? {
            Some(rest) => rest.unbind(),
            None => lending.finished(slf.py()),
        })
    }

    // connection() is a C method (see `entry`).
}

/// One block's state, the same for sync and async blocks.
///
/// Blocks (and `Ready`) are not tracked by Python's cycle collector: a
/// block allocated per `with` would otherwise cost a collector link and
/// unlink, and count towards generation-0 collections, on the hot path.
/// A block is in a reference cycle only while a close_returns pool's
/// connection is lent to it (the connection notes its block); returning the
/// connection breaks the cycle.
struct BlockState {
    pool: Py<PyAny>,
    timeout: Option<Py<PyAny>>,
    /// Taken by the entry, freed by the exit: a compare-and-set, so two
    /// entries can never both succeed.
    busy: AtomicBool,
    /// The connection lent to the block, between entry and exit: a
    /// reference the block owns, or null. Swapped in and out, never locked:
    /// `busy` already keeps a second entry away.
    conn: AtomicPtr<ffi::PyObject>,
}

impl Drop for BlockState {
    fn drop(&mut self) {
        let conn = *self.conn.get_mut();
        if !conn.is_null() {
            // SAFETY: a non-null `conn` is a reference the block owns (see
            // `hold`); a block is dropped by its type's deallocator, which
            // runs with the thread attached.
            drop(unsafe { Bound::from_owned_ptr(Python::assume_attached(), conn) });
        }
    }
}

/// What a block's entry did.
enum Entered {
    Lent(Py<PyAny>),
    /// The pool's `_enter_block(block, timeout, checked, conn)` result:
    /// the connection (sync) or a coroutine giving it (async).
    Slow(Py<PyAny>),
}

impl BlockState {
    fn new(pool: &Bound<'_, PyAny>, timeout: Option<&Bound<'_, PyAny>>) -> Self {
        Self {
            pool: pool.clone().unbind(),
            // None and no timeout are the same.
            timeout: timeout.filter(|t| !t.is_none()).map(|t| t.clone().unbind()),
            busy: AtomicBool::new(false),
            conn: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Hold `conn` (None: nothing); give back what was held.
    fn hold<'py>(&self, py: Python<'py>, conn: Option<Py<PyAny>>) -> Option<Bound<'py, PyAny>> {
        let new = conn.map_or(std::ptr::null_mut(), Py::into_ptr);
        let old = self.conn.swap(new, Ordering::AcqRel);
        // SAFETY: a non-null `old` is a reference the block owned, and the
        // swap gave it to this call alone.
        unsafe { Bound::from_owned_ptr_or_opt(py, old) }
    }

    fn release(&self) {
        self.busy.store(false, Ordering::Release);
    }

    fn enter(&self, block: &Bound<'_, PyAny>, lending: &Lending) -> PyResult<Entered> {
        let py = block.py();
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            let name = PyString::new(py, &lending.name()).repr()?;
            return Err(PyRuntimeError::new_err(format!(
                "this connection() context of pool {name} is already in use: call \
                 pool.connection() for each block"
            )));
        }
        let pool = self.pool.bind(py);
        let none = PyNone::get(py);
        let timeout = self.timeout.as_ref().map_or(none.as_any(), |t| t.bind(py));
        let result = (|| {
            // A subclass's getconn, close_returns, or a timeout to check:
            // all through the pool's Python methods.
            let checked = if lending.flags() == 0 {
                match lending.lend(pool, timeout)? {
                    Lend::Lent(conn) => {
                        self.hold(py, Some(conn.clone_ref(py)));
                        return Ok(Entered::Lent(conn));
                    }
                    Lend::Runner(conn) => Some(conn),
                    Lend::Slow => None,
                }
            } else {
                None
            };
            let (conn, checked) = match checked {
                Some(conn) => (conn.unwrap_or_else(|| py.None()), true),
                None => (py.None(), false),
            };
            let got =
                pool.call_method1(intern!(py, "_enter_block"), (block, timeout, checked, conn))?;
            Ok(Entered::Slow(got.unbind()))
        })();
        if result.is_err() {
            self.release();
        }
        result
    }

    /// A block's exit: None when done (the block is free again), else what
    /// the slow path returned (it frees the block itself).
    fn exit(
        &self,
        block: &Bound<'_, PyAny>,
        lending: &Lending,
        exc_val: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let py = block.py();
        let Some(conn) = self.hold(py, None) else {
            return Err(PyRuntimeError::new_err(
                "this connection() context was not entered",
            ));
        };
        let pool = self.pool.bind(py);
        if exc_val.is_none() && lending.flags() == 0 {
            // Nothing to commit if it is idle: then it goes straight back.
            let outcome = lending.give_back(pool, &conn);
            if !matches!(outcome, Ok(Some(Unfinished::Busy))) {
                self.release();
                return outcome?
                    .map(|rest| Ok(lending.finish_return(pool, &conn, rest)?.unbind()))
                    .transpose();
            }
        }
        let rest = pool.call_method1(intern!(py, "_exit_block"), (block, &conn, exc_val));
        if rest.is_err() {
            self.release();
        }
        Ok(Some(rest?.unbind()))
    }
}

/// The methods both blocks have, and each one's own (`$own`).
macro_rules! block_methods {
    ($ty:ty, $($own:tt)*) => {
        #[pymethods]
        impl $ty {
            $($own)*

            #[classmethod]
            fn __class_getitem__<'py>(
                cls: &Bound<'py, PyType>,
                _item: &Bound<'py, PyAny>,
            ) -> Bound<'py, PyType> {
                cls.clone()
            }

            /// Slow path: the block now holds *conn*.
            fn _hold(&self, py: Python<'_>, conn: Py<PyAny>) {
                self.state.hold(py, Some(conn));
            }

            /// Slow path: the block is free to enter again.
            fn _release(&self) {
                self.state.release();
            }
        }
    };
}

/// What `ConnectionPool.connection()` returns: a connection lent for one
/// `with` block, committed (or rolled back if the block raised) and given
/// back at its end.
#[pyclass(frozen, module = "ferropool._core", name = "Block")]
pub struct Block {
    state: BlockState,
    lender: Py<Lender>,
}

block_methods! {
    Block,
    // __enter__() and __exit__() are C methods (see `entry`).
}

impl Block {
    /// `__enter__()`: the connection.
    pub(crate) fn enter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        match this.state.enter(slf.as_any(), &this.lender.get().lending)? {
            Entered::Lent(conn) | Entered::Slow(conn) => Ok(conn),
        }
    }

    /// `__exit__(exc_type, exc_val, exc_tb)`.
    pub(crate) fn exit(slf: &Bound<'_, Self>, exc_val: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        let rest = this
            .state
            .exit(slf.as_any(), &this.lender.get().lending, exc_val)?;
        // Released now, as a `Bound`: see `entry` on dropping a `Py`.
        drop(rest.map(|r| r.into_bound(slf.py())));
        Ok(())
    }
}

/// What `AsyncConnectionPool.connection()` returns: a connection lent for
/// one `async with` block. On the fast path its entry and exit return
/// awaitables that are already done.
#[pyclass(frozen, module = "ferropool._core", name = "AsyncBlock")]
pub struct AsyncBlock {
    state: BlockState,
    lender: Py<AsyncLender>,
}

block_methods! {
    AsyncBlock,
    // __aenter__() and __aexit__() are C methods (see `entry`).
}

impl AsyncBlock {
    /// `__aenter__()`: an awaitable giving the connection.
    pub(crate) fn enter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        match this.state.enter(slf.as_any(), &this.lender.get().lending)? {
            Entered::Lent(conn) => ready(slf.py(), Some(conn)),
            Entered::Slow(coro) => Ok(coro),
        }
    }

    /// `__aexit__(exc_type, exc_val, exc_tb)`: an awaitable finishing it.
    pub(crate) fn exit(slf: &Bound<'_, Self>, exc_val: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        let lending = &this.lender.get().lending;
        Ok(match this.state.exit(slf.as_any(), lending, exc_val)? {
            Some(rest) => rest,
            None => lending.finished(slf.py()),
        })
    }
}
