//! The scheduler: executor threads (runtime workers and `block_on` callers), their run
//! queues, the injector for tasks spawned from outside, and how a wake-up finds a queue.
//!
//! Each worker has a stealable queue of `Send` tasks and a queue of local tasks that only
//! it may run. A worker with nothing to do steals half of another worker's stealable
//! queue before it parks; pushing to a queue while a worker is parked wakes one (at most
//! one wake-up is in flight at a time, so a burst of spawns costs one syscall).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::blocking::BlockingPool;
use crate::driver::{DriverConfig, DriverShared};
use crate::table_lock::TableLock;
use crate::task::{new_task, Header, JoinHandle, Task, OUTPUT_TAKEN};

mod countdown;
mod home;
mod hooks;
mod owned;
mod queue;
mod registry;
pub mod shuffle;
mod worker;

pub(crate) use countdown::Countdown;
pub(crate) use home::{Home, HomeRef};
pub(crate) use hooks::Hooks;
pub use hooks::Wrapper;
use owned::OwnedQueue;
use queue::TaskQueue;
use registry::Registry;
pub(crate) use worker::run_worker;

/// Counters one executor thread keeps.
///
/// A task is counted by its owner: `spawned` and `finished` by the owner's own thread
/// (a plain load and store), the `_remote` pair by any other thread (an atomic add), so
/// that a task spawned and finished where it belongs costs no read-modify-write.
#[derive(Default, Debug)]
pub struct TaskCounters {
    pub spawned: AtomicU64,
    pub spawned_remote: AtomicU64,
    pub finished: AtomicU64,
    pub finished_remote: AtomicU64,
    pub stolen: AtomicU64,
    pub polls: AtomicU64,
}

impl TaskCounters {
    /// Adds one to `own` on the owner's thread, or to `remote` on any other.
    fn count(own: &AtomicU64, remote: &AtomicU64, on_own_thread: bool) {
        if on_own_thread {
            bump(own);
        } else {
            remote.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_spawned(&self, on_own_thread: bool) {
        Self::count(&self.spawned, &self.spawned_remote, on_own_thread);
    }

    pub(crate) fn count_finished(&self, on_own_thread: bool) {
        Self::count(&self.finished, &self.finished_remote, on_own_thread);
    }

    pub(crate) fn total_spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed) + self.spawned_remote.load(Ordering::Relaxed)
    }

    pub(crate) fn total_finished(&self) -> u64 {
        self.finished.load(Ordering::Relaxed) + self.finished_remote.load(Ordering::Relaxed)
    }
}

/// Adds one to a counter that only one thread at a time writes (its executor's thread,
/// or the holder of a lock), so a plain load and store do: a counter bumped per task
/// need not cost an atomic read-modify-write.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The shared half of one executor thread.
pub(crate) struct Executor {
    /// Worker index in its pool; `None` for a `block_on` caller.
    pub(crate) index: Option<usize>,
    /// `Send` tasks this worker spawned or woke itself, without a lock; idle workers
    /// steal half. Only this executor's thread pushes and pops.
    pub(crate) owned: OwnedQueue,
    /// `Send` tasks queued here by other threads (and `owned`'s overflow); idle workers
    /// steal from here too.
    pub(crate) run_queue: TaskQueue,
    /// Tasks only this thread may run (`spawn_local`).
    pub(crate) local_queue: TaskQueue,
    /// Every unfinished task this executor owns that has waited at least once, so
    /// shutdown can drop them here. A task joins at its first wait: until then it is in
    /// a run queue or being polled, and shutdown drains the queues too, so a task that
    /// finishes in its first poll (most short ones) never takes the lock.
    registry: TableLock<Registry>,
    pub(crate) driver: OnceLock<Arc<DriverShared>>,
    pub(crate) counters: TaskCounters,
}

impl Executor {
    pub(crate) fn new(index: Option<usize>) -> Executor {
        Executor {
            index,
            owned: OwnedQueue::default(),
            run_queue: TaskQueue::default(),
            local_queue: TaskQueue::default(),
            registry: TableLock::new(Registry::new()),
            driver: OnceLock::new(),
            counters: TaskCounters::default(),
        }
    }

