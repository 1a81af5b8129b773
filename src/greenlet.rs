//! The entry points of the `greenlet` package the bridge uses, imported once.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static GREENLET_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static GREENLET_EXIT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

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
///
/// Through greenlet's C API (`PyGreenlet_GetCurrent`): every lock acquire and
/// `get_ident()` asks, and a call of `greenlet.getcurrent` through Python costs several
/// times more.
pub(crate) fn current<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    let get_current = *GET_CURRENT.get_or_try_init(py, || c_api_get_current(py))?;
    // SAFETY: GIL held; `get_current` is greenlet's `PyGreenlet_GetCurrent`, which
    // returns a new reference to the current greenlet, or NULL with an error set.
    unsafe { Bound::from_owned_ptr_or_err(py, get_current()) }
}

type GetCurrent = unsafe extern "C" fn() -> *mut pyo3::ffi::PyObject;

static GET_CURRENT: PyOnceLock<GetCurrent> = PyOnceLock::new();

/// Slot 4 of the table greenlet publishes as the capsule `greenlet._C_API` (its
/// `greenlet.h`: `PyGreenlet_GetCurrent_NUM`).
const GET_CURRENT_SLOT: usize = 4;

fn c_api_get_current(py: Python<'_>) -> PyResult<GetCurrent> {
    py.import("greenlet")?;
    // SAFETY: the name is a NUL-terminated C string; `PyCapsule_Import` returns the
    // capsule's pointer or NULL with an error set, GIL held.
    let table = unsafe { pyo3::ffi::PyCapsule_Import(c"greenlet._C_API".as_ptr(), 0) };
    if table.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: greenlet's capsule points to its static table of `PyGreenlet_API_pointers`
    // (12) function and object pointers, alive as long as the module (never unloaded);
    // slot 4 is `PyGreenlet_GetCurrent`, a `PyGreenlet *(*)(void)`.
    let entry = unsafe { *(table as *const *const std::ffi::c_void).add(GET_CURRENT_SLOT) };
    if entry.is_null() {
        return Err(pyo3::exceptions::PyImportError::new_err(
            "greenlet's C API has no PyGreenlet_GetCurrent",
        ));
    }
    // SAFETY: as above, the entry is a function of that signature.
    Ok(unsafe { std::mem::transmute::<*const std::ffi::c_void, GetCurrent>(entry) })
}
