//! The task cell: header, future and output in one allocation.

use std::cell::UnsafeCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use super::join::{Join, JoinError, JoinHandle};
use super::state::{AfterPoll, State};
use super::{Runnable, Task};
use crate::scheduler::{current_worker_index, Executor, Home};

enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

pub(crate) struct Cell<F: Future> {
    state: State,
    home: AtomicUsize,
    /// Where a wake-up queues the task.
    scheduler: Home,
    /// The executor whose registry holds this task, and its key there.
    owner: Arc<Executor>,
    key: AtomicUsize,
    join_waker: Mutex<Option<Waker>>,
    stage: UnsafeCell<Stage<F>>,
}

// SAFETY: `stage` is touched only by the holder of the RUNNING bit (one thread at a
// time, and for a local task always its owner thread, because only the owner's executor
// runs local tasks and shutdown drops them there), or after COMPLETE by the unique
// JoinHandle and by the last reference's drop. By then the future itself is gone (the
// registry keeps every unfinished task alive, and it is emptied on the owner thread), and
// the output is `Send` (spawn requires it).
unsafe impl<F: Future> Send for Cell<F> {}
// SAFETY: see above; all other fields are thread-safe.
unsafe impl<F: Future> Sync for Cell<F> {}

/// Creates a task, registers it with `owner`, and returns it (scheduled, not yet queued)
/// with its join handle.
pub(crate) fn new_task<F>(
    future: F,
    scheduler: Home,
    owner: Arc<Executor>,
) -> (Task, JoinHandle<F::Output>)
where
    F: Future + 'static,
    F::Output: Send + 'static,
{
    let cell = Arc::new(Cell {
        state: State::new_scheduled(),
        home: AtomicUsize::new(usize::MAX),
        scheduler,
        owner: owner.clone(),
        key: AtomicUsize::new(usize::MAX),
        join_waker: Mutex::new(None),
        stage: UnsafeCell::new(Stage::Running(future)),
    });
    let task: Task = cell.clone();
    let key = owner.register(task.clone());
    cell.key.store(key, Ordering::Release);
    (task, JoinHandle::new(cell))
}

impl<F: Future + 'static> Cell<F>
where
    F::Output: Send + 'static,
{
    /// Stores the result, drops the future, and tells the joiner.
    fn finish(self: &Arc<Self>, result: Result<F::Output, JoinError>) {
        // SAFETY: the caller holds the RUNNING bit, so no one else touches the stage.
        let stage = unsafe { &mut *self.stage.get() };
        // Dropping the future may itself panic; that must not take the worker down.
        let dropped = catch_unwind(AssertUnwindSafe(|| {
            *stage = Stage::Consumed;
        }));
        let result = match (result, dropped) {
            (Ok(_), Err(panic)) => Err(JoinError::panic(panic)),
            (result, _) => result,
        };
        *stage = Stage::Finished(result);
        self.state.complete();
        let me: Task = self.clone();
        self.owner.unregister(self.key.load(Ordering::Acquire), &me);
        let waker = self.join_waker.lock().unwrap().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<F: Future + 'static> Runnable for Cell<F>
where
    F::Output: Send + 'static,
{
    fn run(self: Arc<Self>) {
        let Some(aborted) = self.state.start_run() else {
            return;
        };
        if aborted {
            self.finish(Err(JoinError::cancelled()));
            return;
        }
        if let Some(index) = current_worker_index() {
            self.home.store(index, Ordering::Relaxed);
        }
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        // SAFETY: we hold the RUNNING bit: exclusive access to the stage.
        let stage = unsafe { &mut *self.stage.get() };
        let Stage::Running(future) = stage else {
            unreachable!("a task without a future was scheduled to run");
        };
        // SAFETY: the future lives inside the Arc allocation and is never moved out of
        // it; it is dropped in place by `finish`.
        let future = unsafe { Pin::new_unchecked(future) };
        match catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx))) {
            Ok(Poll::Pending) => {
                if self.state.end_run() == AfterPoll::Reschedule {
                    self.scheduler.schedule(self.clone());
                }
            }
            Ok(Poll::Ready(output)) => self.finish(Ok(output)),
            Err(panic) => self.finish(Err(JoinError::panic(panic))),
        }
    }

    fn shut_down(self: Arc<Self>) {
        if self.state.claim_for_shutdown() {
            self.finish(Err(JoinError::cancelled()));
        }
    }

    fn home(&self) -> usize {
        self.home.load(Ordering::Relaxed)
    }
}

impl<F: Future + 'static> Wake for Cell<F>
where
    F::Output: Send + 'static,
{
    fn wake(self: Arc<Self>) {
        if self.state.wake() {
            self.scheduler.schedule(self.clone());
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.state.wake() {
            self.scheduler.schedule(self.clone());
        }
    }
}

impl<F: Future + 'static> Join<F::Output> for Cell<F>
where
    F::Output: Send + 'static,
{
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        if !self.state.is_complete() {
            *self.join_waker.lock().unwrap() = Some(cx.waker().clone());
            if !self.state.is_complete() {
                return Poll::Pending;
            }
        }
        // SAFETY: the task is complete, so nothing but this (unique) JoinHandle reads the
        // stage from now on.
        let stage = unsafe { &mut *self.stage.get() };
        match std::mem::replace(stage, Stage::Consumed) {
            Stage::Finished(result) => Poll::Ready(result),
            _ => panic!("JoinHandle polled after it returned its result"),
        }
    }

    fn abort(self: Arc<Self>) {
        if self.state.abort() {
            // Queue it so that its next turn drops the future.
            self.scheduler.schedule(self.clone());
        }
    }

    fn is_finished(&self) -> bool {
        self.state.is_complete()
    }
}