    /// Keeps a reference to a task that is about to wait, until it completes. The
    /// caller holds the task's RUNNING bit (so no other thread reads or writes its key
    /// meanwhile).
    pub(crate) fn register(&self, task: Task) {
        let header = task.header() as *const Header;
        let mut registry = self.registry.lock();
        let key = registry.insert(task);
        let key = u32::try_from(key)
            .ok()
            .filter(|&key| key < OUTPUT_TAKEN)
            .expect("over 4 billion live tasks on one thread");
        // SAFETY: the registry's reference keeps the header alive.
        unsafe { (*header).key.store(key, Ordering::Relaxed) };
    }

    /// Drops the registry's reference to a completed task (unless shutdown took it).
    pub(crate) fn unregister(&self, header: &Header) {
        let key = header.key.load(Ordering::Relaxed) as usize;
        let removed = self.registry.lock().remove(key, header);
        // The last reference may go here; drop it outside the lock.
        drop(removed);
    }

    /// Takes every registered task out (for shutdown).
    pub(crate) fn take_registry(&self) -> Vec<Task> {
        self.registry.lock().take_all()
    }

    /// Unfinished tasks this executor owns (spawned here, or placed here from outside).
    pub(crate) fn live_tasks(&self) -> usize {
        // Finished first: a task counted finished was counted spawned before.
        let finished = self.counters.total_finished();
        self.counters.total_spawned().saturating_sub(finished) as usize
    }

    /// Wakes this executor's thread if it is parked; returns whether it was.
    pub(crate) fn unpark(&self) -> bool {
        self.driver
            .get()
            .is_some_and(|driver| driver.unpark.unpark())
    }

    fn is_parked(&self) -> bool {
        self.driver
            .get()
            .is_some_and(|driver| driver.unpark.is_parked())
    }

    /// Whether this executor has tasks to run; exact only on its own thread (the spill
    /// of `owned` is its alone).
    pub(crate) fn has_queued(&self) -> bool {
        !self.owned.is_empty()
            || self.owned.spilled() > 0
            || !self.run_queue.is_empty()
            || !self.local_queue.is_empty()
    }

    /// Whether another worker could take work from here.
    pub(crate) fn has_stealable(&self) -> bool {
        !self.owned.is_empty() || !self.run_queue.is_empty()
    }
}

/// What all workers of one runtime share.
pub(crate) struct Pool {
    pub(crate) workers: Vec<Arc<Executor>>,
    /// Tasks spawned or woken outside the workers, with no worker to prefer.
    pub(crate) injector: TaskQueue,
    /// A parked worker has been woken to look for work and has not parked again.
    pub(crate) searching: AtomicBool,
    pub(crate) shutdown: AtomicBool,
    pub(crate) blocking: BlockingPool,
    pub(crate) driver_config: DriverConfig,
    pub(crate) hooks: Hooks,
    /// Workers that have stopped running tasks (shutdown's first phase).
    pub(crate) stopped: Countdown,
    /// Workers that have dropped their tasks (shutdown's second phase).
    pub(crate) tasks_dropped: Countdown,
    /// Workers whose threads are finished.
    pub(crate) exited: Countdown,
    next_owner: AtomicUsize,
    /// Task references (see `home.rs`): the pool's tasks and the stocks of threads in
    /// its context. While nonzero, they hold one `Arc` of the pool between them.
    task_refs: AtomicUsize,
    /// Seeded scheduling's seed (see `shuffle`); None: the default order.
    pub(crate) sched_seed: Option<u64>,
}

impl Pool {
    pub(crate) fn new(
        workers: usize,
        blocking: BlockingPool,
        driver_config: DriverConfig,
        hooks: Hooks,
        sched_seed: Option<u64>,
    ) -> Pool {
        Pool {
            workers: (0..workers)
                .map(|index| Arc::new(Executor::new(Some(index))))
                .collect(),
            injector: TaskQueue::default(),
            searching: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            blocking,
            driver_config,
            hooks,
            stopped: Countdown::new(workers),
            tasks_dropped: Countdown::new(workers),
            exited: Countdown::new(workers),
            next_owner: AtomicUsize::new(0),
            task_refs: AtomicUsize::new(0),
            sched_seed,
        }
    }

