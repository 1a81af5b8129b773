//! ringloom: an io_uring runtime for Linux.
//!
//! Worker threads each own an io_uring ring and run tasks; file, socket and timer
//! operations are submissions that park their task until the completion arrives. Idle
//! workers steal `Send` tasks from busy ones. Dropping an operation's future cancels it
//! safely: the buffers it lent the kernel stay alive until the kernel gives them back.
//! Where io_uring is unavailable, a fallback driver (epoll and a blocking pool) runs the
//! same operations.
//!
//! ```
//! let rt = ringloom::Runtime::builder().workers(2).build().unwrap();
//! let answer = rt.block_on(async {
//!     let handle = ringloom::spawn(async { 6 * 7 });
//!     handle.await.unwrap()
//! });
//! assert_eq!(answer, 42);
//! ```

pub mod blocking;
pub mod buf;
pub mod driver;
pub mod fs;
mod group_refs;
pub mod net;
pub mod op;
mod runtime;
mod scheduler;
pub mod stats;
mod table_lock;
pub mod task;
pub mod time;

pub use buf::{IoBuf, IoBufMut};
pub use runtime::{Builder, Runtime};
pub use scheduler::{
    current_worker, shuffle, spawn, spawn_blocking, spawn_local, yield_now, TaskCounters, Wrapper,
};
pub use stats::{RuntimeStats, WorkerStats};
pub use task::{JoinError, JoinHandle};

/// The result of an operation on an owned buffer: the outcome and the buffer back.
pub type BufResult<T, B> = (std::io::Result<T>, B);

/// Compiles the README's example as a doctest, so the front page cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
