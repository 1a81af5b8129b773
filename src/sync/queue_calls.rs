//! `Queue.put` and `Queue.get` as plain C methods (`METH_FASTCALL | METH_KEYWORDS`).
//!
//! They are the hot path of every producer/consumer program, and a `#[pymethods]`
//! method pays for PyO3's trampoline and keyword parser on each call, about as much as
//! the queue's own work. These entry points take `put(item)` and `get()` that need not
//! wait straight to the deque (`QueueCore::put_now`, `get_now`); any other call (a
//! keyword, `block`, `timeout`, a full or empty queue, a subclass's storage) parses its
//! arguments here and runs the general method with PyO3's usual attach.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::queue::QueueCore;

/// A method's arguments, by position, as the caller gave them (keywords matched by name).
struct Arguments<'py, const N: usize>([Option<Bound<'py, PyAny>>; N]);

impl<'py, const N: usize> Arguments<'py, N> {
    /// Reads a vectorcall's arguments against `names`; a TypeError as CPython words it
    /// for too many, unknown or repeated ones.
    ///
    /// # Safety
    /// `args` holds `nargs` borrowed objects followed by one per name in `kwnames` (a
    /// tuple of str, or null), as CPython passes them to a `METH_FASTCALL` method.
    unsafe fn parse(
        py: Python<'py>,
        method: &str,
        names: [&str; N],
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<Self> {
        let mut slots: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
        let positional = usize::try_from(nargs).unwrap_or(0);
        if positional > N {
            return Err(PyTypeError::new_err(format!(
                "{method}() takes at most {N} arguments ({positional} given)"
            )));
        }
        for (at, slot) in slots.iter_mut().enumerate().take(positional) {
            // SAFETY: `at < nargs`, and CPython keeps the arguments alive for the call.
            *slot = Some(unsafe { Bound::from_borrowed_ptr(py, *args.add(at)) });
        }
        if !kwnames.is_null() {
            // SAFETY: CPython passes the keyword names as a tuple of str.
            let kwnames = unsafe { Bound::from_borrowed_ptr(py, kwnames) };
            let kwnames = kwnames.cast_into::<PyTuple>()?;
            for (offset, name) in kwnames.iter().enumerate() {
                let name = name.cast_into::<PyString>()?;
                let name = name.to_str()?;
                let Some(at) = names.iter().position(|known| *known == name) else {
                    return Err(PyTypeError::new_err(format!(
                        "{method}() got an unexpected keyword argument '{name}'"
                    )));
                };
                if slots[at].is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "{method}() got multiple values for argument '{name}'"
                    )));
                }
                // SAFETY: the keyword values follow the positional ones, one per name.
                let value = unsafe { *args.add(positional + offset) };
                // SAFETY: as above, a borrowed reference alive for the call.
                slots[at] = Some(unsafe { Bound::from_borrowed_ptr(py, value) });
            }
        }
        Ok(Self(slots))
    }

    /// A float argument given and not None (`timeout`).
    fn float(&self, at: usize) -> PyResult<Option<f64>> {
        match &self.0[at] {
            Some(value) if !value.is_none() => Ok(Some(value.extract()?)),
            _ => Ok(None),
        }
    }
}

/// Runs `body` with the GIL count PyO3 keeps raised, as its own trampoline does; its
/// error, or a panic, becomes the Python exception the method raises.
fn attached(body: impl FnOnce(Python<'_>) -> PyResult<*mut ffi::PyObject>) -> *mut ffi::PyObject {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        Python::attach(|py| body(py).unwrap_or_else(|err| raised(py, err)))
    }));
    outcome.unwrap_or_else(|_| Python::attach(|py| raised(py, panicked())))
}

/// Sets `err` as the exception being raised; null, for the method to return.
fn raised(py: Python<'_>, err: PyErr) -> *mut ffi::PyObject {
    err.restore(py);
    ptr::null_mut()
}

fn panicked() -> PyErr {
    PyRuntimeError::new_err("ringloom: a queue operation panicked")
}

/// `None`, as a new reference (what a method returns for nothing).
fn none(py: Python<'_>) -> *mut ffi::PyObject {
    py.None().into_ptr()
}

/// The instance a method descriptor of `QueueCore` was called on.
///
/// # Safety
/// `slf` is the `self` CPython passed to one of the descriptors `install` made: the
/// descriptor has checked that it is an instance of `QueueCore` (or a subclass).
unsafe fn queue<'py>(py: Python<'py>, slf: *mut ffi::PyObject) -> Bound<'py, QueueCore> {
    // SAFETY: a borrowed reference alive for the call, of the right type (see above).
    unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked() }
}

