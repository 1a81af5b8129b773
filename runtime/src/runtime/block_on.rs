//! `block_on`: the calling thread becomes an executor for the duration, with a ring of
//! its own, so the root future (which need not be `Send`) and its `spawn_local` tasks run
//! here while `spawn`ed tasks go to the workers.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::Runtime;
use crate::driver::{self, Driver, DriverShared};
use crate::scheduler::{enter_context, in_context, Executor};

/// Local tasks run between two looks at the root future and the ring.
const BATCH: usize = 64;

struct RootWaker {
    woken: AtomicBool,
    driver: Arc<DriverShared>,
}

impl Wake for RootWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.driver.unpark();
    }
}

/// Undoes `block_on`'s setup even if the root future panics: drops the local tasks on
/// this thread, lets the ring return what it holds, and restores the thread's state.
struct Teardown {
    executor: Arc<Executor>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        // Tasks that have waited are in the registry, the others still queued.
        let queued = std::iter::from_fn(|| self.executor.local_queue.pop());
        for task in self.executor.take_registry().into_iter().chain(queued) {
            task.shut_down();
        }
        driver::with_current(|driver| driver.drain(Duration::from_secs(5)));
        drop(Driver::exit());
    }
}

impl Runtime {
    /// Runs `future` to completion on the calling thread and returns its output.
    ///
    /// # Panics
    /// If called from inside a runtime (a worker, or another `block_on`), or if this
    /// thread cannot get even the fallback driver (no eventfd or epoll).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        assert!(
            !in_context(),
            "Runtime::block_on called from inside a ringloom runtime; spawn the future instead"
        );
        let driver = Driver::new(&self.pool().driver_config)
            .unwrap_or_else(|err| panic!("ringloom: cannot create a driver for block_on: {err}"));
        let shared = driver.shared().clone();
        let executor = Arc::new(Executor::new(None));
        let _ = executor.driver.set(shared.clone());
        driver.enter();
        crate::task::enable_cell_slab();
        let _context = enter_context(self.pool().clone(), executor.clone());
        let _teardown = Teardown {
            executor: executor.clone(),
        };

        let root = Arc::new(RootWaker {
            woken: AtomicBool::new(true),
            driver: shared.clone(),
        });
        let waker = Waker::from(root.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            if root.woken.swap(false, Ordering::SeqCst) {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return output;
                }
            }
            let mut ran = 0;
            while ran < BATCH {
                let Some(task) = executor.local_queue.pop() else {
                    break;
                };
                crate::scheduler::bump(&executor.counters.polls);
                task.run();
                ran += 1;
            }
            let woke = driver::with_current(|driver| driver.turn(None))
                .and_then(Result::ok)
                .unwrap_or(0);
            if ran > 0 || woke > 0 || root.woken.load(Ordering::SeqCst) {
                continue;
            }
            shared.unpark.prepare_park();
            fence(Ordering::SeqCst);
            if !root.woken.load(Ordering::SeqCst) && executor.local_queue.is_empty() {
                let parked = self
                    .pool()
                    .hooks
                    .around_park(|| driver::with_current(|driver| driver.turn(Some(None))));
                if let Some(Err(err)) = parked {
                    log::error!("ringloom block_on: driver error while parked: {err}");
                }
            }
            shared.unpark.unparked();
        }
    }
}
