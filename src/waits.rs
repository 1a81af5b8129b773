//! Blocking calls that park a virtual thread, and block the plain way elsewhere.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use ringloom::op::{OpFd, PollAdd};

use crate::errors::os_error;
use crate::frames::ParkedOn;
use crate::vthread;

/// Sleeps for `seconds`. In a virtual thread this parks it on a ringloom timer and the
/// worker runs others meanwhile; elsewhere it behaves as `time.sleep` (the GIL is
/// released while the thread sleeps).
#[pyfunction]
pub(crate) fn sleep(py: Python<'_>, seconds: f64) -> PyResult<()> {
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyValueError::new_err("sleep length must be a non-negative number"))?;
    let on = ParkedOn::Sleep(duration);
    if let Some(parked) = vthread::park(py, Box::pin(ringloom::time::sleep(duration)), on) {
        return parked;
    }
    py.detach(|| std::thread::sleep(duration));
    py.check_signals()
}

/// Waits until `fd` is ready for `events` (a poll(2) mask such as `select.POLLIN`) and
/// returns the ready mask, or 0 when `timeout` (seconds; `None` waits forever) runs out
/// first. In a virtual thread this parks it on an io_uring POLL_ADD; elsewhere it is
/// poll(2) with the GIL released. A descriptor that is not open raises `OSError`.
#[pyfunction]
#[pyo3(signature = (fd, events, timeout = None))]
pub(crate) fn wait_fd(
    py: Python<'_>,
    fd: RawFd,
    events: u32,
    timeout: Option<f64>,
) -> PyResult<u32> {
    let timeout = duration(timeout)?;
    let ready = wait(py, &[(fd, events)], timeout, true)?;
    Ok(ready.first().map_or(0, |&(_, revents)| revents))
}

/// Waits until `fd` is ready for `events`, for a caller whose non-blocking call on it
/// just found it not ready: no zero-timeout poll first, straight to the ring (or, out
/// of a virtual thread, to poll(2)). A descriptor that is not open raises `OSError`.
pub(crate) fn wait_not_ready(py: Python<'_>, fd: RawFd, events: u32) -> PyResult<()> {
    wait_with(py, &[(fd, events)], None, true, Precheck::No).map(drop)
}

/// As `wait_not_ready`, for at most `timeout`: false if it ran out first.
pub(crate) fn wait_not_ready_for(
    py: Python<'_>,
    fd: RawFd,
    events: u32,
    timeout: Duration,
) -> PyResult<bool> {
    wait_with(py, &[(fd, events)], Some(timeout), true, Precheck::No).map(|ready| !ready.is_empty())
}

/// Waits until at least one of `fds` (pairs of descriptor and poll(2) mask) is ready,
/// or `timeout` (seconds; `None` waits forever) runs out. Returns the ready pairs of
/// descriptor and returned mask (empty on timeout); a descriptor that is not open is
/// reported with `POLLNVAL`, as poll(2) does. In a virtual thread this parks it on one
/// io_uring POLL_ADD a descriptor: the first completion (or the timeout) wins and the
/// other polls are cancelled. Elsewhere it is poll(2) with the GIL released.
///
/// This is `select.select` and `poll()` in a virtual thread, and a loop around them
/// may be waiting for another virtual thread of its worker to drain what it finds
/// ready (multiprocessing's pool waits on its result pipe while its result thread
/// reads it): so a wait with a timeout that finds something ready lets the worker's
/// other virtual threads run once before it answers, as a preempted OS thread would.
#[pyfunction]
#[pyo3(signature = (fds, timeout = None))]
pub(crate) fn wait_fds(
    py: Python<'_>,
    fds: Vec<(RawFd, u32)>,
    timeout: Option<f64>,
) -> PyResult<Vec<(RawFd, u32)>> {
    let timeout = duration(timeout)?;
    wait_with(py, &fds, timeout, false, Precheck::ThenYield)
}

fn duration(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout
        .map(|secs| {
            Duration::try_from_secs_f64(secs)
                .map_err(|_| PyValueError::new_err("timeout must be a non-negative number"))
        })
        .transpose()
}

/// One poll(2) call over `fds`, retried on EINTR (signals checked between tries) with
/// what is left of `timeout`; the GIL is released while it waits.
fn poll_fds(py: Python<'_>, fds: &mut [libc::pollfd], timeout: Option<Duration>) -> PyResult<()> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // Round up, so a wait never ends before its time.
                let ms = left.as_nanos().div_ceil(1_000_000);
                ms.min(libc::c_int::MAX as u128) as libc::c_int
            }
        };
        let len = fds.len() as libc::nfds_t;
        let ptr = fds.as_mut_ptr() as usize;
        // SAFETY: `fds` is a valid, exclusively borrowed array of `len` entries for the
        // duration of the call.
        let n = if ms == 0 {
            unsafe { libc::poll(ptr as *mut libc::pollfd, len, 0) }
        } else {
            py.detach(|| unsafe { libc::poll(ptr as *mut libc::pollfd, len, ms) })
        };
        if n >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(os_error(err));
        }
        py.check_signals()?;
    }
}

