//! A contiguous byte view of any object that exports a buffer, as CPython's own `w*`
//! and `y*` arguments take it: an `array('i')`, a `ctypes` structure or a `mmap` is as
//! good as `bytes` to a read or a write. (pyo3's typed `PyBuffer<u8>` refuses buffers
//! whose items are not bytes or that give no shape, which stock calls accept.)

use pyo3::ffi;
use pyo3::prelude::*;

/// The view, released when dropped (with the GIL held: these are made and dropped in
/// calls from Python, a virtual thread holding the GIL again once resumed).
pub(crate) struct Exported(ffi::Py_buffer);

impl Exported {
    pub(crate) fn get(object: &Bound<'_, PyAny>, writable: bool) -> PyResult<Self> {
        // What CPython's own `w*` and `y*` ask for: contiguous bytes.
        let flags = if writable {
            ffi::PyBUF_WRITABLE
        } else {
            ffi::PyBUF_SIMPLE
        };
        let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
        // SAFETY: `view` is written by a successful call, which we check; the object is
        // alive for the call.
        if unsafe { ffi::PyObject_GetBuffer(object.as_ptr(), view.as_mut_ptr(), flags) } != 0 {
            return Err(PyErr::fetch(object.py()));
        }
        // SAFETY: initialized by the successful call above.
        Ok(Exported(unsafe { view.assume_init() }))
    }

    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.0.len).unwrap_or(0)
    }

    /// The first byte. For a writable view, writable for `len` bytes while this lives.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.0.buf.cast()
    }
}

impl Drop for Exported {
    fn drop(&mut self) {
        // SAFETY: the view came from a successful `PyObject_GetBuffer`, released once.
        unsafe { ffi::PyBuffer_Release(&mut self.0) }
    }
}
