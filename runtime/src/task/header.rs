//! The untyped front of every task allocation, and the reference-counted pointer to it.
//!
//! A task is one allocation: this header, then its future or output (see `cell.rs`).
//! Run queues, wakers, the join handle and, once the task has waited, the owner's
//! registry each hold one counted reference; the header's vtable reaches the typed rest without knowing the future's
//! type, so a queue entry or a waker is one thin pointer.

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::task::Waker;

use super::state::State;
use crate::scheduler::{Executor, Home};

/// The most workers a runtime may have: worker indices fit a task header's `u16`s.
pub(crate) const MAX_WORKERS: usize = NO_WORKER as usize;
const NO_WORKER: u16 = u16::MAX;
/// `Header::key` of a task no registry holds.
pub(crate) const UNREGISTERED: u32 = u32::MAX;
/// `Header::key` of a complete task whose join handle took the output (registry keys
/// stay below it).
pub(crate) const OUTPUT_TAKEN: u32 = u32::MAX - 1;

/// The type-specific operations of a task, reached through its header.
pub(crate) struct Vtable {
    /// Polls the future once (the caller holds a reference for the duration).
    pub(crate) run: unsafe fn(NonNull<Header>),
    /// Drops the future unpolled, completing the task as cancelled, if it is idle.
    pub(crate) shut_down: unsafe fn(NonNull<Header>),
    /// Moves the output into `*out` (a `Poll<Result<T, JoinError>>` for the task's
    /// output type `T`) if the task is complete; otherwise registers the join waker.
    pub(crate) poll_join: unsafe fn(NonNull<Header>, *mut (), &Waker),
    /// Frees the allocation; called when the last reference goes.
    pub(crate) dealloc: unsafe fn(NonNull<Header>),
}

/// The first field of every task allocation (`#[repr(C)]` there, so a pointer to the
/// allocation is a pointer to its header).
pub(crate) struct Header {
    pub(crate) state: State,
    refs: AtomicU32,
    /// Its key in the owner's registry, `UNREGISTERED` until its first wait; once the
    /// task is complete (and out of the registry), `OUTPUT_TAKEN` after the join handle
    /// took the output. Before completion written by the holder of the RUNNING bit only
    /// (see `Executor::register`).
    pub(crate) key: AtomicU32,
    /// The worker that last ran the task (`NO_WORKER`: none yet); a wake-up from
    /// another thread queues it there.
    home: AtomicU16,
    /// For a pool task, the worker whose registry and counters it belongs to.
    owner: u16,
    pub(crate) vtable: &'static Vtable,
    /// Where a wake-up queues the task, and whose registry holds it.
    pub(crate) scheduler: Home,
    /// The join handle's waker. Written only by the handle while `JOIN_WAKER` is unset;
    /// read by the task side only while it is set (see `State`).
    pub(crate) join_waker: UnsafeCell<Option<Waker>>,
}

// What every task costs beyond its future and output: six words. A bigger header moves
// small tasks up a malloc size class (a million tasks: 16 MB more).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Header>() == 48);

impl Header {
    pub(crate) fn new(vtable: &'static Vtable, scheduler: Home, owner: usize) -> Header {
        Header {
            state: State::new_scheduled(),
            // The spawner's and the join handle's.
            refs: AtomicU32::new(2),
            key: AtomicU32::new(UNREGISTERED),
            home: AtomicU16::new(NO_WORKER),
            owner: u16::try_from(owner).expect("worker index over MAX_WORKERS"),
            vtable,
            scheduler,
            join_waker: UnsafeCell::new(None),
        }
    }

    pub(crate) fn home(&self) -> usize {
        match self.home.load(Ordering::Relaxed) {
            NO_WORKER => usize::MAX,
            index => index as usize,
        }
    }

    pub(crate) fn set_home(&self, index: usize) {
        // Indices are below MAX_WORKERS (the builder refuses more workers).
        self.home.store(index as u16, Ordering::Relaxed);
    }

    /// The executor whose registry holds this task once it has waited, and whose
    /// counters count it.
    pub(crate) fn owner(&self) -> &Executor {
        self.scheduler.owner(self.owner as usize)
    }

