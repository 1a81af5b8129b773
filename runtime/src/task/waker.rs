//! Wakers that are a task pointer: cloning one adds a task reference, and the poll
//! itself lends one without touching the count.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::header::{Header, Task};
use crate::scheduler::{HomeRef, Pool};

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// A waker for the poll in progress, borrowing the poller's reference (so it must not
/// be dropped as an owned waker: it is `ManuallyDrop`).
///
/// # Safety
/// The caller must hold a reference to the task for as long as the waker is used.
pub(crate) unsafe fn borrowed(ptr: NonNull<Header>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(ptr.as_ptr() as *const (), &VTABLE);
    // SAFETY: VTABLE's functions uphold the RawWaker contract for task pointers; the
    // borrowed reference is never released because the waker is never dropped.
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

fn header<'a>(data: *const ()) -> &'a Header {
    // SAFETY: every waker with VTABLE holds (or borrows) a reference to a live task.
    unsafe { &*(data as *const Header) }
}

fn ptr(data: *const ()) -> NonNull<Header> {
    // SAFETY: the data pointer of a task waker is the (non-null) task pointer.
    unsafe { NonNull::new_unchecked(data as *mut Header) }
}

unsafe fn clone(data: *const ()) -> RawWaker {
    header(data).ref_inc();
    RawWaker::new(data, &VTABLE)
}

/// Wakes by value. On a worker of the task's pool the waker's own reference goes to
/// the run queue. Elsewhere `schedule` may use the pool after the push, and only the
/// task's `Home` may be keeping the pool alive: wake by reference, then release.
unsafe fn wake(data: *const ()) {
    let header = header(data);
    if let HomeRef::Pool(pool) = header.scheduler.get() {
        if pool.current_worker().is_some() {
            if !header.state.wake() {
                // Queued or running already (or complete): nothing to push.
                // SAFETY: the waker's reference, released once.
                return unsafe { drop_waker(data) };
            }
            // This thread is one of the pool's workers: its context holds the pool,
            // so the pool outlives the call however soon the task ends once pushed;
            // `header` is not read again.
            let pool: *const Pool = pool;
            // SAFETY: as just said; the waker's reference becomes the queue's.
            return unsafe { (*pool).schedule(Task::from_raw(ptr(data))) };
        }
    }
    // SAFETY: an owned waker holds a reference, so `data` is live for both calls, and
    // it is released exactly once, by the second.
    unsafe {
        wake_by_ref(data);
        drop_waker(data);
    }
}

unsafe fn wake_by_ref(data: *const ()) {
    let header = header(data);
    if header.state.wake() {
        header.ref_inc();
        // SAFETY: the reference just added goes to the run queue.
        header
            .scheduler
            .schedule(unsafe { Task::from_raw(ptr(data)) });
    }
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: an owned waker holds one reference, released here.
    unsafe { Header::ref_dec(ptr(data)) }
}
