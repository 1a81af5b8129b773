//! Counters readable at any time, from any thread.

use std::fmt;
use std::sync::atomic::Ordering;

use crate::driver::DriverKind;
use crate::scheduler::Pool;

/// Bytes of memory mapped for task cells, by every runtime in the process: spawned tasks
/// are carved from chunks per executor thread, and a chunk is returned once it empties.
pub fn task_cell_memory() -> usize {
    crate::task::region::mapped_bytes()
}

/// One worker's counters at the moment they were read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub tasks_spawned: u64,
    pub tasks_finished: u64,
    /// Tasks this worker took from another worker's queue.
    pub tasks_stolen: u64,
    pub polls: u64,
    /// Unfinished tasks this worker owns.
    pub tasks_live: usize,
    pub ops_submitted: u64,
    pub ops_completed: u64,
    /// Calls into the kernel to submit or reap (io_uring_enter, or epoll_wait).
    pub ring_enters: u64,
    /// Times the worker went to sleep for lack of work.
    pub parks: u64,
}

/// A snapshot of a runtime's counters.
#[derive(Clone, Debug)]
pub struct RuntimeStats {
    /// The driver the workers chose (all choose alike).
    pub driver: Option<DriverKind>,
    pub workers: Vec<WorkerStats>,
    pub blocking_threads: usize,
    pub blocking_queued: usize,
}

impl RuntimeStats {
    pub(crate) fn collect(pool: &Pool) -> RuntimeStats {
        let workers = pool
            .workers
            .iter()
            .map(|worker| {
                let tasks = &worker.counters;
                let mut stats = WorkerStats {
                    tasks_spawned: tasks.total_spawned(),
                    tasks_finished: tasks.total_finished(),
                    tasks_stolen: tasks.stolen.load(Ordering::Relaxed),
                    polls: tasks.polls.load(Ordering::Relaxed),
                    tasks_live: worker.live_tasks(),
                    ..WorkerStats::default()
                };
                if let Some(driver) = worker.driver.get() {
                    let ops = driver.counters();
                    stats.ops_submitted = ops.ops_submitted.load(Ordering::Relaxed);
                    stats.ops_completed = ops.ops_completed.load(Ordering::Relaxed);
                    stats.ring_enters = ops.ring_enters.load(Ordering::Relaxed);
                    stats.parks = ops.parks.load(Ordering::Relaxed);
                }
                stats
            })
            .collect();
        RuntimeStats {
            driver: pool
                .workers
                .first()
                .and_then(|worker| worker.driver.get())
                .map(|driver| driver.kind()),
            workers,
            blocking_threads: pool.blocking.threads(),
            blocking_queued: pool.blocking.queued(),
        }
    }

    /// The driver's name: `"io_uring"` or `"fallback"`.
    pub fn driver_name(&self) -> &'static str {
        self.driver.map_or("none", |kind| kind.name())
    }

    /// The sum over all workers.
    pub fn total(&self) -> WorkerStats {
        self.workers
            .iter()
            .fold(WorkerStats::default(), |mut sum, worker| {
                sum.tasks_spawned += worker.tasks_spawned;
                sum.tasks_finished += worker.tasks_finished;
                sum.tasks_stolen += worker.tasks_stolen;
                sum.polls += worker.polls;
                sum.tasks_live += worker.tasks_live;
                sum.ops_submitted += worker.ops_submitted;
                sum.ops_completed += worker.ops_completed;
                sum.ring_enters += worker.ring_enters;
                sum.parks += worker.parks;
                sum
            })
    }
}

impl fmt::Display for RuntimeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.driver {
            Some(kind) => writeln!(f, "driver: {kind}")?,
            None => writeln!(f, "driver: none")?,
        }
        for (index, w) in self.workers.iter().enumerate() {
            writeln!(
                f,
                "worker {index}: spawned {} finished {} stolen {} polls {} ops {}/{} enters {} parks {}",
                w.tasks_spawned,
                w.tasks_finished,
                w.tasks_stolen,
                w.polls,
                w.ops_submitted,
                w.ops_completed,
                w.ring_enters,
                w.parks
            )?;
        }
        write!(f, "blocking pool: {} threads", self.blocking_threads)
    }
}
