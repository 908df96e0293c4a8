//! A psycopg connection's transaction status, read on every return.
//!
//! `pgconn.transaction_status` as an attribute lookup costs, on each return,
//! a search of the type's method cache, the descriptor's checks and a
//! Python int to convert: about as much as the core's whole checkin. What
//! the lookup finds depends only on the type, so it is done once, when the
//! pool gets the connection: if `transaction_status` is a data descriptor
//! (which wins over the instance's dict) on a type with the generic
//! `__getattribute__`, a return calls the descriptor's `__get__` directly,
//! which is what the lookup would end up calling. Any other shape falls
//! back to the lookup, as does a `pgconn` whose type has changed since.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

/// psycopg's `TransactionStatus.IDLE`.
const IDLE: std::ffi::c_long = 0;

/// The getter `getattr(pgconn, "transaction_status")` resolves to.
struct Getter {
    /// The type it was found on; a `pgconn` of another type looks it up.
    ty: Py<PyType>,
    descr: Py<PyAny>,
    get: ffi::descrgetfunc,
}

/// Reads whether a psycopg connection is idle (not in a transaction).
pub(crate) struct Status {
    pgconn: Py<PyAny>,
    getter: Option<Getter>,
}

impl Status {
    /// For `conn.pgconn`, if the connection has one (DB-API connections
    /// have none: their returns take the slow path).
    pub(crate) fn of(conn: &Bound<'_, PyAny>) -> Option<Self> {
        let py = conn.py();
        let pgconn = conn.getattr_opt(intern!(py, "pgconn")).ok().flatten()?;
        let getter = Getter::find(&pgconn);
        Some(Self {
            pgconn: pgconn.unbind(),
            getter,
        })
    }

    /// `pgconn.transaction_status == IDLE`; false if it cannot be read.
    #[inline]
    pub(crate) fn is_idle(&self, py: Python<'_>) -> bool {
        let pgconn = self.pgconn.bind(py);
        match &self.getter {
            Some(getter) if pgconn.get_type_ptr() == getter.ty.bind(py).as_type_ptr() => {
                getter.is_idle(pgconn)
            }
            _ => is_idle(pgconn),
        }
    }
}

impl Getter {
    /// The data descriptor `transaction_status` on `type(pgconn)`, found as
    /// the generic lookup finds it (first in the MRO), if the type uses it.
    fn find(pgconn: &Bound<'_, PyAny>) -> Option<Self> {
        let py = pgconn.py();
        let ty = pgconn.get_type();
        // SAFETY: `ty` is a live type object; Py_tp_getattro is a slot
        // every type has.
        let getattro = unsafe { ffi::PyType_GetSlot(ty.as_type_ptr(), ffi::Py_tp_getattro) };
        if getattro != ffi::PyObject_GenericGetAttr as *mut std::ffi::c_void {
            return None;
        }
        let name = intern!(py, "transaction_status");
        let mro = ty.getattr(intern!(py, "__mro__")).ok()?;
        let descr = mro
            .cast::<PyTuple>()
            .ok()?
            .iter()
            .find_map(|cls| own_attribute(&cls, name))?;
        let descr_type = descr.get_type();
        // SAFETY: a live type object and two slots every type has.
        let (get, set) = unsafe {
            (
                ffi::PyType_GetSlot(descr_type.as_type_ptr(), ffi::Py_tp_descr_get),
                ffi::PyType_GetSlot(descr_type.as_type_ptr(), ffi::Py_tp_descr_set),
            )
        };
        if get.is_null() || set.is_null() {
            // Not a data descriptor: the instance's dict could win over it.
            return None;
        }
        Some(Self {
            ty: ty.unbind(),
            descr: descr.unbind(),
            // SAFETY: Py_tp_descr_get holds a descrgetfunc, non-null here.
            get: unsafe { std::mem::transmute::<*mut std::ffi::c_void, ffi::descrgetfunc>(get) },
        })
    }

    #[inline]
    fn is_idle(&self, pgconn: &Bound<'_, PyAny>) -> bool {
        // SAFETY: the descriptor's own __get__, called with the arguments
        // the generic lookup passes (descriptor, instance, its type), all
        // live; it returns a new reference or NULL with an error set.
        let status = unsafe { (self.get)(self.descr.as_ptr(), pgconn.as_ptr(), self.ty.as_ptr()) };
        // SAFETY: `status` is a new reference (or NULL, an error set).
        let status = unsafe { Bound::from_owned_ptr_or_err(pgconn.py(), status) };
        status.is_ok_and(|s| long_is(&s, IDLE))
    }
}

/// `cls.__dict__[name]`, if there.
fn own_attribute<'py>(
    cls: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> Option<Bound<'py, PyAny>> {
    let py = cls.py();
    let own = cls.getattr(intern!(py, "__dict__")).ok()?;
    own.get_item(name).ok()
}

/// `pgconn.transaction_status == IDLE` by the attribute lookup; false if it
/// cannot be read.
#[inline]
pub(crate) fn is_idle(pgconn: &Bound<'_, PyAny>) -> bool {
    pgconn
        .getattr(intern!(pgconn.py(), "transaction_status"))
        .is_ok_and(|s| long_is(&s, IDLE))
}

/// Whether `value` is an int equal to `expected` (never -1, the error
/// return); false for anything else.
#[inline]
fn long_is(value: &Bound<'_, PyAny>, expected: std::ffi::c_long) -> bool {
    // SAFETY: a live object; PyLong_AsLong accepts any object and sets an
    // error (returning -1) for what is not an int or does not fit.
    let n = unsafe { ffi::PyLong_AsLong(value.as_ptr()) };
    if n == -1 {
        // SAFETY: holding the interpreter; clears the error, if one is set.
        unsafe { ffi::PyErr_Clear() };
    }
    n == expected
}
