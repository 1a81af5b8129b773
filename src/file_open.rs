//! Opens for the patched `open()` (`ringloom.green.file`) and for `read_file`.
//!
//! In a virtual thread an open whose path is in the dentry cache (`openat2` with
//! `RESOLVE_CACHED`) is done at once; one that must read the disk, or creates or
//! truncates, goes to the ring; a FIFO (whose open waits for the other end) goes to the
//! blocking pool. Outside virtual threads it is the plain `open(2)`, the GIL let go of.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use ringloom::op::OpenAt;

use crate::errors::os_error;
use crate::file::blocking_call;
use crate::frames::ParkedOn;
use crate::vthread;
use crate::waits::park_for;

/// Opens `path` (bytes, as `os.fsencode` gives) with `flags` and `mode`, as `os.open`
/// does, and returns the new descriptor; the opener of the patched `open()`.
///
/// In a virtual thread an open that needs no I/O (`openat2` with `RESOLVE_CACHED`,
/// opened non-blocking so a FIFO or device cannot hold it, then set back) is done at
/// once; one that must read the disk or create or truncate the file goes to the ring.
/// A FIFO is opened on the blocking pool: its open waits for the other end, and the
/// ring's opens skip that wait.
#[pyfunction]
#[pyo3(signature = (path, flags, mode = 0o666))]
pub(crate) fn file_open(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    flags: i32,
    mode: u32,
) -> PyResult<RawFd> {
    let path = fs_path(path)?;
    if !vthread::in_virtual_thread(py)? {
        let ptr = path.as_ptr() as usize;
        // SAFETY: `path` is a NUL-terminated string alive for the call.
        let fd = blocking_call(py, || unsafe {
            libc::open(ptr as *const libc::c_char, flags, mode) as isize
        })?;
        return Ok(fd as RawFd);
    }
    let cached = flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_TMPFILE) == 0;
    if cached {
        match open_cached(py, &path, flags)? {
            CachedOpen::Opened(fd, _) => return Ok(fd.into_raw_fd()),
            CachedOpen::Missed => {}
            CachedOpen::Fifo => return open_on_pool(py, path, flags, mode),
        }
    }
    let opening = OpenAt::submit(None, path, flags, mode);
    let parked =
        park_for(py, opening, ParkedOn::File("OPENAT")).expect("checked: a virtual thread");
    Ok(parked?.map_err(os_error)?.into_raw_fd())
}

/// A path as the kernel takes it: bytes as they are, `str` in the file system encoding,
/// a path-like object through `os.fsencode`, as `os.open` accepts them.
pub(crate) fn fs_path(path: &Bound<'_, PyAny>) -> PyResult<CString> {
    let encoded;
    let bytes = if let Ok(bytes) = path.cast::<PyBytes>() {
        bytes.as_bytes()
    } else {
        encoded = match path.cast::<pyo3::types::PyString>() {
            // SAFETY: `path` is a str; the call returns a new reference or null with an
            // exception set, which `from_owned_ptr_or_err` turns into the error.
            Ok(text) => unsafe {
                Bound::from_owned_ptr_or_err(
                    path.py(),
                    pyo3::ffi::PyUnicode_EncodeFSDefault(text.as_ptr()),
                )?
            },
            Err(_) => path
                .py()
                .import("os")?
                .getattr("fsencode")?
                .call1((path,))?,
        };
        encoded.cast::<PyBytes>()?.as_bytes()
    };
    CString::new(bytes).map_err(|_| PyValueError::new_err("embedded null byte"))
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive, so not constructible).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub(crate) enum CachedOpen {
    /// Opened, with what `fstat` said of it.
    Opened(OwnedFd, libc::stat),
    Missed,
    Fifo,
}

/// An open that needs no I/O, or `Missed`. `O_NONBLOCK` in `flags` is kept; without it
/// the descriptor is set back to blocking once it is known not to be a FIFO.
pub(crate) fn open_cached(py: Python<'_>, path: &CString, flags: i32) -> PyResult<CachedOpen> {
    let how = OpenHow {
        flags: (flags | libc::O_NONBLOCK) as u64,
        mode: 0,
        resolve: libc::RESOLVE_CACHED,
    };
    let fd = loop {
        // SAFETY: `path` is NUL-terminated and `how` a valid open_how, both alive for the
        // call; RESOLVE_CACHED and O_NONBLOCK keep it from blocking.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a successful open returns a new descriptor nobody else owns.
            break unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => py.check_signals()?,
            // Not in the cache, or a kernel without openat2 or RESOLVE_CACHED.
            Some(libc::EAGAIN | libc::ENOSYS | libc::EINVAL | libc::E2BIG) => {
                return Ok(CachedOpen::Missed)
            }
            // A FIFO opened for writing with no reader yet.
            Some(libc::ENXIO) => return Ok(CachedOpen::Fifo),
            _ => return Err(os_error(err)),
        }
    };
    // SAFETY: `st` is plain data that fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(os_error(io::Error::last_os_error()));
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFIFO {
        return Ok(CachedOpen::Fifo);
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL changes only the status flags of a descriptor we own; the
        // caller's flags, without O_NONBLOCK, are the ones it asked for.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) } < 0 {
            return Err(os_error(io::Error::last_os_error()));
        }
    }
    Ok(CachedOpen::Opened(fd, st))
}

pub(crate) fn open_on_pool(
    py: Python<'_>,
    path: CString,
    flags: i32,
    mode: u32,
) -> PyResult<RawFd> {
    let opening = ringloom::spawn_blocking(move || loop {
        // SAFETY: `path` is NUL-terminated and owned by this closure.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd >= 0 {
            // SAFETY: a successful open returns a new descriptor nobody else owns; owning
            // it here closes it if the virtual thread is gone when it arrives.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    });
    let parked = park_for(py, opening, ParkedOn::Blocking).expect("checked: a virtual thread")?;
    let opened = parked.map_err(|err| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("the open failed in the pool: {err}"))
    })?;
    Ok(opened.map_err(os_error)?.into_raw_fd())
}
