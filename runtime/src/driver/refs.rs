//! What keeps a driver's shared half alive for an op in flight or a registered sleep: a
//! *driver reference*, counted in `DriverShared::refs`, not an `Arc` count of its own.
//! While any driver reference exists they hold one `Arc` between them. The driver keeps
//! a stock of references to itself, so an op or sleep made and ended on the driver's own
//! thread (nearly all of them) touches no shared counter: the `Arc` count up and down
//! that each took was two locked instructions per op.

use std::ptr::NonNull;
use std::sync::Arc;

use super::{Driver, DriverShared, CURRENT};
use crate::group_refs;

/// One driver reference: derefs to the driver's shared half, which it keeps alive.
pub(crate) struct DriverRef(NonNull<DriverShared>);

// SAFETY: a `DriverRef` only gives `&DriverShared`, which is Send and Sync, and its
// count is atomic wherever it is released.
unsafe impl Send for DriverRef {}
// SAFETY: as above.
unsafe impl Sync for DriverRef {}

impl std::ops::Deref for DriverRef {
    type Target = DriverShared;

    fn deref(&self) -> &DriverShared {
        // SAFETY: this reference keeps the shared half alive.
        unsafe { self.0.as_ref() }
    }
}

impl DriverRef {
    /// A reference for an op or sleep of `driver`, from its stock.
    pub(crate) fn from_stock(driver: &mut Driver) -> DriverRef {
        let missing = driver.ref_stock.take_one();
        if missing > 0 {
            acquire(&driver.shared, missing);
        }
        DriverRef(NonNull::from(&*driver.shared))
    }

    /// A reference taken straight from the count (a thread other than the driver's, or
    /// one that cannot reach the driver now).
    pub(crate) fn new(shared: &Arc<DriverShared>) -> DriverRef {
        acquire(shared, 1);
        DriverRef(NonNull::from(&**shared))
    }

    pub(crate) fn is(&self, shared: &Arc<DriverShared>) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(shared))
    }
}

impl Drop for DriverRef {
    fn drop(&mut self) {
        // Back into the driver's stock on its own thread. Anywhere else, or while the
        // driver is busy (this drop runs inside one of its turns), or while the thread's
        // locals are being torn down: released on the count.
        let stocked = CURRENT
            .try_with(|current| match current.try_borrow_mut() {
                Ok(mut current) => match current.as_mut() {
                    Some(driver) if self.is(&driver.shared) => {
                        driver.take_back_ref();
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            })
            .unwrap_or(false);
        if !stocked {
            // SAFETY: this reference, given back once.
            unsafe { release(self.0.as_ptr(), 1) };
        }
    }
}

impl Driver {
    /// Takes back the reference of an op or sleep that ended on this thread; gives a
    /// batch back to the count if the stock has grown to twice one.
    fn take_back_ref(&mut self) {
        let surplus = self.ref_stock.put_back();
        if surplus > 0 {
            // SAFETY: a batch of the stock's references, handed over; the rest of the
            // stock keeps the count above zero, so this never frees the shared half.
            unsafe { release(Arc::as_ptr(&self.shared), surplus) };
        }
    }

    /// Gives the whole stock back (the driver is going away; its own `Arc` is still
    /// held, so this never frees the shared half).
    fn give_back_refs(&mut self) {
        let stock = self.ref_stock.take_all();
        if stock > 0 {
            // SAFETY: the stock's references, handed over once.
            unsafe { release(Arc::as_ptr(&self.shared), stock) };
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.give_back_refs();
    }
}

fn acquire(shared: &Arc<DriverShared>, count: usize) {
    group_refs::acquire(shared, &shared.refs, count);
}

/// # Safety
/// The caller owns `count` references to `shared` and uses none of them after.
unsafe fn release(shared: *const DriverShared, count: usize) {
    // SAFETY: forwarded; a driver's shared half is always made in an `Arc`.
    unsafe { group_refs::release(shared, |shared| &shared.refs, count) }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::DriverRef;
    use crate::blocking::BlockingPool;
    use crate::driver::{Driver, DriverConfig};
    use crate::group_refs::STOCK_BATCH;

    fn driver() -> Driver {
        let config = DriverConfig {
            ring_entries: 8,
            force_fallback: false,
            blocking: BlockingPool::new(1, Duration::from_secs(1)),
            #[cfg(feature = "fault-injection")]
            faults: None,
        };
        Driver::new(&config).unwrap()
    }

    #[test]
    fn references_keep_the_shared_half_alive_past_the_driver() {
        let mut driver = driver();
        let weak = Arc::downgrade(driver.shared());
        // From the stock (more than a batch), and one straight from the count.
        let mut refs: Vec<DriverRef> = (0..2 * STOCK_BATCH + 1)
            .map(|_| DriverRef::from_stock(&mut driver))
            .collect();
        refs.push(DriverRef::new(driver.shared()));
        // Some go back into the stock while the driver is current.
        assert!(driver.enter().is_none());
        refs.truncate(STOCK_BATCH);
        let driver = Driver::exit().unwrap();
        drop(driver);
        assert!(
            weak.upgrade().is_some(),
            "an op's reference keeps the driver's half"
        );
        // Released on another thread, as a stolen task's op would be.
        std::thread::spawn(move || drop(refs)).join().unwrap();
        assert!(
            weak.upgrade().is_none(),
            "no reference left, yet the half lives"
        );
    }

    #[test]
    fn the_stock_goes_back_with_the_driver() {
        let mut driver = driver();
        let weak = Arc::downgrade(driver.shared());
        for _ in 0..3 {
            let refs: Vec<_> = (0..STOCK_BATCH * 5 / 2)
                .map(|_| DriverRef::from_stock(&mut driver))
                .collect();
            assert!(driver.enter().is_none());
            drop(refs);
            driver = Driver::exit().unwrap();
        }
        drop(driver);
        assert!(weak.upgrade().is_none(), "a stock of references was kept");
    }
}