fn ready_of(fds: &[libc::pollfd]) -> Vec<(RawFd, u32)> {
    fds.iter()
        .filter(|p| p.revents != 0)
        .map(|p| (p.fd, p.revents as u16 as u32))
        .collect()
}

pub(crate) fn wait(
    py: Python<'_>,
    fds: &[(RawFd, u32)],
    timeout: Option<Duration>,
    nval_is_error: bool,
) -> PyResult<Vec<(RawFd, u32)>> {
    wait_with(py, fds, timeout, nval_is_error, Precheck::Yes)
}

/// What a wait in a virtual thread does before it goes to the ring.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Precheck {
    /// Nothing: the caller's own non-blocking call just found the descriptor not ready.
    No,
    /// A zero-timeout poll(2): if something is ready, that is the answer.
    Yes,
    /// As `Yes`, but when something is ready (and the wait has a timeout other than
    /// zero) the worker's other virtual threads run once first, and the answer is the
    /// poll(2) made after that (see `wait_fds`).
    ThenYield,
}

fn wait_with(
    py: Python<'_>,
    fds: &[(RawFd, u32)],
    timeout: Option<Duration>,
    nval_is_error: bool,
    precheck: Precheck,
) -> PyResult<Vec<(RawFd, u32)>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events: events as libc::c_short,
            revents: 0,
        })
        .collect();
    let check = |ready: Vec<(RawFd, u32)>| -> PyResult<Vec<(RawFd, u32)>> {
        if nval_is_error && ready.iter().any(|&(_, r)| r & libc::POLLNVAL as u32 != 0) {
            return Err(os_error(io::Error::from_raw_os_error(libc::EBADF)));
        }
        Ok(ready)
    };
    if !vthread::in_virtual_thread(py)? {
        poll_fds(py, &mut pollfds, timeout)?;
        return check(ready_of(&pollfds));
    }
    // Ready already (or a bad descriptor): no trip through the ring.
    if precheck != Precheck::No && !pollfds.is_empty() {
        poll_fds(py, &mut pollfds, Some(Duration::ZERO))?;
        let mut ready = ready_of(&pollfds);
        if !ready.is_empty() && precheck == Precheck::ThenYield && timeout != Some(Duration::ZERO) {
            let on = ParkedOn::Sleep(Duration::ZERO);
            if let Some(parked) = vthread::park(py, Box::pin(ringloom::yield_now()), on) {
                parked?;
            }
            for pollfd in &mut pollfds {
                pollfd.revents = 0;
            }
            poll_fds(py, &mut pollfds, Some(Duration::ZERO))?;
            ready = ready_of(&pollfds);
        }
        if !ready.is_empty() || timeout == Some(Duration::ZERO) {
            return check(ready);
        }
    } else if timeout == Some(Duration::ZERO) {
        return Ok(Vec::new());
    }
    // Under io_uring a poll names the descriptor only until it is submitted (at this
    // worker's next ring enter, before any other Python runs on it... except the other
    // virtual threads of this turn); from then on the kernel holds the file itself, and
    // cancellation goes by user_data. So the number is lent, not duplicated: a parked
    // socket costs one descriptor, not two. The fallback driver's epoll removes a
    // registration by number, which a reused number would get wrong, so there each op
    // gets its own duplicate, closed once its completion arrives.
    let lend = matches!(
        ringloom::driver::current_kind(),
        Some(ringloom::driver::DriverKind::Uring(_))
    );
    let mut polls: Vec<(RawFd, Pin<Box<PollFuture>>)> = Vec::with_capacity(fds.len());
    for &(fd, events) in fds {
        let op_fd = if lend {
            // SAFETY: the contract of `borrowed` (open until completion) guards against
            // an op acting on another file that got the number. A POLL_ADD acts on
            // nothing: it resolves the number once, at submission, and then holds the
            // file. If Python closed `fd` (and the number was reused) before this turn's
            // ring enter, the worst is a readiness report for the other file: every
            // caller treats readiness as a hint and retries its own non-blocking call,
            // which fails on its own closed socket. No memory is lent to the kernel.
            unsafe { OpFd::borrowed(fd) }
        } else {
            // SAFETY: the borrow lasts only for the dup call; an fd that is not open
            // makes the dup fail with EBADF.
            match unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() {
                Ok(own) => OpFd::from(own),
                Err(err) if err.raw_os_error() == Some(libc::EBADF) && !nval_is_error => {
                    return Ok(vec![(fd, libc::POLLNVAL as u32)]);
                }
                // Out of descriptors: a wait needs none of its own, so it lends the
                // number rather than fail with EMFILE where a stock one would not.
                Err(err) if out_of_descriptors(&err) => {
                    // SAFETY: as for io_uring above, nothing but readiness rides on
                    // the number: if it is closed and reused while registered, the
                    // other file's readiness is a hint the caller's own retry answers,
                    // and no memory is lent.
                    unsafe { OpFd::borrowed(fd) }
                }
                Err(err) => return Err(os_error(err)),
            }
        };
        polls.push((fd, Box::pin(PollAdd::submit(op_fd, events))));
    }
    let result: Rc<RefCell<Option<io::Result<Ready>>>> = Rc::default();
    let slot = result.clone();
    let on = ParkedOn::Poll {
        fd: fds.first().map_or(-1, |&(fd, _)| fd),
        events: fds.first().map_or(0, |&(_, events)| events),
        others: fds.len().saturating_sub(1),
    };
    let mut any = AnyReady { polls };
    let waiting = async move {
        let outcome = match timeout {
            None => (&mut any).await,
            Some(timeout) => ringloom::time::timeout(timeout, &mut any)
                .await
                .unwrap_or_else(|_elapsed| Ok(Vec::new())),
        };
        any.settle().await;
        *slot.borrow_mut() = Some(outcome);
    };
    match vthread::park(py, Box::pin(waiting), on) {
        Some(parked) => parked?,
        None => return Err(PyRuntimeError::new_err("wait left its virtual thread")),
    }
    let outcome = result.borrow_mut().take();
    match outcome {
        Some(ready) => check(ready.map_err(os_error)?),
        None => Err(PyRuntimeError::new_err(
            "wait resumed before its poll completed",
        )),
    }
}

