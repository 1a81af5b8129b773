//! The typed task allocation: header, then the future or its output, and the vtable
//! functions that know that type.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

use super::header::{Header, Task, Vtable};
use super::join::{JoinError, JoinHandle};
use super::slab;
use super::waker;
use crate::scheduler::{current_worker_index, Home};

/// The future until the task completes, then its output until the join handle takes
/// it, then nothing. Which one is there follows from the task's state (see
/// `Cell::stage`), so the stage carries no tag of its own: a word less in every task.
union Stage<F: Future> {
    future: ManuallyDrop<F>,
    output: ManuallyDrop<Result<F::Output, JoinError>>,
}

/// `#[repr(C)]` with the header first: a task pointer is a pointer to its cell.
#[repr(C)]
struct Cell<F: Future> {
    header: Header,
    /// Touched only by the holder of the RUNNING bit (one thread at a time, and for a
    /// local task always its owner thread: only the owner runs local tasks and
    /// shutdown drops them there), or after COMPLETE by the unique join handle, and by
    /// the last reference's drop. By then the future is gone (until the task completes
    /// a run queue holds a reference, or once it has waited the owner's registry, and
    /// shutdown empties both, a local task's on its owner thread), and the output is
    /// `Send` (spawn requires it).
    ///
    /// What it holds: the future while the task is not COMPLETE (`finish`, the only
    /// place that drops it, holds RUNNING until it sets COMPLETE), the output once
    /// COMPLETE until `Header::output_taken`, then nothing.
    stage: UnsafeCell<Stage<F>>,
}

/// Holds the vtable of tasks whose future is `F` (never constructed).
struct Vtables<F>(PhantomData<F>);

impl<F: Future + 'static> Vtables<F>
where
    F::Output: Send + 'static,
{
    /// For a cell from the global allocator.
    const BOXED: Vtable = Vtable {
        run: run::<F>,
        shut_down: shut_down::<F>,
        poll_join: poll_join::<F>,
        dealloc: dealloc_boxed::<F>,
    };
    /// For a cell carved by this thread's slab (see `slab`).
    const SLAB: Vtable = Vtable {
        dealloc: dealloc_slab::<F>,
        ..Self::BOXED
    };
}

/// Creates a task owned by worker `owner` of a pool, or by the executor of a local task,
/// and returns it (scheduled, not yet queued) with its join handle. It joins its owner's
/// registry only if it ever waits (see `run`).
pub(crate) fn new_task<F>(future: F, scheduler: Home, owner: usize) -> (Task, JoinHandle<F::Output>)
where
    F: Future + 'static,
    F::Output: Send + 'static,
{
    let layout = Layout::new::<Cell<F>>();
    let (vtable, ptr): (&'static Vtable, NonNull<Cell<F>>) =
        match slab::allocate(layout.size(), layout.align()) {
            Some(slot) => (&Vtables::<F>::SLAB, slot.cast()),
            None => {
                // SAFETY: a `Cell` is never zero-sized (its header is not).
                let raw = unsafe { std::alloc::alloc(layout) } as *mut Cell<F>;
                let Some(ptr) = NonNull::new(raw) else {
                    std::alloc::handle_alloc_error(layout)
                };
                (&Vtables::<F>::BOXED, ptr)
            }
        };
    // SAFETY: `ptr` is a fresh allocation of the cell's size and alignment.
    unsafe {
        ptr.as_ptr().write(Cell {
            header: Header::new(vtable, scheduler, owner),
            stage: UnsafeCell::new(Stage {
                future: ManuallyDrop::new(future),
            }),
        })
    };
    let ptr = ptr.cast::<Header>();
    // SAFETY: the header starts with two references (see `Header::new`): one for each
    // of the values made here.
    let (task, handle) = unsafe { (Task::from_raw(ptr), JoinHandle::from_raw(ptr)) };
    let header = task.header();
    header
        .owner()
        .counters
        .count_spawned(header.on_owner_thread());
    (task, handle)
}

/// # Safety
/// `ptr` must be a live task whose future type is `F`.
unsafe fn cell<'a, F: Future>(ptr: NonNull<Header>) -> &'a Cell<F> {
    // SAFETY: the allocation is a `Cell<F>` (the vtable was chosen for `F`), with the
    // header at offset 0.
    unsafe { ptr.cast::<Cell<F>>().as_ref() }
}

/// Stores the result, drops the future, deregisters, and tells the joiner.
///
/// # Safety
/// The caller holds the RUNNING bit and a reference to the task (so this never frees
/// it).
unsafe fn finish<F: Future>(ptr: NonNull<Header>, result: Result<F::Output, JoinError>) {
    // SAFETY: forwarded from the caller.
    let cell = unsafe { cell::<F>(ptr) };
    // SAFETY: the RUNNING bit gives exclusive access to the stage.
    let stage = unsafe { &mut *cell.stage.get() };
    // Dropping the future may itself panic; that must not take the worker down. Either
    // way it is gone: the output takes its place.
    let dropped = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: not COMPLETE yet, so the stage holds the future; it is dropped once,
        // here, and never touched again.
        unsafe { ManuallyDrop::drop(&mut stage.future) }
    }));
    let result = match (result, dropped) {
        (Ok(_), Err(panic)) => Err(JoinError::panic(panic)),
        (result, _) => result,
    };
    stage.output = ManuallyDrop::new(result);
    let header = &cell.header;
    // Before the joiner hears of it: whoever awaits the handle then finds the task gone
    // from its owner's counts too (the caller's reference keeps it alive here).
    let owner = header.owner();
    owner.counters.count_finished(header.on_owner_thread());
    if header.is_registered() {
        owner.unregister(header);
    }
    if header.state.complete() {
        // SAFETY: JOIN_WAKER was set when the task completed, so the handle may no
        // longer write the slot; reading it is shared with the handle's reads only.
        if let Some(waker) = unsafe { &*header.join_waker.get() } {
            waker.wake_by_ref();
        }
    }
}

