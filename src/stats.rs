//! Per-`Loom` counters of its virtual threads, shared by the `Loom` and its tasks.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters a virtual thread updates as it starts, parks and finishes. Relaxed atomics:
/// they are read for monitoring only.
#[derive(Default)]
pub(crate) struct Counters {
    /// Virtual threads whose greenlet was created (cancelled ones never start).
    pub(crate) started: AtomicU64,
    /// Virtual threads that returned or raised.
    pub(crate) finished: AtomicU64,
    /// Virtual threads parked now (waiting for a ring completion).
    pub(crate) parked: AtomicUsize,
    /// Times any virtual thread parked.
    pub(crate) parks: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
