//! Tasks: a header, then the future and later its result, in one allocation, with an
//! atomic state that says whether it is queued, running, or done.
//!
//! A task is referenced from run queues, from wakers, from its `JoinHandle`, and from
//! the registry of the executor thread that owns it; the registry's reference is what
//! lets shutdown drop every unfinished future on the right thread.

mod cell;
mod header;
mod join;
pub(crate) mod region;
pub(crate) mod slab;
mod state;
mod waker;

pub(crate) use cell::new_task;
pub(crate) use header::{Header, Task, MAX_WORKERS, OUTPUT_TAKEN};
pub use join::{JoinError, JoinHandle};
pub(crate) use slab::enable_on_this_thread as enable_cell_slab;