/// # Safety
/// See `Vtable::run`.
unsafe fn run<F: Future>(ptr: NonNull<Header>)
where
    F::Output: Send + 'static,
{
    // SAFETY: the caller holds a reference; the vtable is `F`'s.
    let cell = unsafe { cell::<F>(ptr) };
    let header = &cell.header;
    let Some(aborted) = header.state.start_run() else {
        return;
    };
    if aborted {
        // SAFETY: we hold the RUNNING bit and the caller's reference.
        unsafe { finish::<F>(ptr, Err(JoinError::cancelled())) };
        return;
    }
    if let Some(index) = current_worker_index() {
        header.set_home(index);
    }
    // SAFETY: the caller's reference outlives the poll.
    let waker = unsafe { waker::borrowed(ptr) };
    let mut cx = Context::from_waker(&waker);
    // SAFETY: we hold the RUNNING bit: exclusive access to the stage.
    let stage = unsafe { &mut *cell.stage.get() };
    // SAFETY: `start_run` refuses a COMPLETE task, so the stage holds the future. It
    // lives inside the task allocation and is never moved out of it; it is dropped in
    // place by `finish`.
    let future = unsafe { Pin::new_unchecked(&mut *stage.future) };
    match catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx))) {
        Ok(Poll::Pending) => {
            if !header.is_registered() {
                // Its first wait: from here on no run queue may hold it, so the owner's
                // registry keeps it for shutdown. Done while RUNNING is held.
                header.ref_inc();
                // SAFETY: the reference just added goes to the registry.
                header.owner().register(unsafe { Task::from_raw(ptr) });
            }
            if header.state.end_run() == super::state::AfterPoll::Reschedule {
                header.ref_inc();
                // SAFETY: the reference just added goes to the run queue.
                header.scheduler.schedule(unsafe { Task::from_raw(ptr) });
            }
        }
        // SAFETY (both): we hold the RUNNING bit and the caller's reference.
        Ok(Poll::Ready(output)) => unsafe { finish::<F>(ptr, Ok(output)) },
        Err(panic) => unsafe { finish::<F>(ptr, Err(JoinError::panic(panic))) },
    }
}