    /// The index of the current thread's worker, if it is one of this pool's.
    pub(crate) fn current_worker(&self) -> Option<usize> {
        let (pool, index) = FAST_CONTEXT.get();
        (std::ptr::eq(pool, self) && index != usize::MAX).then_some(index)
    }

    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Pool::spawn_placed(Home::pool(self), future, None)
    }

    /// Spawns a task queued first on worker `worker` (modulo the number of workers),
    /// which it wakes; like any `Send` task, an idle worker may still steal it.
    pub(crate) fn spawn_on<F>(self: &Arc<Self>, worker: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let worker = worker % self.workers.len();
        Pool::spawn_placed(Home::pool(self), future, Some((worker, Spill::ToParked)))
    }

    /// Spawns a task queued on worker `worker`, which it wakes if parked, and no other:
    /// an idle worker that is awake may still steal it, but none is woken for it.
    pub(crate) fn spawn_packed_on<F>(
        self: &Arc<Self>,
        worker: usize,
        future: F,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let worker = worker % self.workers.len();
        Pool::spawn_placed(Home::pool(self), future, Some((worker, Spill::No)))
    }

    /// Spawns a task whose home is `home` (a pool's, see `Home::pool`).
    fn spawn_placed<F>(
        home: Home,
        future: F,
        worker: Option<(usize, Spill)>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let HomeRef::Pool(pool) = home.get() else {
            unreachable!("a pool task's home is its pool");
        };
        let owner = worker
            .map(|(index, _)| index)
            .or_else(|| pool.current_worker())
            .unwrap_or_else(|| {
                pool.next_owner.fetch_add(1, Ordering::Relaxed) % pool.workers.len()
            });
        let (task, handle) = new_task(future, home, owner);
        let HomeRef::Pool(pool) = task.header().scheduler.get() else {
            unreachable!("a pool task's home is its pool");
        };
        if pool.shutdown.load(Ordering::Acquire) {
            // Nobody will run it: cancel it now, on this thread (its future is Send).
            task.shut_down();
        } else {
            // `pool` borrows from the task, which is about to move into a queue.
            let pool: *const Pool = pool;
            // SAFETY: the task's home keeps the pool alive, and `handle`'s reference
            // keeps the task alive across the call, wherever the queued task goes.
            let pool = unsafe { &*pool };
            match worker {
                Some((worker, spill)) => pool.push_to(worker, task, spill),
                None => pool.schedule(task),
            }
        }
        handle
    }

    pub(crate) fn schedule(&self, task: Task) {
        if let Some(index) = self.current_worker() {
            let worker = &self.workers[index];
            // SAFETY: `current_worker` says this thread is worker `index`, the only
            // thread that runs its loop and so the owner of its `owned` queue.
            unsafe { worker.owned.push(task, &worker.run_queue) };
            // Another worker may steal it; a lone worker is this thread, awake.
            if self.workers.len() > 1 {
                self.notify_one();
            }
            return;
        }
        let home = task.home();
        if let Some(worker) = self.workers.get(home) {
            worker.run_queue.push(task);
            fence(Ordering::SeqCst);
            if worker.is_parked() {
                worker.unpark();
            } else {
                self.notify_one();
            }
        } else {
            self.injector.push(task);
            self.notify_one();
        }
    }

    /// Queues `task` on worker `index` and makes sure a worker will look at it: that
    /// one if it is parked; if it is awake, with `Spill::ToParked` another parked one
    /// too (which may steal it).
    fn push_to(&self, index: usize, task: Task, spill: Spill) {
        let worker = &self.workers[index];
        worker.run_queue.push(task);
        fence(Ordering::SeqCst);
        if !(worker.is_parked() && worker.unpark()) && spill == Spill::ToParked {
            self.notify_one();
        }
    }

    /// Wakes one parked worker to look for work, unless one is already looking.
    ///
    /// `searching` stays set only while a worker that was really parked has been woken
    /// and has not yet returned from its park (which clears it); a worker that turned
    /// out to be awake already gives the token back, so it can never get stuck set.
    pub(crate) fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.searching.load(Ordering::SeqCst) {
            return;
        }
        for worker in &self.workers {
            if !worker.is_parked() {
                continue;
            }
            if self.searching.swap(true, Ordering::SeqCst) {
                return;
            }
            if worker.unpark() {
                return;
            }
            self.searching.store(false, Ordering::SeqCst);
        }
    }

    pub(crate) fn unpark_all(&self) {
        for worker in &self.workers {
            worker.unpark();
        }
    }
}

