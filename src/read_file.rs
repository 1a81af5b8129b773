//! A whole file's contents in one call, with no file object: the read behind
//! `VirtualThreadPool.map_files`.
//!
//! `open(path, "rb").read()` builds a `FileIO` and a `BufferedReader`, asks `isatty`, and
//! reads through two Python layers: about 18 us of a warm 4-64 KiB file in a virtual
//! thread, where the syscalls are a third of it. Here it is an open (from the dentry
//! cache if it can, else through the ring), an `fstat` for the size, a read straight
//! into the result (from the page cache at once, else through the ring) and a close.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use ringloom::op::OpenAt;

use crate::errors::os_error;
use crate::file::{blocking_call, read_to_end};
use crate::file_open::{fs_path, open_cached, open_on_pool, CachedOpen};
use crate::frames::ParkedOn;
use crate::vthread;
use crate::waits::park_for;

const FLAGS: i32 = libc::O_RDONLY | libc::O_CLOEXEC;

/// The contents of the file at `path` (`str`, `bytes` or path-like), as
/// `open(path, "rb").read()` returns them. In a virtual thread it parks while the disk
/// is read; elsewhere it is the plain blocking calls with the GIL released. Errors are
/// the stock `OSError` subclasses, naming the path.
#[pyfunction]
pub(crate) fn read_file<'py>(
    py: Python<'py>,
    path: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let name = fs_path(path)?;
    let (fd, st) = open_to_read(py, name).map_err(|err| named(py, err, path))?;
    // The byte past the size lets the read that finds the end need no growth.
    let first = usize::try_from(st.st_size).map_or(64 * 1024, |size| size + 1);
    let contents = read_to_end(py, fd.as_raw_fd(), first).map_err(|err| named(py, err, path))?;
    drop(fd);
    // The descriptor is blocking: read_to_end gives None only for a non-blocking one.
    contents.ok_or_else(|| PyOSError::new_err("the file's descriptor was non-blocking"))
}

/// Opens `path` for reading: the descriptor and what `fstat` says of it.
fn open_to_read(py: Python<'_>, path: CString) -> PyResult<(OwnedFd, libc::stat)> {
    let fd = if !vthread::in_virtual_thread(py)? {
        let ptr = path.as_ptr() as usize;
        // SAFETY: `path` is a NUL-terminated string alive for the call.
        let fd = blocking_call(py, || unsafe {
            libc::open(ptr as *const libc::c_char, FLAGS) as isize
        })?;
        // SAFETY: a successful open returns a new descriptor nobody else owns.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    } else {
        // Set back to blocking once it is known not to be a FIFO: a read that finds
        // a non-blocking descriptor answers EAGAIN as stock does, not parking.
        match open_cached(py, &path, FLAGS)? {
            CachedOpen::Opened(fd, st) => return Ok((fd, st)),
            CachedOpen::Fifo => {
                let fd = open_on_pool(py, path, FLAGS, 0)?;
                // SAFETY: the pool's open returned a new descriptor nobody else owns.
                unsafe { OwnedFd::from_raw_fd(fd) }
            }
            CachedOpen::Missed => {
                let opening = OpenAt::submit(None, path, FLAGS, 0);
                let parked = park_for(py, opening, ParkedOn::File("OPENAT"))
                    .expect("checked: a virtual thread");
                parked?.map_err(os_error)?
            }
        }
    };
    // SAFETY: `st` is plain data that fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(os_error(io::Error::last_os_error()));
    }
    Ok((fd, st))
}

/// An `OSError` with an errno, raised again naming `path` (as stock opens and reads do:
/// `FileNotFoundError: [Errno 2] No such file or directory: 'x'`); anything else as is.
fn named(py: Python<'_>, err: PyErr, path: &Bound<'_, PyAny>) -> PyErr {
    let value = err.value(py);
    if !value.is_instance_of::<PyOSError>() {
        return err;
    }
    let errno = value
        .getattr("errno")
        .and_then(|errno| errno.extract::<i32>());
    let strerror = errno.as_ref().ok().map(|errno| {
        py.import("os")
            .and_then(|os| os.getattr("strerror"))
            .and_then(|strerror| strerror.call1((*errno,)))
    });
    match (errno, strerror) {
        (Ok(errno), Some(Ok(strerror))) => {
            PyOSError::new_err((errno, strerror.unbind(), path.clone().unbind()))
        }
        _ => err,
    }
}
