//! Native synchronization primitives for virtual threads and OS threads alike.
//!
//! Their state changes happen in Rust under a short internal lock that never spans a
//! wait or a call into Python, so a `KeyboardInterrupt` (raised only where a wait checks
//! for signals) or a `GreenletExit` (thrown into a parked virtual thread) can never
//! leave one half changed or its internal lock held: the Python versions they replace
//! could be interrupted between taking their internal lock and queueing their waiter,
//! and the next `set()` from a worker then blocked that worker for ever.

mod condition;
mod event;
mod lock;
mod queue;
mod queue_calls;
mod queue_storage;

pub(crate) use condition::Condition;
pub(crate) use event::Event;
pub(crate) use lock::{Lock, RLock};
pub(crate) use queue::QueueCore;
pub(crate) use queue_calls::{install as install_queue_calls, install_queue_methods};
