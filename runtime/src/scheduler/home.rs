//! Where a task goes when it is woken: its runtime's pool (any worker may run it) or one
//! executor (a local task), as one tagged pointer so that every task header stays small.
//!
//! A pool task keeps its pool alive with a *task reference* (`Pool::task_refs`), not an
//! `Arc` count of its own: while any task reference exists, they hold one `Arc` between
//! them. A thread running in the pool's context keeps a stock of task references, so a
//! task spawned and ended there touches no shared counter (each `Arc` count up and down
//! was a locked instruction on a line other threads share, in every task's life).

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;

use super::{Executor, Pool, FAST_CONTEXT};
use crate::group_refs::{self, Stock};
use crate::task::Task;

thread_local! {
    /// Task references to the pool of this thread's context (`FAST_CONTEXT`) that this
    /// thread holds for the tasks it spawns; zero outside any context (see
    /// `flush_stock`).
    static STOCK: Cell<Stock> = const { Cell::new(Stock::EMPTY) };
}

/// Gives the stock of this thread's current context back to its pool. Called before the
/// context changes, while the context still holds its `Arc` (so this never frees the
/// pool).
pub(super) fn flush_stock() {
    let stock = STOCK.replace(Stock::EMPTY).take_all();
    if stock > 0 {
        let (pool, _) = FAST_CONTEXT.get();
        // SAFETY: the stock's references are references to the context's pool, which
        // the context (still set) keeps alive.
        unsafe { release_task_refs(pool, stock) };
    }
}

/// Adds `count` task references to `pool`.
fn acquire_task_refs(pool: &Arc<Pool>, count: usize) {
    group_refs::acquire(pool, &pool.task_refs, count);
}

/// Drops `count` task references to `pool`; the last one drops the `Arc` they held.
///
/// # Safety
/// The caller owns `count` task references to `pool` and uses none of them after.
unsafe fn release_task_refs(pool: *const Pool, count: usize) {
    // SAFETY: forwarded; a pool is always made in an `Arc`.
    unsafe { group_refs::release(pool, |pool| &pool.task_refs, count) }
}

/// Whether this thread runs in `pool`'s context (a worker or a `block_on` caller).
fn in_context_of(pool: *const Pool) -> bool {
    std::ptr::eq(FAST_CONTEXT.get().0, pool)
}

/// The low bit of the pointer: set for `Local`. Both pointees are aligned to at least 8.
const LOCAL: usize = 1;

/// An owned task reference to a pool or an owned `Arc<Executor>`, told apart by the
/// pointer's low bit.
pub(crate) struct Home(NonNull<u8>);