type PollFuture = ringloom::op::Op<PollAdd>;

/// Whether a failed `dup` means the process (or the system) has no descriptor to spare.
pub(crate) fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Ready descriptors with their returned masks.
type Ready = Vec<(RawFd, u32)>;

/// Completes when at least one poll does, with every poll ready at that moment. The
/// others are dropped with it, which cancels them.
/// The polls of one wait: the first to complete (or the first error) ends it. Those
/// that completed leave `polls`; the rest are still in flight.
struct AnyReady {
    polls: Vec<(RawFd, Pin<Box<PollFuture>>)>,
}

impl AnyReady {
    /// Cancels the polls still in flight and waits until each has completed. A poll in
    /// flight holds its file: a socket the caller closes right after the wait (a server
    /// closing its listener after a select that timed out) would otherwise go on
    /// accepting until the worker's next ring turn completed the cancellation.
    async fn settle(&mut self) {
        for (_, poll) in &self.polls {
            poll.cancel();
        }
        for (_, poll) in self.polls.drain(..) {
            let _ = poll.await;
        }
    }
}

impl Future for AnyReady {
    type Output = io::Result<Vec<(RawFd, u32)>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut ready = Vec::new();
        let mut failed = None;
        self.polls
            .retain_mut(|(fd, poll)| match poll.as_mut().poll(cx) {
                Poll::Pending => true,
                Poll::Ready(Ok(revents)) => {
                    ready.push((*fd, revents));
                    false
                }
                Poll::Ready(Err(err)) => {
                    failed.get_or_insert(err);
                    false
                }
            });
        if let Some(err) = failed {
            return Poll::Ready(Err(err));
        }
        if ready.is_empty() {
            Poll::Pending
        } else {
            // In the order of the descriptors asked for, as before.
            Poll::Ready(Ok(ready))
        }
    }
}

/// Parks the calling virtual thread until `future` completes and returns its output.
/// `None` when the caller is not a virtual thread (nothing is polled then); `Some(Err)`
/// when the greenlet is thrown an exception while parked: the future is dropped with
/// its task, and whatever it submitted keeps its buffers and fd until the kernel is done.
pub(crate) fn park_for<T: 'static>(
    py: Python<'_>,
    future: impl Future<Output = T> + 'static,
    on: ParkedOn,
) -> Option<PyResult<T>> {
    let result: Rc<RefCell<Option<T>>> = Rc::default();
    let slot = result.clone();
    let waiting = async move {
        let output = future.await;
        *slot.borrow_mut() = Some(output);
    };
    match vthread::park(py, Box::pin(waiting), on)? {
        Ok(()) => {}
        Err(err) => return Some(Err(err)),
    }
    let output = result.borrow_mut().take();
    Some(output.ok_or_else(|| PyRuntimeError::new_err("resumed before its wait completed")))
}
