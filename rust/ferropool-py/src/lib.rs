//! `ferropool._core`: the PyO3 binding of ferropool-core.
//!
//! It converts arguments, releases the GIL to wait, and maps core errors
//! one to one onto ferropool's Python exceptions. It holds no pool logic:
//! every decision is the core's. Payloads are Python connection objects,
//! identified on return by their address.

mod entry;
mod errors;
mod lender;
mod pool;
mod ready;
mod status;
mod wait;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<pool::Core>()?;
    m.add_class::<pool::Ticket>()?;
    m.add_class::<pool::Waiting>()?;
    m.add_class::<pool::Action>()?;
    m.add_class::<pool::ActionKind>()?;
    m.add_class::<pool::Leak>()?;
    m.add_class::<pool::ConnectOutcome>()?;
    m.add_class::<lender::Lender>()?;
    m.add_class::<lender::AsyncLender>()?;
    m.add_class::<lender::Block>()?;
    m.add_class::<lender::AsyncBlock>()?;
    ready::install(m)?;
    entry::install(m.py())?;
    m.add("MAX_POOL_SIZE", ferropool_core::config::MAX_POOL_SIZE)?;
    Ok(())
}