/// What a `Home` points to.
pub(crate) enum HomeRef<'a> {
    /// A `Send` task of a runtime: any worker may run it.
    Pool(&'a Pool),
    /// A local task: only this executor runs it.
    Local(&'a Executor),
}

// SAFETY: a `Home` is an `Arc<Pool>` or an `Arc<Executor>`, both Send and Sync.
unsafe impl Send for Home {}
// SAFETY: as above.
unsafe impl Sync for Home {}

impl Home {
    /// A home in `pool`, with a task reference from this thread's stock if it runs in
    /// the pool's context.
    pub(crate) fn pool(pool: &Arc<Pool>) -> Home {
        let ptr = Arc::as_ptr(pool);
        if in_context_of(ptr) {
            let mut stock = STOCK.get();
            let missing = stock.take_one();
            STOCK.set(stock);
            if missing > 0 {
                acquire_task_refs(pool, missing);
            }
        } else {
            acquire_task_refs(pool, 1);
        }
        // SAFETY: `Arc::as_ptr` never returns null.
        Home(unsafe { NonNull::new_unchecked(ptr as *mut u8) })
    }

    pub(crate) fn local(executor: Arc<Executor>) -> Home {
        let ptr = (Arc::into_raw(executor) as *mut u8).wrapping_add(LOCAL);
        // SAFETY: a non-null pointer plus one is not null.
        Home(unsafe { NonNull::new_unchecked(ptr) })
    }

    pub(crate) fn get(&self) -> HomeRef<'_> {
        let ptr = self.0.as_ptr();
        if ptr as usize & LOCAL != 0 {
            // SAFETY: tagged: the untagged pointer came from `Arc<Executor>::into_raw`,
            // and this `Home` still owns that reference.
            HomeRef::Local(unsafe { &*(ptr.wrapping_sub(LOCAL) as *const Executor) })
        } else {
            // SAFETY: untagged: a pool this `Home`'s task reference keeps alive.
            HomeRef::Pool(unsafe { &*(ptr as *const Pool) })
        }
    }

    pub(crate) fn schedule(&self, task: Task) {
        match self.get() {
            HomeRef::Pool(pool) => pool.schedule(task),
            HomeRef::Local(executor) => {
                executor.local_queue.push(task);
                executor.unpark();
            }
        }
    }

    /// Whether the calling thread runs the executor `owner` would name.
    pub(crate) fn is_current(&self, owner: usize) -> bool {
        match self.get() {
            HomeRef::Pool(pool) => pool.current_worker() == Some(owner),
            HomeRef::Local(_) => true,
        }
    }

    /// The executor whose registry holds the task: for a pool task, worker `owner`.
    pub(crate) fn owner(&self, owner: usize) -> &Executor {
        match self.get() {
            HomeRef::Pool(pool) => &pool.workers[owner],
            HomeRef::Local(executor) => executor,
        }
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let ptr = self.0.as_ptr();
        if ptr as usize & LOCAL != 0 {
            // SAFETY: the reference `Home::local` took, given back once.
            drop(unsafe { Arc::from_raw(ptr.wrapping_sub(LOCAL) as *const Executor) });
        } else if in_context_of(ptr as *const Pool) {
            // Into this thread's stock, whose surplus goes back in one batch.
            let mut stock = STOCK.get();
            let surplus = stock.put_back();
            STOCK.set(stock);
            if surplus > 0 {
                // SAFETY: a batch of the stock's references, handed over; the rest of
                // the stock keeps the count above zero, so this never frees the pool.
                unsafe { release_task_refs(ptr as *const Pool, surplus) };
            }
        } else {
            // SAFETY: the task reference `Home::pool` took, given back once.
            unsafe { release_task_refs(ptr as *const Pool, 1) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Arc, Weak};
    use std::task::{Context, Poll, Waker};

    use super::Pool;
    use crate::group_refs::STOCK_BATCH;
    use crate::Runtime;

    fn runtime(workers: usize) -> (Runtime, Weak<Pool>) {
        let runtime = Runtime::builder().workers(workers).build().unwrap();
        let pool = Arc::downgrade(runtime.pool());
        (runtime, pool)
    }

    /// A future that hands its waker out and never completes.
    async fn park_and_send(wakers: mpsc::Sender<Waker>) {
        std::future::poll_fn(|cx: &mut Context<'_>| {
            wakers.send(cx.waker().clone()).unwrap();
            Poll::<()>::Pending
        })
        .await
    }

    #[test]
    fn the_pool_lives_while_a_task_of_it_does_and_goes_with_the_last() {
        let (runtime, pool) = runtime(2);
        // Spawned on the workers (from their stocks), more than a batch of them, and
        // from outside: each handle outlives the runtime.
        let handles = runtime.block_on(runtime.spawn(async {
            (0..3 * STOCK_BATCH + 1)
                .map(|i| crate::spawn(async move { i }))
                .collect::<Vec<_>>()
        }));
        let handles = handles.unwrap();
        let outside = runtime.spawn(async { 7 });
        drop(runtime);
        assert!(pool.upgrade().is_some(), "a task's handle keeps its pool");
        drop(handles);
        assert!(pool.upgrade().is_some(), "the last handle keeps its pool");
        drop(outside);
        assert!(pool.upgrade().is_none(), "no task left, yet the pool lives");
    }

    #[test]
    fn a_waker_that_outlives_the_runtime_keeps_the_pool_and_wakes_into_nothing() {
        let (runtime, pool) = runtime(1);
        let (sender, wakers) = mpsc::channel();
        // Spawned by a worker, from its stock (wrapped: a handle is itself a future).
        let handle = runtime
            .block_on(runtime.spawn(async move { [crate::spawn(park_and_send(sender))] }))
            .unwrap();
        let waker = wakers.recv().unwrap();
        drop(handle);
        drop(runtime);
        assert!(
            pool.upgrade().is_some(),
            "the parked task's waker keeps its pool"
        );
        // The pool is shut down: the wake-up finds no worker and drops the task.
        waker.wake();
        assert!(
            pool.upgrade().is_none(),
            "the last waker went, yet the pool lives"
        );
    }

    #[test]
    fn stocks_go_back_when_the_runtime_goes() {
        let (runtime, pool) = runtime(2);
        for _ in 0..3 {
            let done = runtime.block_on(runtime.spawn(async {
                let handles: Vec<_> = (0..STOCK_BATCH * 5 / 2)
                    .map(|i| crate::spawn(async move { i * 2 }))
                    .collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                sum
            }));
            assert_eq!(done.unwrap(), (0..STOCK_BATCH * 5 / 2).sum::<usize>() * 2);
        }
        // Tasks spawned from the `block_on` caller's context too.
        let sum = runtime.block_on(async {
            let handles: Vec<_> = (0..STOCK_BATCH + 3)
                .map(|i| crate::spawn(async move { i }))
                .collect();
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, (0..STOCK_BATCH + 3).sum::<usize>());
        drop(runtime);
        assert!(
            pool.upgrade().is_none(),
            "a stock of task references was kept"
        );
    }
}
