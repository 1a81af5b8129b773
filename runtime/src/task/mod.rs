//! Tasks: a future and its result in one allocation, with an atomic state that says
//! whether it is queued, running, or done.
//!
//! A task is referenced from run queues, from wakers, from its `JoinHandle`, and from
//! the registry of the executor thread that owns it; the registry's reference is what
//! lets shutdown drop every unfinished future on the right thread.

use std::sync::Arc;

mod cell;
mod join;
mod state;

pub(crate) use cell::new_task;
pub use join::{JoinError, JoinHandle};

/// A task as the scheduler sees it.
pub(crate) type Task = Arc<dyn Runnable>;

pub(crate) trait Runnable: Send + Sync + 'static {
    /// Polls the future once. Only the scheduler calls this, on a thread allowed to poll
    /// it (any worker for a `Send` task, the owner for a local one).
    fn run(self: Arc<Self>);

    /// Drops the future without polling it and completes the task as cancelled; used at
    /// shutdown, on the owning thread, when no thread is running tasks.
    fn shut_down(self: Arc<Self>);

    /// The worker that last ran it, if any; a wake-up from another thread queues it there.
    fn home(&self) -> usize;
}