/// # Safety
/// See `Vtable::shut_down`.
unsafe fn shut_down<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: the caller holds a reference; the vtable is `F`'s.
    let header = unsafe { &cell::<F>(ptr).header };
    if header.state.claim_for_shutdown() {
        // SAFETY: claiming set the RUNNING bit; the caller holds a reference.
        unsafe { finish::<F>(ptr, Err(JoinError::cancelled())) };
    }
}

/// # Safety
/// See `Vtable::poll_join`; the caller is the task's unique join handle.
unsafe fn poll_join<F: Future>(ptr: NonNull<Header>, out: *mut (), waker: &Waker) {
    // SAFETY: the handle holds a reference; the vtable is `F`'s.
    let cell = unsafe { cell::<F>(ptr) };
    let state = &cell.header.state;
    let slot = cell.header.join_waker.get();
    if !state.is_complete() {
        if state.has_join_waker() {
            // SAFETY: while JOIN_WAKER is set nobody writes the slot, and only the
            // handle (us) ever writes it.
            let stored = unsafe { &*slot };
            if stored.as_ref().is_some_and(|w| w.will_wake(waker)) {
                return;
            }
            if !state.unset_join_waker() {
                // Completed meanwhile: take the output.
                // SAFETY: complete, and the caller is the unique handle.
                return unsafe { take_output::<F>(cell, out) };
            }
        }
        // SAFETY: JOIN_WAKER is unset, so the task side does not read the slot, and
        // the handle is the only writer.
        unsafe { *slot = Some(waker.clone()) };
        if state.set_join_waker() {
            return;
        }
    }
    // SAFETY: complete, and the caller is the unique handle.
    unsafe { take_output::<F>(cell, out) }
}

/// # Safety
/// The task is complete; the caller is its unique join handle; `out` points to a
/// `Poll<Result<F::Output, JoinError>>`.
unsafe fn take_output<F: Future>(cell: &Cell<F>, out: *mut ()) {
    // SAFETY: after COMPLETE only the unique handle touches the stage until the last
    // reference frees it (and the handle holds one).
    let stage = unsafe { &mut *cell.stage.get() };
    if cell.header.output_taken() {
        panic!("JoinHandle polled after it returned its result");
    }
    // SAFETY: COMPLETE and not taken: the stage holds the output, read out once (the
    // mark below keeps it from being read or dropped again).
    let result = unsafe { ManuallyDrop::take(&mut stage.output) };
    cell.header.mark_output_taken();
    // SAFETY: the caller says what `out` points to.
    unsafe { *(out as *mut Poll<Result<F::Output, JoinError>>) = Poll::Ready(result) };
}

/// Drops the cell in place; its memory is the caller's to free.
///
/// # Safety
/// See `Vtable::dealloc`.
unsafe fn drop_cell<F: Future>(ptr: NonNull<Header>) {
    let cell = ptr.cast::<Cell<F>>().as_ptr();
    // SAFETY: this was the last reference, so nothing else touches the cell, and its
    // state and marks are final (the last decrement acquired every holder's writes).
    // The stage holds no future here (see `Cell::stage`), only the `Send` output or
    // nothing, so dropping it on this thread is fine; the one exception is a pool
    // task's queue reference dropped unrun after shutdown, whose future is `Send`.
    unsafe {
        let header = &(*cell).header;
        let stage = &mut *(*cell).stage.get();
        if !header.state.is_complete() {
            ManuallyDrop::drop(&mut stage.future);
        } else if !header.output_taken() {
            ManuallyDrop::drop(&mut stage.output);
        }
        // The header's own fields; the stage has no drop glue.
        std::ptr::drop_in_place(cell);
    }
}

/// # Safety
/// See `Vtable::dealloc`; the cell came from the global allocator.
unsafe fn dealloc_boxed<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: forwarded.
    unsafe { drop_cell::<F>(ptr) };
    // SAFETY: allocated in `new_task` with this layout.
    unsafe { std::alloc::dealloc(ptr.as_ptr() as *mut u8, Layout::new::<Cell<F>>()) };
}

/// # Safety
/// See `Vtable::dealloc`; the cell came from `slab::allocate`.
unsafe fn dealloc_slab<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: forwarded.
    unsafe { drop_cell::<F>(ptr) };
    // SAFETY: the slot `new_task` took, given back once.
    unsafe { slab::free(ptr.cast()) };
}
