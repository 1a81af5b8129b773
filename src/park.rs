//! Blocking calls that park a virtual thread, and block the plain way elsewhere.

use std::cell::RefCell;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use ringloom::op::{OpFd, PollAdd};

use crate::vthread;

/// Sleeps for `seconds`. In a virtual thread this parks it on a ringloom timer and the
/// worker runs others meanwhile; elsewhere it behaves as `time.sleep` (the GIL is
/// released while the thread sleeps).
#[pyfunction]
pub(crate) fn sleep(py: Python<'_>, seconds: f64) -> PyResult<()> {
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyValueError::new_err("sleep length must be a non-negative number"))?;
    if let Some(parked) = vthread::park(py, Box::pin(ringloom::time::sleep(duration))) {
        return parked;
    }
    py.detach(|| std::thread::sleep(duration));
    py.check_signals()
}

/// Whether the caller runs in a virtual thread (its blocking calls park it).
#[pyfunction]
pub(crate) fn in_virtual_thread(py: Python<'_>) -> PyResult<bool> {
    vthread::in_virtual_thread(py)
}

/// Waits until `fd` is ready for `events` (a poll(2) mask such as `select.POLLIN`) and
/// returns the ready mask. In a virtual thread this parks it on an io_uring POLL_ADD;
/// elsewhere it is poll(2) with the GIL released.
#[pyfunction]
pub(crate) fn wait_fd(py: Python<'_>, fd: RawFd, events: u32) -> PyResult<u32> {
    if vthread::in_virtual_thread(py)? {
        // The op gets its own duplicate of the descriptor, which it closes once its
        // completion arrives: Python may close `fd` whenever it likes (even while a
        // cancelled poll is still in the ring) without the ring touching a reused number.
        // SAFETY: the borrow lasts only for the dup call; an fd that is not open makes
        // the dup fail with EBADF, which is reported.
        let own = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
        let ready: Rc<RefCell<Option<io::Result<u32>>>> = Rc::default();
        let slot = ready.clone();
        let wait = async move {
            let result = PollAdd::submit(OpFd::from(own), events).await;
            *slot.borrow_mut() = Some(result);
        };
        if let Some(parked) = vthread::park(py, Box::pin(wait)) {
            parked?;
            let result = ready.borrow_mut().take();
            return match result {
                Some(result) => Ok(result?),
                None => Err(PyRuntimeError::new_err(
                    "wait_fd resumed before its poll completed",
                )),
            };
        }
    }
    let mut pollfd = libc::pollfd {
        fd,
        events: events as libc::c_short,
        revents: 0,
    };
    loop {
        // SAFETY: `pollfd` is a valid, exclusively borrowed array of one entry for the
        // duration of the call.
        let n = py.detach(|| unsafe { libc::poll(&mut pollfd, 1, -1) });
        if n >= 0 {
            return Ok(pollfd.revents as u16 as u32);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err.into());
        }
        py.check_signals()?;
    }
}
