//! `recv`, `recv_into`, `send` and `sendall` of a blocking socket, or of one with a
//! timeout, in an intercepting virtual thread, as one native call each.
//! `ringloom.green.socket` calls them first, and takes its own path when they answer None
//! (another kind of call). A timeout bounds the whole call (`sendall` included, as
//! stock): past it the call raises the stock `TimeoutError('timed out')`.
//!
//! The Python version of each tried the stock method with `MSG_DONTWAIT`, caught the
//! `BlockingIOError` (an exception object and a traceback per wait), parked, and tried
//! again: on a request/response connection that is every read. Here the syscall's
//! `EAGAIN` is a number: the virtual thread parks on a ring poll and tries again.
//! Each try reads the descriptor from the socket object anew, so a socket closed by
//! another thread while this one was parked fails with `EBADF`, as stock, rather than
//! reading from whatever file got its number.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyMemoryError, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::os_error;
use crate::exported::Exported;
use crate::{vthread, waits};

/// The largest read staged in a worker's reusable buffer; a larger one gets its own.
const STAGED_MAX: usize = 256 * 1024;

thread_local! {
    /// Where `recv` reads before copying the bytes it got into a `bytes` object: one
    /// allocation of what arrived, rather than one of `bufsize` shrunk afterwards.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How long a call may wait: for ever (a blocking socket), or until a deadline.
#[derive(Clone, Copy)]
enum Wait {
    Forever,
    Until(Instant),
}

/// Whether the call is one for these functions (in an intercepting virtual thread,
/// without `MSG_DONTWAIT`, on a socket that is not non-blocking), and how long it may
/// wait: `gettimeout()` None is for ever, a positive timeout from now.
fn applies(sock: &Bound<'_, PyAny>, flags: i32) -> PyResult<Option<Wait>> {
    let py = sock.py();
    if flags & libc::MSG_DONTWAIT != 0 || !vthread::intercepting(py)? {
        return Ok(None);
    }
    let timeout: Option<f64> = sock
        .call_method0(pyo3::intern!(py, "gettimeout"))?
        .extract()?;
    Ok(match timeout {
        None => Some(Wait::Forever),
        Some(secs) if secs > 0.0 => Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|timeout| Instant::now().checked_add(timeout))
            .map(Wait::Until)
            .or(Some(Wait::Forever)),
        Some(_) => None,
    })
}

/// The socket's descriptor now (`fileno()`; -1 once closed, which the syscall then
/// refuses with `EBADF`).
fn fileno(sock: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    sock.call_method0(pyo3::intern!(sock.py(), "fileno"))?
        .extract()
}

/// A read of nothing from a stream socket returns at once, as the stock blocking call
/// does (with `MSG_DONTWAIT` a Unix stream socket would say `EAGAIN` and park for
/// ever); other kinds (a datagram waits for one) take the usual path.
fn zero_length_stream_read(sock: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = sock.py();
    let kind: i32 = sock.getattr(pyo3::intern!(py, "type"))?.extract()?;
    if kind != libc::SOCK_STREAM {
        return Ok(false);
    }
    if fileno(sock)? < 0 {
        return Err(os_error(io::Error::from_raw_os_error(libc::EBADF)));
    }
    Ok(true)
}

/// Runs `syscall(fd)` until it does not fail with `EAGAIN`, parking on the ring until
/// `fd` is ready for `events` between tries (within `wait`); `EINTR` runs the signal
/// handlers and tries again. The result is the syscall's count.
fn until_ready(
    sock: &Bound<'_, PyAny>,
    events: u32,
    wait: Wait,
    mut syscall: impl FnMut(RawFd) -> isize,
) -> PyResult<usize> {
    let py = sock.py();
    loop {
        let fd = fileno(sock)?;
        let done = syscall(fd);
        if let Ok(count) = usize::try_from(done) {
            return Ok(count);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => match wait {
                Wait::Forever => waits::wait_not_ready(py, fd, events)?,
                Wait::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !waits::wait_not_ready_for(py, fd, events, left)? {
                        return Err(PyTimeoutError::new_err("timed out"));
                    }
                }
            },
            Some(libc::EINTR) => py.check_signals()?,
            _ => return Err(os_error(err)),
        }
    }
}

/// `sock.recv(bufsize, flags)`, parking while nothing has arrived; None when the call is
/// not one for it (see `applies`).
#[pyfunction]
pub(crate) fn socket_recv<'py>(
    sock: &Bound<'py, PyAny>,
    bufsize: isize,
    flags: i32,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let Some(wait) = applies(sock, flags)? else {
        return Ok(None);
    };
    let Ok(bufsize) = usize::try_from(bufsize) else {
        return Err(PyValueError::new_err("negative buffersize in recv"));
    };
    if bufsize == 0 && zero_length_stream_read(sock)? {
        return Ok(Some(PyBytes::new(sock.py(), b"")));
    }
    // SAFETY: `buf` is borrowed mutably for the whole call, park included.
    let recv =
        |buf: &mut [u8]| unsafe { recv_parked(sock, buf.as_mut_ptr(), buf.len(), flags, wait) };
    let py = sock.py();
    if bufsize > STAGED_MAX {
        let mut buf = Vec::new();
        buf.try_reserve_exact(bufsize)
            .map_err(|_| PyMemoryError::new_err("recv buffer too large"))?;
        buf.resize(bufsize, 0);
        let got = recv(&mut buf)?;
        return Ok(Some(PyBytes::new(py, &buf[..got])));
    }
    // The staging buffer is borrowed for each `recv` call only, never across a park:
    // a thousand virtual threads waiting on their sockets hold no buffer each.
    let mut bytes = None;
    until_ready(sock, libc::POLLIN as u32, wait, |fd| {
        STAGING.with(|staging| match staging.try_borrow_mut() {
            Ok(mut buf) => {
                if buf.len() < bufsize {
                    buf.resize(bufsize, 0);
                }
                recv_copied(fd, &mut buf[..bufsize], flags, py, &mut bytes)
            }
            // Not reachable through `recv` (nothing in here calls back into Python code),
            // but a buffer of its own is the safe answer if it ever were.
            Err(_) => recv_copied(fd, &mut vec![0; bufsize], flags, py, &mut bytes),
        })
    })?;
    // Set by the `recv` that succeeded, the only way `until_ready` returns `Ok`.
    Ok(bytes)
}

