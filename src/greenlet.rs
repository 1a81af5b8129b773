//! The entry points of the `greenlet` package the bridge uses, imported once.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static GREENLET_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static GREENLET_EXIT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static GETCURRENT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A new greenlet running `run`, whose parent is the current greenlet (a worker's hub).
pub(crate) fn new_greenlet<'py>(
    py: Python<'py>,
    run: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let ty = GREENLET_TYPE.import(py, "greenlet", "greenlet")?;
    ty.call1((run,))
}

/// Whether `err` is the `GreenletExit` that greenlet throws into a greenlet it kills.
pub(crate) fn is_exit(py: Python<'_>, err: &PyErr) -> bool {
    GREENLET_EXIT
        .import(py, "greenlet", "GreenletExit")
        .is_ok_and(|exit| err.is_instance(py, exit))
}

/// The greenlet running now on this thread (on a worker, outside a virtual thread: the
/// thread's main greenlet, which is the hub every virtual thread switches back to).
pub(crate) fn current<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    let getcurrent = GETCURRENT.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("greenlet")?.getattr("getcurrent")?.unbind())
    })?;
    getcurrent.bind(py).call0()
}
