//! References counted apart from an `Arc`, that together hold one strong count of it:
//! the pool's task references (`scheduler/home.rs`) and the driver's op and sleep
//! references (`driver/refs.rs`). A thread that owns the thing keeps a stock of them,
//! so taking and giving back one there is a plain add, not a locked instruction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Adds `count` to `refs`, a counter inside `shared`; the first references take the
/// `Arc` they share from then on. The caller holds an `Arc` of `shared` meanwhile, and
/// whoever releases the last of them received one of these after this increment.
pub(crate) fn acquire<T>(shared: &Arc<T>, refs: &AtomicUsize, count: usize) {
    if refs.fetch_add(count, Ordering::Relaxed) == 0 {
        // SAFETY: `shared` is a live `Arc`.
        unsafe { Arc::increment_strong_count(Arc::as_ptr(shared)) };
    }
}

/// Takes `count` from the counter `refs(shared)`; the last reference drops the `Arc`
/// they held.
///
/// # Safety
/// `shared` came from an `Arc` whose counter `refs` returns; the caller owns `count` of
/// its references and uses none of them after.
pub(crate) unsafe fn release<T>(shared: *const T, refs: fn(&T) -> &AtomicUsize, count: usize) {
    // SAFETY: the caller's references keep `shared` alive until the decrement.
    let counter = refs(unsafe { &*shared });
    if counter.fetch_sub(count, Ordering::Release) != count {
        return;
    }
    // Every holder's last use happens-before the drop (as in `Arc::drop`).
    counter.load(Ordering::Acquire);
    // SAFETY: the `Arc` the references held (see `acquire`), given back once, by the
    // release that took the count to zero.
    drop(unsafe { Arc::from_raw(shared) });
}