/// One `recv` into `buf`; what arrived is copied into `bytes`.
fn recv_copied<'py>(
    fd: RawFd,
    buf: &mut [u8],
    flags: i32,
    py: Python<'py>,
    bytes: &mut Option<Bound<'py, PyBytes>>,
) -> isize {
    // SAFETY: `buf` is writable for its length during the call.
    let got = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags | libc::MSG_DONTWAIT,
        )
    };
    if let Ok(got) = usize::try_from(got) {
        *bytes = Some(PyBytes::new(py, &buf[..got]));
    }
    got
}

/// `sock.recv_into(buffer, nbytes, flags)`; None when the call is not one for it.
#[pyfunction]
pub(crate) fn socket_recv_into(
    sock: &Bound<'_, PyAny>,
    buffer: &Bound<'_, PyAny>,
    nbytes: isize,
    flags: i32,
) -> PyResult<Option<usize>> {
    let Some(wait) = applies(sock, flags)? else {
        return Ok(None);
    };
    let Ok(nbytes) = usize::try_from(nbytes) else {
        return Err(PyValueError::new_err("negative buffersize in recv_into"));
    };
    let view = Exported::get(buffer, true).map_err(|_| {
        let kind = buffer
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PyTypeError::new_err(format!(
            "recv_into() argument 1 must be read-write bytes-like object, not {kind}"
        ))
    })?;
    let len = if nbytes == 0 { view.len() } else { nbytes };
    if len > view.len() {
        return Err(PyValueError::new_err(
            "buffer too small for requested bytes",
        ));
    }
    if len == 0 && zero_length_stream_read(sock)? {
        return Ok(Some(0));
    }
    // SAFETY: the exported buffer is writable and at least `len` bytes long, and stays
    // exported (so neither freed nor resized) until `view` drops, after the call.
    let got = unsafe { recv_parked(sock, view.ptr(), len, flags, wait) }?;
    Ok(Some(got))
}

/// One `recv` of up to `len` bytes into `ptr`, parking until something arrives.
///
/// # Safety
/// `ptr` is writable for `len` bytes until this returns (a park included).
unsafe fn recv_parked(
    sock: &Bound<'_, PyAny>,
    ptr: *mut u8,
    len: usize,
    flags: i32,
    wait: Wait,
) -> PyResult<usize> {
    let ptr = ptr as usize;
    until_ready(sock, libc::POLLIN as u32, wait, |fd| {
        // SAFETY: the caller's promise: `ptr..ptr + len` is writable for this call.
        unsafe {
            libc::recv(
                fd,
                ptr as *mut libc::c_void,
                len,
                flags | libc::MSG_DONTWAIT,
            )
        }
    })
}

/// One `send` of the bytes of `view` from `offset`.
fn send_from(
    sock: &Bound<'_, PyAny>,
    view: &Exported,
    offset: usize,
    flags: i32,
    wait: Wait,
) -> PyResult<usize> {
    let ptr = view.ptr() as usize + offset;
    let len = view.len() - offset;
    until_ready(sock, libc::POLLOUT as u32, wait, |fd| {
        // SAFETY: `ptr..ptr + len` lies in the exported buffer, which stays exported
        // until `view` drops.
        unsafe {
            libc::send(
                fd,
                ptr as *const libc::c_void,
                len,
                flags | libc::MSG_DONTWAIT,
            )
        }
    })
}

/// `sock.send(data, flags)`: parks while there is no room; None when the call is not one
/// for it.
#[pyfunction]
pub(crate) fn socket_send(
    sock: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    flags: i32,
) -> PyResult<Option<usize>> {
    let Some(wait) = applies(sock, flags)? else {
        return Ok(None);
    };
    let view = Exported::get(data, false)?;
    send_from(sock, &view, 0, flags, wait).map(Some)
}

/// `sock.sendall(data, flags)`: sends every byte, parking while there is no room, within
/// one timeout for the whole call. False (nothing sent) when the call is not one for it.
#[pyfunction]
pub(crate) fn socket_sendall(
    sock: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    flags: i32,
) -> PyResult<bool> {
    let Some(wait) = applies(sock, flags)? else {
        return Ok(false);
    };
    let view = Exported::get(data, false)?;
    let mut sent = 0;
    while sent < view.len() {
        sent += send_from(sock, &view, sent, flags, wait)?;
    }
    Ok(true)
}
