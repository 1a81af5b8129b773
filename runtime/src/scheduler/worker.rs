//! A worker thread's loop: run a bounded batch of tasks, submit and reap in one enter,
//! steal when idle, park on the ring when there is nothing at all.

use std::io;
use std::sync::atomic::{fence, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shuffle::Shuffle;
use super::{enter_context, Executor, Pool};
use crate::driver::{self, Driver};
use crate::task::Task;

/// Tasks run between two looks at the ring: bounds how stale completions can get.
const BATCH: u32 = 64;
/// How often (in tasks) the injector is checked before the worker's own queues.
const INJECTOR_INTERVAL: u32 = 31;
/// How long shutdown waits for in-flight ops to come back before leaking their buffers.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

pub(crate) fn run_worker(
    pool: Arc<Pool>,
    index: usize,
    ready: Sender<io::Result<()>>,
    shutdown_limit: Duration,
) {
    let executor = pool.workers[index].clone();
    let driver = match Driver::new(&pool.driver_config) {
        Ok(driver) => driver,
        Err(err) => {
            let _ = ready.send(Err(err));
            pool.stopped.arrive();
            pool.tasks_dropped.arrive();
            pool.exited.arrive();
            return;
        }
    };
    let _ = executor.driver.set(driver.shared().clone());
    driver.enter();
    crate::task::enable_cell_slab();
    let context = enter_context(pool.clone(), executor.clone());
    let _ = ready.send(Ok(()));

    let mut worker = Worker {
        pool: pool.clone(),
        executor,
        index,
        tick: 0,
        shuffle: pool.sched_seed.map(|seed| Shuffle::new(seed, index as u64)),
    };
    // Tasks run, and are dropped at shutdown, inside the embedder's wrapper.
    pool.hooks.around_worker(|| {
        // A task's panic is caught around its poll; one out here (the driver, a waker)
        // leaves the worker unsure of its state. The runtime then stops, and this
        // worker still drops its tasks on its own thread (some are not `Send`) and
        // reports to the shutdown barriers, rather than dying without them.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()));
        if ran.is_err() {
            log::error!("ringloom worker {index} panicked outside a task; the runtime stops");
            pool.shutdown.store(true, Ordering::Release);
            pool.unpark_all();
        }
        worker.shut_down(shutdown_limit);
    });
    drop(context);
    drop(Driver::exit());
    pool.exited.arrive();
}

struct Worker {
    pool: Arc<Pool>,
    executor: Arc<Executor>,
    index: usize,
    tick: u32,
    /// Seeded scheduling's choices for this worker (see `shuffle`).
    shuffle: Option<Shuffle>,
}

impl Worker {
    fn run(&mut self) {
        loop {
            if self.pool.shutdown.load(Ordering::Acquire) {
                return;
            }
            let mut ran = 0;
            while ran < BATCH {
                // Checked per task: once shutdown starts, other workers may claim this
                // one's tasks (see `shut_down`).
                if ran > 0 && self.pool.shutdown.load(Ordering::Acquire) {
                    return;
                }
                let Some(task) = self.next_task() else {
                    break;
                };
                crate::scheduler::bump(&self.executor.counters.polls);
                task.run();
                ran += 1;
            }
            let woke = match driver::with_current(|driver| driver.turn(None)) {
                Some(Ok(woke)) => woke,
                Some(Err(err)) => {
                    log::error!("ringloom worker {}: driver error: {err}", self.index);
                    0
                }
                None => 0,
            };
            // Seeded, a busy worker sometimes steals too: more interleavings to try.
            let others = self.pool.workers.len() > 1;
            let steal_busy =
                ran > 0 && others && self.shuffle.as_mut().is_some_and(|s| s.one_in(8));
            if steal_busy {
                self.steal();
            }
            if ran > 0 || woke > 0 || self.steal() {
                continue;
            }
            self.park();
        }
    }

    fn next_task(&mut self) -> Option<Task> {
        if self.shuffle.is_some() {
            return self.next_task_shuffled();
        }
        self.tick = self.tick.wrapping_add(1);
        if self.tick % INJECTOR_INTERVAL == 0 {
            if let Some(task) = self.take_from_injector() {
                return Some(task);
            }
        }
        let executor = &self.executor;
        // SAFETY: this is the worker's own thread, the owner of its `owned` queue. Its
        // pop takes the locked queue's tasks too, in order (see `OwnedQueue::pop`).
        let owned = || unsafe { executor.owned.pop(&executor.run_queue) };
        let local = || executor.local_queue.pop();
        // The local tasks go first every other turn, so neither kind starves the other.
        let own = if self.tick % 2 == 0 {
            local().or_else(owned)
        } else {
            owned().or_else(local)
        };
        own.or_else(|| self.take_from_injector())
    }

    /// `next_task` under seeded scheduling: a few of the worker's own tasks go to the
    /// back of their queues first, and the injector, the owned queue and the local
    /// tasks are looked at in a shuffled order.
    fn next_task_shuffled(&mut self) -> Option<Task> {
        // No draw when there is nothing to choose: how often an idle worker looks must
        // not move the sequence, or a seed would not replay.
        if !self.executor.has_queued() && self.pool.injector.is_empty() {
            return None;
        }
        let shuffle = self.shuffle.as_mut()?;
        let (passed_over, first) = (shuffle.below(4), shuffle.below(3));
        let executor = &self.executor;
        for _ in 0..passed_over {
            // SAFETY (both): this is the worker's own thread, the owner of `owned`.
            match unsafe { executor.owned.pop(&executor.run_queue) } {
                Some(task) => unsafe { executor.owned.push(task, &executor.run_queue) },
                None => break,
            }
            if let Some(task) = executor.local_queue.pop() {
                executor.local_queue.push(task);
            }
        }
        // SAFETY: as above.
        let owned = || unsafe { executor.owned.pop(&executor.run_queue) };
        let local = || executor.local_queue.pop();
        match first {
            0 => self.take_from_injector().or_else(owned).or_else(local),
            1 => local().or_else(owned).or_else(|| self.take_from_injector()),
            _ => owned().or_else(local).or_else(|| self.take_from_injector()),
        }
    }

    /// Takes one task from the injector and moves a fair share of the rest to this
    /// worker's queue, so that tasks spawned from outside queue up behind each other
    /// instead of behind everything the worker does (and other workers can steal them).
    ///
    /// A burst spawned from outside wakes one worker only (one wake-up in flight at a
    /// time); if it leaves tasks in the injector, it wakes the next, or this worker would
    /// run the whole burst while the others sleep.
    fn take_from_injector(&self) -> Option<Task> {
        let task = self.pool.injector.pop()?;
        let share = (self.pool.injector.len() / self.pool.workers.len()).clamp(1, 64);
        for _ in 0..share {
            match self.pool.injector.pop() {
                Some(next) => self.executor.run_queue.push(next),
                None => break,
            }
        }
        if !self.pool.injector.is_empty() {
            self.pool.notify_one();
        }
        Some(task)
    }

    /// Moves half of the first other worker's queue that has work here (its own queue
    /// first, then what others queued on it).
    fn steal(&mut self) -> bool {
        let workers = &self.pool.workers;
        let mut taken = Vec::new();
        // Seeded: the victims are tried from a shuffled starting point.
        let start = match &mut self.shuffle {
            Some(shuffle) => shuffle.below(workers.len()),
            None => 0,
        };
        for offset in (1..workers.len()).map(|o| (o + start - 1) % (workers.len() - 1) + 1) {
            let victim = &workers[(self.index + offset) % workers.len()];
            if victim.owned.steal_half(&mut taken) > 0 {
                self.executor
                    .counters
                    .stolen
                    .fetch_add(taken.len() as u64, Ordering::Relaxed);
                for task in taken {
                    // SAFETY: this is the worker's own thread, the owner of `owned`.
                    unsafe { self.executor.owned.push(task, &self.executor.run_queue) };
                }
                return true;
            }
            let available = victim.run_queue.len();
            if available == 0 {
                continue;
            }
            let mut stolen = 0u64;
            for _ in 0..available.div_ceil(2).min(128) {
                match victim.run_queue.pop() {
                    Some(task) => {
                        self.executor.run_queue.push(task);
                        stolen += 1;
                    }
                    None => break,
                }
            }
            if stolen > 0 {
                self.executor
                    .counters
                    .stolen
                    .fetch_add(stolen, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    fn has_work_anywhere(&self) -> bool {
        self.executor.has_queued()
            || !self.pool.injector.is_empty()
            || self.pool.shutdown.load(Ordering::Acquire)
            || self
                .pool
                .workers
                .iter()
                .any(|worker| worker.has_stealable())
    }

    fn park(&mut self) {
        let Some(shared) = self.executor.driver.get() else {
            return;
        };
        shared.unpark.prepare_park();
        fence(Ordering::SeqCst);
        if !self.has_work_anywhere() {
            let parked = self
                .pool
                .hooks
                .around_park(|| driver::with_current(|driver| driver.turn(Some(None))));
            if let Some(Err(err)) = parked {
                log::error!(
                    "ringloom worker {}: driver error while parked: {err}",
                    self.index
                );
            }
        }
        shared.unpark.unparked();
        self.pool.searching.store(false, Ordering::SeqCst);
    }

    /// Stops with the other workers, drops every unfinished task this worker owns, and
    /// lets the ring return what it still holds.
    ///
    /// Its waits for the other workers, and the drain of the ring, run inside the park
    /// wrapper: an embedder that holds a global lock while it runs tasks (the Python
    /// layer's GIL) must release it there, or a worker waiting here would keep the others
    /// from reaching this point.
    fn shut_down(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        self.pool.stopped.arrive();
        let hooks = self.pool.hooks.clone();
        let all_stopped = hooks.around_park(|| self.pool.stopped.wait_until(deadline));
        if !all_stopped {
            log::warn!(
                "ringloom worker {}: other workers did not stop in time; their tasks are \
                 leaked, not dropped",
                self.index
            );
        }
        // A task that never waited is in a queue, not the registry: both are emptied,
        // each task cancelled (its future dropped here, its joiner told).
        let executor = &self.executor;
        let registered = executor.take_registry().into_iter();
        // SAFETY: this is the worker's own thread, the owner of `owned`.
        let owned = std::iter::from_fn(|| unsafe { executor.owned.pop(&executor.run_queue) });
        let local = std::iter::from_fn(|| executor.local_queue.pop());
        let injector =
            std::iter::from_fn(|| (self.index == 0).then(|| self.pool.injector.pop())?);
        for task in registered.chain(owned).chain(local).chain(injector) {
            if all_stopped {
                task.shut_down();
            } else {
                // A worker still running may poll or drop this task (it may sit in that
                // worker's queue, or have been stolen): dropping its future here could
                // race with that.
                std::mem::forget(task);
            }
        }
        self.pool.tasks_dropped.arrive();
        hooks.around_park(|| {
            self.pool.tasks_dropped.wait_until(deadline);
            driver::with_current(|driver| driver.drain(DRAIN_LIMIT));
        });
    }
}
