//! Handles to a spawned task's result.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use super::header::{Header, Task};

/// Why a task produced no value.
pub struct JoinError {
    kind: JoinErrorKind,
}

enum JoinErrorKind {
    Cancelled,
    /// Boxed again so that a `JoinError` is one thin pointer: every finished task's
    /// cell has room for its `Result<T, JoinError>`, and panics are rare.
    Panic(Box<Box<dyn Any + Send + 'static>>),
}

impl JoinError {
    pub(crate) fn cancelled() -> JoinError {
        JoinError {
            kind: JoinErrorKind::Cancelled,
        }
    }

    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> JoinError {
        JoinError {
            kind: JoinErrorKind::Panic(Box::new(payload)),
        }
    }

    /// The task was aborted, or the runtime shut down before it finished.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, JoinErrorKind::Cancelled)
    }

    pub fn is_panic(&self) -> bool {
        matches!(self.kind, JoinErrorKind::Panic(_))
    }

    /// The panic payload, to resume the panic with `std::panic::resume_unwind`.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self.kind {
            JoinErrorKind::Panic(payload) => *payload,
            JoinErrorKind::Cancelled => panic!("JoinError::into_panic on a cancelled task"),
        }
    }

    fn panic_message(&self) -> Option<&str> {
        match &self.kind {
            JoinErrorKind::Panic(payload) => (**payload)
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| (**payload).downcast_ref::<String>().map(String::as_str)),
            JoinErrorKind::Cancelled => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            JoinErrorKind::Cancelled => write!(f, "JoinError::Cancelled"),
            JoinErrorKind::Panic(_) => write!(f, "JoinError::Panic({:?})", self.panic_message()),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            JoinErrorKind::Cancelled => write!(f, "task was cancelled"),
            JoinErrorKind::Panic(_) => match self.panic_message() {
                Some(message) => write!(f, "task panicked: {message}"),
                None => write!(f, "task panicked"),
            },
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(err: JoinError) -> std::io::Error {
        std::io::Error::other(err.to_string())
    }
}

/// An owned permission to await a task's result. Dropping it detaches the task.
pub struct JoinHandle<T> {
    /// One counted reference to the task, whose output type is `T`.
    task: NonNull<Header>,
    _output: PhantomData<T>,
}

// SAFETY: the handle only reads the task's `Send` output and its thread-safe state.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` only reads the atomic state.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// # Safety
    /// `task` must be a live task whose output type is `T`, with no other join handle;
    /// the caller hands one of its references to the handle.
    pub(crate) unsafe fn from_raw(task: NonNull<Header>) -> JoinHandle<T> {
        JoinHandle {
            task,
            _output: PhantomData,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the handle's reference keeps the task alive.
        unsafe { self.task.as_ref() }
    }

    /// Cancels the task: its future is dropped at its next turn (or now, if it is idle),
    /// and awaiting this handle gives a cancelled `JoinError`. A finished task keeps its
    /// result.
    pub fn abort(&self) {
        let header = self.header();
        if header.state.abort() {
            // Queue it so that its next turn drops the future.
            header.ref_inc();
            // SAFETY: the reference just added goes to the run queue.
            header
                .scheduler
                .schedule(unsafe { Task::from_raw(self.task) });
        }
    }

    pub fn is_finished(&self) -> bool {
        self.header().state.is_complete()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut out: Poll<Result<T, JoinError>> = Poll::Pending;
        // SAFETY: the handle holds a reference, is the task's only handle, and `out`
        // has the type `poll_join` writes for a task whose output is `T`.
        unsafe {
            (self.header().vtable.poll_join)(self.task, &mut out as *mut _ as *mut (), cx.waker())
        };
        out
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        // SAFETY: the handle owns one reference and is gone after this.
        unsafe { Header::ref_dec(self.task) }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
