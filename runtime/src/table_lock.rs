//! A lock for tables that one thread uses nearly always and others now and then: a
//! driver's in-flight ops and timers, an executor's registry of waiting tasks.
//!
//! Every op and sleep takes the driver's two or three times, and every task that waits
//! takes its owner's registry twice, almost always on the owning thread and for a few
//! instructions; another thread only when it runs a stolen task. So taking it is one
//! compare-and-swap and releasing it one store (a `Mutex` releases with a second atomic
//! swap and checks poisoning on both sides); a thread that finds it held spins a
//! little, then gives its CPU away, since the holder may have been preempted.
//!
//! A panic while it is held releases it on unwinding: nothing is poisoned, and the
//! tables keep their invariants across the panics that can happen there (a foreign
//! waker's `clone`, before anything is changed).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// Spins before each yield: a holder that is running releases within them.
const SPINS: u32 = 64;

pub(crate) struct TableLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and one guard exists at a time
// (the compare-and-swap in `lock`), so moving `T` between threads is all this needs.
unsafe impl<T: Send> Send for TableLock<T> {}
// SAFETY: as above: `&TableLock` hands out `&mut T` to one thread at a time.
unsafe impl<T: Send> Sync for TableLock<T> {}

impl<T: Default> Default for TableLock<T> {
    fn default() -> Self {
        TableLock::new(T::default())
    }
}

impl<T> TableLock<T> {
    pub(crate) fn new(value: T) -> Self {
        TableLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn lock(&self) -> TableGuard<'_, T> {
        loop {
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return TableGuard { lock: self };
            }
            let mut spins = 0;
            while self.locked.load(Ordering::Relaxed) {
                if spins < SPINS {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

pub(crate) struct TableGuard<'a, T> {
    lock: &'a TableLock<T>,
}

impl<T> Deref for TableGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard is the one holder of the lock (see `lock`).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for TableGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for TableGuard<'_, T> {
    fn drop(&mut self) {
        // Release: what the holder wrote is seen by the next one to take the lock.
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::TableLock;

    #[test]
    fn threads_that_share_it_never_lose_an_update() {
        let lock = Arc::new(TableLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        // Read, then write: two steps a lost exclusion would interleave.
                        let mut guard = lock.lock();
                        let seen = *guard;
                        *guard = seen + 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*lock.lock(), 400_000);
    }

    #[test]
    fn a_panic_while_held_releases_it() {
        let lock = Arc::new(TableLock::new(1u32));
        let held = lock.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = held.lock();
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(*lock.lock(), 1);
    }
}
