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

/// How many references a stock takes from the count at a time, and gives back once it
/// holds twice as many: few enough that a thread holds little, many enough that the
/// shared counter is touched once in hundreds of tasks or ops.
pub(crate) const STOCK_BATCH: usize = 256;

/// The references one thread holds to hand out without touching the shared counter.
/// It only counts: its methods say how many references the caller must acquire from
/// or release to the counter to keep the count true.
#[derive(Clone, Copy)]
pub(crate) struct Stock(usize);

impl Stock {
    pub(crate) const EMPTY: Stock = Stock(0);

    /// Hands one reference out; returns how many the caller must first acquire (a
    /// batch when the stock was empty, else none).
    pub(crate) fn take_one(&mut self) -> usize {
        if self.0 == 0 {
            self.0 = STOCK_BATCH - 1;
            STOCK_BATCH
        } else {
            self.0 -= 1;
            0
        }
    }

    /// Takes one reference back; returns how many the caller must release (a batch
    /// once the stock holds two, else none). What stays keeps the count above zero.
    pub(crate) fn put_back(&mut self) -> usize {
        self.0 += 1;
        if self.0 >= 2 * STOCK_BATCH {
            self.0 -= STOCK_BATCH;
            STOCK_BATCH
        } else {
            0
        }
    }

    /// Empties the stock; returns how many references the caller must release.
    pub(crate) fn take_all(&mut self) -> usize {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{Stock, STOCK_BATCH};

    #[test]
    fn a_stock_acquires_and_releases_in_batches_and_keeps_the_count_true() {
        let mut stock = Stock::EMPTY;
        // Held by the stock's owner or handed out: always what was acquired.
        let (mut acquired, mut handed_out) = (0, 0);
        for _ in 0..3 * STOCK_BATCH + 1 {
            acquired += stock.take_one();
            handed_out += 1;
        }
        assert_eq!(acquired, 4 * STOCK_BATCH, "one batch at a time");
        for _ in 0..3 * STOCK_BATCH + 1 {
            acquired -= stock.put_back();
            handed_out -= 1;
            assert!(stock.0 < 2 * STOCK_BATCH, "a stock never holds two batches");
        }
        assert_eq!(handed_out, 0);
        assert_eq!(acquired - stock.take_all(), 0, "nothing left over or lost");
        assert_eq!(stock.take_all(), 0);
    }
}