    /// Whether the calling thread is the owner's (a local task's executor always is:
    /// only its own thread spawns, runs and shuts down local tasks).
    pub(crate) fn on_owner_thread(&self) -> bool {
        self.scheduler.is_current(self.owner as usize)
    }

    /// Whether the owner's registry holds this task (it has waited at least once).
    /// Only for a task that is not complete.
    pub(crate) fn is_registered(&self) -> bool {
        self.key.load(Ordering::Relaxed) != UNREGISTERED
    }

    /// Records that the join handle took the output. Only the unique join handle calls
    /// this, once, after completion, when nothing else writes `key`; the last
    /// reference's drop sees it (its decrement orders it).
    pub(crate) fn mark_output_taken(&self) {
        self.key.store(OUTPUT_TAKEN, Ordering::Relaxed);
    }

    /// Whether the join handle took the output; only meaningful once complete.
    pub(crate) fn output_taken(&self) -> bool {
        self.key.load(Ordering::Relaxed) == OUTPUT_TAKEN
    }

    /// Adds a reference (the caller already holds one).
    pub(crate) fn ref_inc(&self) {
        let previous = self.refs.fetch_add(1, Ordering::Relaxed);
        if previous > u32::MAX / 2 {
            // As `Arc` does: a count this high means leaked references; wrapping
            // around would free a live task.
            std::process::abort();
        }
    }

    /// Drops a reference; frees the task if it was the last.
    ///
    /// # Safety
    /// The caller must own one reference to the task at `ptr`, and not use it after.
    pub(crate) unsafe fn ref_dec(ptr: NonNull<Header>) {
        // SAFETY: the caller's reference keeps the header alive until the decrement.
        let header = unsafe { ptr.as_ref() };
        if header.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other holder's last use happens-before this (as in `Arc::drop`). An
        // acquire load of the count, not a fence: the same order (and free on x86), and
        // one ThreadSanitizer can see, which does not model fences.
        header.refs.load(Ordering::Acquire);
        // SAFETY: that was the last reference: nobody else can reach the task.
        unsafe { (header.vtable.dealloc)(ptr) }
    }
}

// SAFETY: the header's plain fields are written once before the task is shared; the
// join waker slot is guarded by the JOIN_WAKER protocol of `State`; `Home` is Send+Sync.
unsafe impl Send for Header {}
// SAFETY: as above.
unsafe impl Sync for Header {}

/// One counted reference to a task, as the scheduler's queues and registry hold it.
pub(crate) struct Task(NonNull<Header>);

// SAFETY: a `Task` only allows what any thread may do: queue it, run it through the
// scheduler (which polls a local task only on its owner thread), drop the reference.
unsafe impl Send for Task {}
// SAFETY: `&Task` gives only the header's thread-safe reads.
unsafe impl Sync for Task {}

impl Task {
    /// # Safety
    /// `ptr` must be a live task, and the caller hands its own reference to the result.
    pub(crate) unsafe fn from_raw(ptr: NonNull<Header>) -> Task {
        Task(ptr)
    }

    /// Gives up the reference without releasing it (see `from_raw`).
    pub(crate) fn into_raw(self) -> NonNull<Header> {
        let ptr = self.0;
        std::mem::forget(self);
        ptr
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: our reference keeps the header alive.
        unsafe { self.0.as_ref() }
    }

    /// Polls the task once. Only the scheduler calls this, on a thread allowed to poll
    /// it (any worker for a `Send` task, the owner for a local one).
    pub(crate) fn run(self) {
        // SAFETY: `self` holds a reference for the whole call, and the scheduler
        // calls this only on a thread allowed to poll the future.
        unsafe { (self.header().vtable.run)(self.0) }
    }

    /// Drops the future without polling it and completes the task as cancelled; used
    /// at shutdown, on the owning thread, when no thread is running tasks.
    pub(crate) fn shut_down(self) {
        // SAFETY: as for `run`: a held reference, and the owning thread.
        unsafe { (self.header().vtable.shut_down)(self.0) }
    }

    /// The worker that last ran it, `usize::MAX` if none.
    pub(crate) fn home(&self) -> usize {
        self.header().home()
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: this `Task` owns one reference and is gone after this.
        unsafe { Header::ref_dec(self.0) }
    }
}