/// `put(item, block=True, timeout=None)`.
unsafe extern "C" fn put(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if nargs == 1 && kwnames.is_null() {
        // SAFETY: CPython called this C method, so this thread holds the GIL; the fast
        // path below makes no `Py` (whose drop would need PyO3's GIL count), only
        // `Bound`s that live inside this call.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: see `queue`; `args[0]` is the one positional argument.
        let (this, item) = unsafe { (queue(py, slf), Bound::from_borrowed_ptr(py, *args)) };
        match catch_unwind(AssertUnwindSafe(|| this.get().put_now(py, &item))) {
            Ok(Some(Ok(()))) => return none(py),
            Ok(Some(Err(err))) => return raised(py, err),
            Ok(None) => {}
            Err(_) => return raised(py, panicked()),
        }
    }
    attached(|py| {
        // SAFETY: CPython's vectorcall arguments, as `parse` requires; `slf` as `queue`.
        let given = unsafe {
            Arguments::parse(
                py,
                "put",
                ["item", "block", "timeout"],
                args,
                nargs,
                kwnames,
            )?
        };
        let this = unsafe { queue(py, slf) };
        let [item, block, _] = &given.0;
        let Some(item) = item else {
            return Err(PyTypeError::new_err(
                "put() missing required argument 'item' (pos 1)",
            ));
        };
        QueueCore::put(&this, item.clone(), block.as_ref(), given.float(2)?)?;
        Ok(none(py))
    })
}

/// `get(block=True, timeout=None)`.
unsafe extern "C" fn get(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if nargs == 0 && kwnames.is_null() {
        // SAFETY: as in `put`: the GIL is held and the fast path makes no `Py`.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: see `queue`.
        let this = unsafe { queue(py, slf) };
        match catch_unwind(AssertUnwindSafe(|| this.get().get_now(py))) {
            Ok(Some(Ok(item))) => return item.into_ptr(),
            Ok(Some(Err(err))) => return raised(py, err),
            Ok(None) => {}
            Err(_) => return raised(py, panicked()),
        }
    }
    attached(|py| {
        // SAFETY: as in `put`.
        let given =
            unsafe { Arguments::parse(py, "get", ["block", "timeout"], args, nargs, kwnames)? };
        let this = unsafe { queue(py, slf) };
        let item = QueueCore::get(&this, given.0[0].as_ref(), given.float(1)?)?;
        Ok(item.into_ptr())
    })
}

/// A method definition CPython keeps a pointer to for the life of the process.
fn method_def(
    name: &'static CStr,
    method: ffi::PyCFunctionFastWithKeywords,
    doc: &'static CStr,
) -> *mut ffi::PyMethodDef {
    Box::into_raw(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: method,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr() as *const c_char,
    }))
}

/// Puts `put` and `get` on `cls`, a subclass of `QueueCore` (the Python `Queue`), so
/// that its instances pass the method's type check by identity, and CPython's
/// specializing interpreter can turn `q.put(item)` into a direct call.
#[pyfunction]
pub(crate) fn install_queue_methods(cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    if !cls.is_subclass_of::<QueueCore>()? {
        return Err(PyTypeError::new_err("not a subclass of QueueCore"));
    }
    install(cls.py(), cls)
}

/// Puts `put` and `get` on the type `ty` (`QueueCore` at module import, or a subclass).
pub(crate) fn install(py: Python<'_>, ty: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    let methods = [
        method_def(
            c"put",
            put,
            c"put($self, item, block=True, timeout=None)\n--\n\nPuts item; with block and a full bounded queue, waits for room (for ever, or timeout seconds, then queue.Full); without, queue.Full at once.",
        ),
        method_def(
            c"get",
            get,
            c"get($self, block=True, timeout=None)\n--\n\nTakes the next item; with block and an empty queue, waits for one (for ever, or timeout seconds, then queue.Empty); without, queue.Empty at once.",
        ),
    ];
    for def in methods {
        // SAFETY: `def` is leaked, so it outlives the descriptor; `ty` is a type object.
        let descriptor = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))?
        };
        // SAFETY: `ml_name` is one of the C string literals above.
        let name = unsafe { CStr::from_ptr((*def).ml_name) }
            .to_str()
            .unwrap_or("");
        ty.setattr(name, descriptor)?;
    }
    Ok(())
}
