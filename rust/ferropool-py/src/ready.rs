//! `Ready`: an awaitable that is already done.
//!
//! The async pools' fast paths (the native `_getconn` behind `await
//! pool.getconn()`, a block's `__aenter__`/`__aexit__`) have their answer
//! before they return, yet must return an awaitable. Awaiting one through
//! `__next__` costs a StopIteration, raised by the awaitable, then fetched
//! back and unpacked by the interpreter; with the PyO3 class this type
//! replaces, that was about 1,800 of the 5,900 instructions of an `async
//! with pool.connection()` block. CPython 3.10 added the `am_send` slot,
//! which hands the result back with no exception; a PyO3 class cannot fill
//! that slot, so this one small type is made with `PyType_FromSpec`
//! directly. Its `__next__` stays, for callers that iterate it (`yield
//! from`, asyncio wrapping an awaitable in a task).
//!
//! The value it holds (a connection, or nothing) does not refer back to
//! it, so it needs no GC support; Python code cannot create one
//! (`DISALLOW_INSTANTIATION`).

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;

/// The object's layout: the header, then the value awaiting gives.
#[repr(C)]
struct ReadyObject {
    base: ffi::PyObject,
    /// A strong reference, or NULL for None.
    value: *mut ffi::PyObject,
}

/// The type, made once at module load by [`install`], never freed (the
/// module holds a reference too).
static TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());

const DOC: &std::ffi::CStr = c"An awaitable that is already done: awaiting it gives its value at\nonce, without a trip through the event loop.";

/// A done awaitable giving `value` (None if `None`). Takes the reference.
pub(crate) fn ready(py: Python<'_>, value: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    let ty = TYPE.load(Ordering::Acquire);
    if ty.is_null() {
        return Err(PyRuntimeError::new_err(
            "ferropool._core.Ready is not installed",
        ));
    }
    // SAFETY: `ty` is the live type `install` made (never freed); its
    // tp_alloc returns a zeroed object of its basicsize, with a reference
    // to the type taken, or NULL with an error set.
    let obj = unsafe { ffi::PyType_GenericAlloc(ty, 0) };
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `obj` is a new ReadyObject (basicsize is its size); the
    // reference to `value` moves into it and is released by `dealloc`.
    unsafe {
        (*obj.cast::<ReadyObject>()).value = value.map_or(ptr::null_mut(), Py::into_ptr);
        Ok(Bound::from_owned_ptr(py, obj).unbind())
    }
}

/// Make the type and add it to the module as `Ready`.
pub(crate) fn install(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let mut slots = [
        slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
        slot(ffi::Py_am_await, same as *mut c_void),
        slot(ffi::Py_am_send, send as *mut c_void),
        slot(ffi::Py_tp_iter, same as *mut c_void),
        slot(ffi::Py_tp_iternext, next as *mut c_void),
        slot(ffi::Py_tp_doc, DOC.as_ptr() as *mut c_void),
        slot(0, ptr::null_mut()),
    ];
    let mut spec = ffi::PyType_Spec {
        name: c"ferropool._core.Ready".as_ptr(),
        basicsize: c_int::try_from(size_of::<ReadyObject>()).expect("a small struct"),
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT
            | ffi::Py_TPFLAGS_IMMUTABLETYPE
            | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION) as u32,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: a well-formed spec, its slots ending with a zero entry; the
    // spec is copied by the call (the doc string too), and the functions
    // are statics.
    let ty = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(&mut spec))? };
    m.add("Ready", &ty)?;
    // Kept for the process: the reference `ty` owned moves into TYPE.
    TYPE.store(ty.into_ptr().cast(), Ordering::Release);
    Ok(())
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// `__await__` and `__iter__`: the object itself.
unsafe extern "C" fn same(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a live object; the result is a new reference.
    unsafe { ffi::Py_NewRef(obj) }
}

/// The value, as a new reference (None for NULL).
///
/// # Safety
///
/// `obj` is a live `ReadyObject` and the thread is attached.
unsafe fn value(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: see above; `value` is set once, before the object is shared.
    let value = unsafe { (*obj.cast::<ReadyObject>()).value };
    // SAFETY: a live object (the value, or None).
    unsafe {
        ffi::Py_NewRef(if value.is_null() {
            ffi::Py_None()
        } else {
            value
        })
    }
}

/// `am_send`: done at once, returning the value.
unsafe extern "C" fn send(
    obj: *mut ffi::PyObject,
    _arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: CPython passes a live Ready and a place for the result.
    unsafe { *result = value(obj) };
    ffi::PySendResult::PYGEN_RETURN
}

/// `__next__`: done at once, StopIteration carrying the value (its
/// argument, so that a tuple stays one value).
unsafe extern "C" fn next(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a live Ready, the thread attached; every
    // object below is live or checked for NULL, and each new reference is
    // released.
    unsafe {
        if (*obj.cast::<ReadyObject>()).value.is_null() {
            // No exception: the iterator is exhausted, StopIteration(None).
            return ptr::null_mut();
        }
        let args = ffi::PyTuple_New(1);
        if args.is_null() {
            return ptr::null_mut();
        }
        // PyTuple_SetItem takes the new reference to the value.
        ffi::PyTuple_SetItem(args, 0, value(obj));
        let stop = ffi::PyObject_Call(ffi::PyExc_StopIteration, args, ptr::null_mut());
        ffi::Py_DECREF(args);
        if !stop.is_null() {
            ffi::PyErr_SetObject(ffi::PyExc_StopIteration, stop);
            ffi::Py_DECREF(stop);
        }
    }
    ptr::null_mut()
}

unsafe extern "C" fn dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: CPython passes a Ready whose last reference is gone; its
    // value reference is released once, then the memory through the
    // type's tp_free, then the reference the object held on its (heap)
    // type, as a heap type's dealloc must.
    unsafe {
        let value = (*obj.cast::<ReadyObject>()).value;
        let ty = ffi::Py_TYPE(obj);
        if !value.is_null() {
            ffi::Py_DECREF(value);
        }
        let free = ffi::PyType_GetSlot(ty, ffi::Py_tp_free);
        let free = std::mem::transmute::<*mut c_void, ffi::freefunc>(free);
        free(obj.cast());
        ffi::Py_DECREF(ty.cast());
    }
}
