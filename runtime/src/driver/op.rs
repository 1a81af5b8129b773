//! The op core: what an operation is for both backends ([`OpCode`], [`Fallback`]) and
//! its future ([`Op`]), which hands its data to the in-flight table when dropped early.
//!
//! The lifecycle transitions themselves (complete, poll, abandon) are
//! [`InFlightTable`](super::inflight::InFlightTable) methods, beside the enum; the op
//! kinds (`crate::op`) are leaf files over this.

use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use io_uring::squeue;

use super::inflight::{Abandoned, Polled};
use super::{Completion, DriverRef};

/// What an operation is, for both drivers.
///
/// # Safety
/// Every pointer placed in the entry returned by `uring_entry`, and every pointer a
/// fallback syscall uses, must point into memory owned by `self` that does not move when
/// `self` is moved (heap memory), valid until `self` is dropped. Likewise every fd they
/// name must be held open by `self` (an [`OpFd`]) until `self` is dropped.
pub unsafe trait OpCode: std::marker::Send + 'static + Sized {
    type Output;

    /// The submission queue entry. `user_data` is set by the driver.
    fn uring_entry(&mut self) -> squeue::Entry;

    /// How the fallback driver performs this op where io_uring cannot be used.
    fn fallback(&mut self) -> Fallback;

    /// Turns the completion into the op's result, handing back owned buffers.
    fn complete(self, result: io::Result<u32>, flags: u32) -> Self::Output;

    /// Called instead of `complete` when nobody is left to collect the result (the future
    /// was dropped). Ops that create an fd close it here.
    fn discard(self, result: io::Result<u32>) {
        let _ = result;
    }
}

/// A syscall the fallback driver runs in place of a submission. It captures raw
/// pointers into the op's own memory, which the driver keeps alive until it returns.
pub struct Syscall(Box<dyn FnMut() -> io::Result<u32> + std::marker::Send>);

impl Syscall {
    pub fn new(f: impl FnMut() -> io::Result<u32> + std::marker::Send + 'static) -> Self {
        Syscall(Box::new(f))
    }
    pub(crate) fn call(&mut self) -> io::Result<u32> {
        (self.0)()
    }
}

/// Which readiness a fallback socket op waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Readable,
    Writable,
}

/// How the fallback driver performs an op.
pub enum Fallback {
    /// A call that may block (files, metadata): runs on the blocking pool.
    Blocking(Syscall),
    /// A non-blocking call on `fd`, retried each time `fd` reports `interest` while it
    /// fails with `EAGAIN`/`EWOULDBLOCK`/`EINPROGRESS`-style results. `fd` is the op's
    /// own, open for as long as the driver holds the op.
    Readiness {
        fd: RawFd,
        interest: Interest,
        call: Syscall,
    },
    /// Readiness alone (poll_add): completes with the poll mask once `fd` is ready.
    Poll { fd: RawFd, interest: Interest },
    /// Completes with `-ETIME` at the deadline.
    Timer(Instant),
    /// Completes at once with this result.
    Immediate(io::Result<u32>),
}

/// Data of a dropped op kept by the driver; see [`super::inflight::Lifecycle::Ignored`].
pub(crate) struct Ignored<T>(pub(crate) T);

enum State {
    InFlight {
        driver: DriverRef,
        user_data: u64,
    },
    /// Completed before it ever reached a ring (the fallback finished it on the spot).
    Done(Completion),
    /// Never submitted (no driver on this thread, or the ring refused it).
    Failed(io::Error),
    Collected,
}

/// A submitted operation. Await it for the result; drop it to cancel.
///
/// Dropping an `Op` whose completion has not arrived asks the ring to cancel it and leaves
/// its data (buffers, fds, addresses) with the driver until the kernel reports back, so
/// the kernel never writes into freed memory.
pub struct Op<T: OpCode> {
    data: Option<T>,
    state: State,
}

// The op's data is never pinned: the kernel sees only heap memory it owns.
impl<T: OpCode> Unpin for Op<T> {}

impl<T: OpCode> Op<T> {
    /// Submits `data` on the current thread's ring (a runtime worker, or a `block_on`
    /// caller). Outside a runtime the op completes with an error.
    pub fn submit(mut data: T) -> Op<T> {
        let state = match super::submit(&mut data) {
            Ok(Submitted::InFlight { driver, user_data }) => State::InFlight { driver, user_data },
            Ok(Submitted::Done(completion)) => State::Done(completion),
            Err(err) => State::Failed(err),
        };
        Op {
            data: Some(data),
            state,
        }
    }

    /// Asks the ring to cancel this op. It still completes (usually with `ECANCELED`, or
    /// with its result if it finished first); await it to get the buffers back.
    pub fn cancel(&self) {
        if let State::InFlight { driver, user_data } = &self.state {
            driver.cancel(*user_data);
        }
    }

    fn finish(&mut self, completion: Completion) -> T::Output {
        self.state = State::Collected;
        let data = self.data.take().expect("op polled after completion");
        data.complete(completion.io_result(), completion.flags)
    }
}

/// What the driver did with a submission.
pub(crate) enum Submitted {
    InFlight { driver: DriverRef, user_data: u64 },
    Done(Completion),
}

impl<T: OpCode> Future for Op<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.get_mut();
        let completion = match &mut this.state {
            State::Failed(_) => {
                let State::Failed(err) = std::mem::replace(&mut this.state, State::Collected)
                else {
                    unreachable!()
                };
                let data = this.data.take().expect("op polled after completion");
                return Poll::Ready(data.complete(Err(err), 0));
            }
            State::Done(completion) => *completion,
            State::InFlight { driver, user_data } => {
                // A foreign waker's clone that panics leaves the table as it was, and
                // the lock is released on unwinding (see `TableLock`).
                match driver.ops.lock().poll(*user_data, cx.waker()) {
                    Polled::Ready(completion) => completion,
                    Polled::Pending => return Poll::Pending,
                }
            }
            State::Collected => panic!("op polled after completion"),
        };
        Poll::Ready(this.finish(completion))
    }
}

impl<T: OpCode> Drop for Op<T> {
    fn drop(&mut self) {
        let Some(data) = self.data.take() else {
            return;
        };
        match std::mem::replace(&mut self.state, State::Collected) {
            State::Done(completion) => data.discard(completion.io_result()),
            State::Failed(err) => data.discard(Err(err)),
            State::InFlight { driver, user_data } => {
                let abandoned = driver
                    .ops
                    .lock()
                    .abandon(user_data, Box::new(Ignored(data)));
                // Outside the table's lock: discarding runs the op's own code.
                match abandoned {
                    Abandoned::Completed(data, completion) => data.discard(completion),
                    Abandoned::Kept => driver.cancel(user_data),
                    Abandoned::Gone => {}
                }
            }
            State::Collected => {}
        }
    }
}

/// A buffer length as an SQE carries it: one op moves at most `u32::MAX` bytes (the
/// caller sees a short count, as with any partial read or write).
pub(crate) fn io_len(len: usize) -> u32 {
    len.min(u32::MAX as usize) as u32
}

/// Turns a libc return value into the `io::Result<u32>` a completion carries.
pub(crate) fn cvt(ret: isize) -> io::Result<u32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u32)
    }
}

/// Whether the fallback driver is the current thread's (sockets it creates must then be
/// non-blocking, since it waits for readiness instead of submitting).
pub(crate) fn fallback_active() -> bool {
    super::with_current(|driver| driver.is_fallback()).unwrap_or(false)
}