/// What the current thread is running under.
pub(crate) struct ContextGuard {
    previous: Option<ThreadContext>,
}

struct ThreadContext {
    pool: Arc<Pool>,
    executor: Arc<Executor>,
}

thread_local! {
    static CONTEXT: RefCell<Option<ThreadContext>> = const { RefCell::new(None) };
    /// `CONTEXT`'s pool (as an address, never dereferenced) and worker index
    /// (`usize::MAX` if not a worker), for the per-schedule and per-poll checks that
    /// need no `RefCell` borrow and no reference count.
    static FAST_CONTEXT: Cell<(*const Pool, usize)> =
        const { Cell::new((std::ptr::null(), usize::MAX)) };
}

fn fast_context(context: Option<&ThreadContext>) -> (*const Pool, usize) {
    match context {
        Some(context) => (
            Arc::as_ptr(&context.pool),
            context.executor.index.unwrap_or(usize::MAX),
        ),
        None => (std::ptr::null(), usize::MAX),
    }
}

pub(crate) fn enter_context(pool: Arc<Pool>, executor: Arc<Executor>) -> ContextGuard {
    home::flush_stock();
    let context = ThreadContext { pool, executor };
    FAST_CONTEXT.set(fast_context(Some(&context)));
    let previous = CONTEXT.with(|slot| slot.borrow_mut().replace(context));
    ContextGuard { previous }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        home::flush_stock();
        let previous = self.previous.take();
        FAST_CONTEXT.set(fast_context(previous.as_ref()));
        CONTEXT.with(|context| *context.borrow_mut() = previous);
    }
}

pub(crate) fn in_context() -> bool {
    CONTEXT.with(|context| context.borrow().is_some())
}

pub(crate) fn current_worker_index() -> Option<usize> {
    let (_, index) = FAST_CONTEXT.get();
    (index != usize::MAX).then_some(index)
}

/// The index of the worker running the current task; `None` outside the workers (on a
/// `block_on` caller, or outside any runtime).
pub fn current_worker() -> Option<usize> {
    current_worker_index()
}

fn with_context<R>(what: &str, f: impl FnOnce(&Arc<Pool>, &Arc<Executor>) -> R) -> R {
    CONTEXT.with(|context| match context.borrow().as_ref() {
        Some(context) => f(&context.pool, &context.executor),
        None => panic!("ringloom::{what} called outside a ringloom runtime"),
    })
}

/// Spawns a `Send` task on the current runtime; any worker may run it, and an idle
/// worker may steal it before or between polls.
///
/// # Panics
/// Outside a ringloom runtime.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // The home takes a task reference from this thread's stock: no count of the pool's
    // `Arc` goes up or down for the task.
    let home = with_context("spawn", |pool, _| Home::pool(pool));
    Pool::spawn_placed(home, future, None)
}

/// Spawns a task pinned to the current thread (a worker, or a `block_on` caller): it is
/// never stolen, so it need not be `Send`.
///
/// # Panics
/// Outside a ringloom runtime.
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: Send + 'static,
{
    let executor = with_context("spawn_local", |_, executor| executor.clone());
    let (task, handle) = new_task(future, Home::local(executor.clone()), 0);
    executor.local_queue.push(task);
    handle
}

/// Runs `f` on the blocking pool and resolves to its result; a panic in `f` becomes the
/// task's `JoinError`.
///
/// # Panics
/// Outside a ringloom runtime.
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let pool = with_context("spawn_blocking", |pool, _| pool.clone());
    let (sender, receiver) = crate::blocking::oneshot();
    let queued = pool.blocking.spawn(Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        sender.send(result);
    }));
    pool.spawn(async move {
        if let Err(err) = queued {
            panic!("ringloom blocking pool refused the call: {err}");
        }
        match receiver.await {
            Some(Ok(value)) => value,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => panic!("ringloom blocking pool dropped the call"),
        }
    })
}

/// Lets other tasks run, and this thread's ring turn (submit, reap, timers), before this
/// one continues.
pub async fn yield_now() {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if self.0 {
                return std::task::Poll::Ready(());
            }
            self.0 = true;
            crate::driver::defer(cx.waker());
            std::task::Poll::Pending
        }
    }
    YieldNow(false).await
}

/// Whether a task queued on a busy worker also wakes a parked one, to steal it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spill {
    ToParked,
    No,
}
