//! Where a `QueueCore` keeps its items: the object `_init` made (`queue`), and, when
//! that is a `collections.deque`, the C functions behind its `append` and `popleft`, so
//! a plain queue moves an item with one C call instead of a Python method call.

use std::cell::UnsafeCell;
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use pyo3::{PyTraverseError, PyVisit};

static DEQUE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The C functions of a deque's `append` (`METH_O`) and `popleft` (`METH_NOARGS`).
#[derive(Clone, Copy)]
struct DequeCalls {
    append: ffi::PyCFunction,
    popleft: ffi::PyCFunction,
}

impl DequeCalls {
    /// The calls of `items` if it is exactly a `collections.deque` (a subclass may
    /// override them in Python) without a `maxlen` (whose append drops an item, which
    /// may run Python code) and whose methods are the C functions expected.
    fn of(items: &Bound<'_, PyAny>) -> PyResult<Option<Self>> {
        let py = items.py();
        if !items
            .get_type()
            .is(DEQUE.import(py, "collections", "deque")?)
            || !items.getattr("maxlen")?.is_none()
        {
            return Ok(None);
        }
        let c_function = |name: &str, flags: i32| -> PyResult<Option<ffi::PyCFunction>> {
            let method = items.getattr(name)?;
            let method = method.as_ptr();
            // SAFETY: `method` is a live object; the checks come before each call that
            // assumes a builtin method, and the getters only read it.
            unsafe {
                if ffi::PyCFunction_Check(method) == 0
                    || ffi::PyCFunction_GetSelf(method) != items.as_ptr()
                    || ffi::PyCFunction_GetFlags(method) != flags
                {
                    return Ok(None);
                }
                Ok(ffi::PyCFunction_GetFunction(method))
            }
        };
        Ok(
            match (
                c_function("append", ffi::METH_O)?,
                c_function("popleft", ffi::METH_NOARGS)?,
            ) {
                (Some(append), Some(popleft)) => Some(Self { append, popleft }),
                _ => None,
            },
        )
    }
}

/// A queue's deque, held for one operation.
pub(super) struct Deque<'py> {
    items: Bound<'py, PyAny>,
    calls: DequeCalls,
}

impl<'py> Deque<'py> {
    pub(super) fn len(&self) -> usize {
        // SAFETY: `items` is exactly a `collections.deque` (`DequeCalls::of`), a
        // variable-size object whose `ob_size` is its length (its `__len__` returns it).
        let len = unsafe { ffi::Py_SIZE(self.items.as_ptr()) };
        usize::try_from(len).unwrap_or(0)
    }

    /// Appends `item`; runs no Python code and keeps the GIL (no `maxlen`, so no item
    /// is dropped).
    pub(super) fn append(&self, item: &Bound<'py, PyAny>) -> PyResult<()> {
        // SAFETY: `append` is the deque's own `METH_O` function (`DequeCalls::of`),
        // called as CPython would: its `self`, one borrowed argument, the GIL held.
        let done = unsafe { (self.calls.append)(self.items.as_ptr(), item.as_ptr()) };
        // SAFETY: a new reference (None) or null with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(self.items.py(), done) }.map(drop)
    }

    /// Takes the leftmost item; IndexError when empty.
    pub(super) fn popleft(&self) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: `popleft` is the deque's own `METH_NOARGS` function, called as
        // CPython would: its `self` and a null argument, the GIL held.
        let item = unsafe { (self.calls.popleft)(self.items.as_ptr(), ptr::null_mut()) };
        // SAFETY: a new reference or null with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(self.items.py(), item) }
    }
}

struct Storage {
    items: Py<PyAny>,
    deque: Option<DequeCalls>,
}

/// The storage, kept without a lock of its own: it is read and replaced only with the
/// GIL held, and never across a call into Python.
pub(super) struct StorageCell(UnsafeCell<Option<Storage>>);

// SAFETY: every access holds the GIL (a `Python` token, or a GC callback, which CPython
// runs with it), and the module does not declare `gil_used = false`, so even a
// free-threaded interpreter turns the GIL on when it imports this one. No access spans a
// call into Python, so a thread cannot re-enter one while another is open.
unsafe impl Sync for StorageCell {}

impl StorageCell {
    pub(super) fn new() -> Self {
        Self(UnsafeCell::new(None))
    }

    /// Runs `f` on the storage. `f` must not call into Python.
    fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut Option<Storage>) -> R) -> R {
        // SAFETY: the GIL is held (`_py`) and `f`, private to this file, only moves
        // and copies references (see the `Sync` impl).
        f(unsafe { &mut *self.0.get() })
    }

    /// The object `_init` made.
    pub(super) fn items<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.with(py, |storage| {
            storage
                .as_ref()
                .map(|storage| storage.items.bind(py).clone())
        })
    }

    /// The storage as a deque whose C calls are known; None for anything else.
    pub(super) fn deque<'py>(&self, py: Python<'py>) -> Option<Deque<'py>> {
        self.with(py, |storage| {
            let storage = storage.as_ref()?;
            Some(Deque {
                items: storage.items.bind(py).clone(),
                calls: storage.deque?,
            })
        })
    }

    /// Makes `items` the storage (`self.queue = items`).
    pub(super) fn replace(&self, items: Bound<'_, PyAny>) -> PyResult<()> {
        let py = items.py();
        let deque = DequeCalls::of(&items)?;
        let new = Storage {
            items: items.unbind(),
            deque,
        };
        let old = self.with(py, |storage| storage.replace(new));
        // The old items may run Python code as they go: after the access.
        drop(old);
        Ok(())
    }

    /// Lets go of the storage (the GC breaking a cycle).
    pub(super) fn clear(&self, py: Python<'_>) {
        let old = self.with(py, Option::take);
        drop(old);
    }

    pub(super) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: the GC calls `__traverse__` with the GIL held, never from inside an
        // access (which allocates no Python object, so cannot start a collection).
        let storage = unsafe { &*self.0.get() };
        match storage {
            Some(storage) => visit.call(&storage.items),
            None => Ok(()),
        }
    }
}
