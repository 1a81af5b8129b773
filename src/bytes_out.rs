//! A `bytes` object filled in place: reads land straight in the object they return.
//!
//! Reading into a `Vec` and then making `bytes` of it copies every byte a second time,
//! which for a whole file costs about as much as the read from the page cache. CPython's
//! own `FileIO.readall` reads into a fresh `bytes` object and shrinks it at the end; this
//! does the same for the native reads.

use std::ffi::c_int;
use std::ptr;

use pyo3::exceptions::PyMemoryError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

extern "C" {
    // Part of CPython's C API (documented, underscore and all): resizes a `bytes` object
    // nobody else references yet. On failure it frees the object, sets `*bytes` to null
    // and raises.
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, size: ffi::Py_ssize_t) -> c_int;
}

/// A `bytes` object under construction: `len` bytes written, room for `capacity`.
///
/// Not `Send` (it holds a raw pointer): it is made, grown, finished and dropped with the
/// GIL held; only its spare room is written without it.
pub(crate) struct BytesOut {
    /// Owned; null only after a failed resize freed it.
    bytes: *mut ffi::PyObject,
    len: usize,
    capacity: usize,
}

impl BytesOut {
    /// An empty result with room for `capacity` bytes.
    pub(crate) fn with_capacity(py: Python<'_>, capacity: usize) -> PyResult<BytesOut> {
        let size = size_of(capacity)?;
        // SAFETY: the GIL is held; a null data pointer asks for uninitialised room.
        let bytes = unsafe { ffi::PyBytes_FromStringAndSize(ptr::null(), size) };
        if bytes.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(BytesOut {
            bytes,
            len: 0,
            capacity,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The room after what was written: its address and length. Valid until the next
    /// `reserve` or `finish` (which may move it); writing there needs no GIL, since no
    /// Python code can see the object yet.
    pub(crate) fn spare(&mut self) -> (*mut u8, usize) {
        // SAFETY: `bytes` is a live bytes object of `capacity` bytes, and `len` is at
        // most `capacity`, so the address is inside it or one past its end.
        let data = unsafe { ffi::PyBytes_AS_STRING(self.bytes).add(self.len) };
        (data as *mut u8, self.capacity - self.len)
    }

    /// Counts `n` more bytes of the spare room as written.
    ///
    /// # Safety
    /// `n` bytes at the start of `spare()`'s room were written.
    pub(crate) unsafe fn advance(&mut self, n: usize) {
        assert!(n <= self.capacity - self.len, "wrote past the room");
        self.len += n;
    }

    /// Grows the room, if needed, to at least `additional` bytes past what was written.
    pub(crate) fn reserve(&mut self, py: Python<'_>, additional: usize) -> PyResult<()> {
        if self.capacity - self.len >= additional {
            return Ok(());
        }
        let capacity = self
            .len
            .checked_add(additional)
            .ok_or_else(|| PyMemoryError::new_err("file too large"))?;
        self.resize(py, capacity)
    }

    /// The bytes written, as a `bytes` object (shrunk in place: no copy).
    pub(crate) fn finish(mut self, py: Python<'_>) -> PyResult<Bound<'_, PyBytes>> {
        self.resize(py, self.len)?;
        let bytes = std::mem::replace(&mut self.bytes, ptr::null_mut());
        // SAFETY: `bytes` is an owned reference to a bytes object, handed over here.
        Ok(unsafe { Bound::from_owned_ptr(py, bytes).cast_into_unchecked() })
    }

    fn resize(&mut self, py: Python<'_>, capacity: usize) -> PyResult<()> {
        if capacity == self.capacity {
            return Ok(());
        }
        let size = size_of(capacity)?;
        // SAFETY: the GIL is held and `bytes` is ours alone (refcount 1, or the shared
        // empty object, which the call replaces rather than resizes).
        if unsafe { _PyBytes_Resize(&mut self.bytes, size) } < 0 {
            return Err(PyErr::fetch(py));
        }
        self.capacity = capacity;
        self.len = self.len.min(capacity);
        Ok(())
    }
}

impl Drop for BytesOut {
    fn drop(&mut self) {
        if !self.bytes.is_null() {
            // SAFETY: an owned reference, dropped with the GIL held (see the type).
            unsafe { ffi::Py_DECREF(self.bytes) };
        }
    }
}

fn size_of(capacity: usize) -> PyResult<ffi::Py_ssize_t> {
    ffi::Py_ssize_t::try_from(capacity)
        .map_err(|_| PyMemoryError::new_err(format!("cannot allocate {capacity} bytes")))
}
