//! Where a task goes when it is woken: its runtime's pool (any worker may run it) or one
//! executor (a local task), as one tagged pointer so that every task header stays small.

use std::ptr::NonNull;
use std::sync::Arc;

use super::{Executor, Pool};
use crate::task::Task;

/// The low bit of the pointer: set for `Local`. Both pointees are aligned to at least 8.
const LOCAL: usize = 1;

/// An owned `Arc<Pool>` or `Arc<Executor>`, told apart by the pointer's low bit.
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
    pub(crate) fn pool(pool: Arc<Pool>) -> Home {
        // SAFETY: `Arc::into_raw` never returns null.
        Home(unsafe { NonNull::new_unchecked(Arc::into_raw(pool) as *mut u8) })
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
            // SAFETY: untagged: it came from `Arc<Pool>::into_raw`, still owned here.
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
        } else {
            // SAFETY: the reference `Home::pool` took, given back once.
            drop(unsafe { Arc::from_raw(ptr as *const Pool) });
        }
    }
}
