//! Building, entering and shutting down a runtime.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use crate::blocking::BlockingPool;
use crate::driver::{fallback_forced_by_env, DriverConfig};
use crate::scheduler::{run_worker, Hooks, Pool, Wrapper};
use crate::stats::RuntimeStats;
use crate::task::JoinHandle;

mod block_on;

/// Configures a [`Runtime`].
#[derive(Clone, Debug)]
pub struct Builder {
    workers: usize,
    ring_entries: u32,
    blocking_threads: usize,
    blocking_keep_alive: Duration,
    force_fallback: bool,
    thread_name: String,
    shutdown_timeout: Duration,
    hooks: Hooks,
    /// `Some(Some(n))`: seeded scheduling with seed n; `Some(None)`: off; `None`: as
    /// `RINGLOOM_SCHED_SEED` says.
    sched_seed: Option<Option<u64>>,
    #[cfg(feature = "fault-injection")]
    faults: Option<crate::driver::FaultPlan>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ring_entries: 256,
            blocking_threads: 512,
            blocking_keep_alive: Duration::from_secs(10),
            force_fallback: fallback_forced_by_env(),
            thread_name: "ringloom-worker".into(),
            shutdown_timeout: Duration::from_secs(10),
            hooks: Hooks::default(),
            sched_seed: None,
            #[cfg(feature = "fault-injection")]
            faults: None,
        }
    }
}

impl Builder {
    /// Worker threads, each with its own ring (default: available cores).
    pub fn workers(&mut self, n: usize) -> &mut Self {
        self.workers = n;
        self
    }

    /// Submission queue entries of each worker's ring (default 256; the completion queue
    /// is twice that, and the kernel buffers overflow beyond it).
    pub fn ring_entries(&mut self, entries: u32) -> &mut Self {
        self.ring_entries = entries;
        self
    }

    /// Upper bound of the blocking pool's threads (default 512).
    pub fn blocking_threads(&mut self, max: usize) -> &mut Self {
        self.blocking_threads = max;
        self
    }

    /// How long an idle blocking-pool thread waits for work before it exits.
    pub fn blocking_keep_alive(&mut self, keep_alive: Duration) -> &mut Self {
        self.blocking_keep_alive = keep_alive;
        self
    }

    /// Uses the fallback driver (epoll + blocking pool) even where io_uring works.
    /// Also forced by `RINGLOOM_DRIVER=fallback` in the environment.
    pub fn fallback(&mut self, force: bool) -> &mut Self {
        self.force_fallback = force;
        self
    }

    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.thread_name = name.into();
        self
    }

    /// How long dropping the runtime waits for workers to stop (default 10 s).
    pub fn shutdown_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Seeded scheduling (see [`shuffle`](crate::shuffle)): `Some(n)` shuffles each
    /// worker's free choices from seed `n`, `None` keeps the default order. Unset, the
    /// environment decides (`RINGLOOM_SCHED_SEED`).
    pub fn sched_seed(&mut self, seed: Option<u64>) -> &mut Self {
        self.sched_seed = Some(seed);
        self
    }

    /// Injects the plan's faults into every driver of the runtime (tests only: the
    /// `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    pub fn inject_faults(&mut self, plan: crate::driver::FaultPlan) -> &mut Self {
        self.faults = Some(plan);
        self
    }

    /// Runs each worker's life (its task loop and its shutdown, when it drops unfinished
    /// tasks) inside `wrapper`, which must call the closure it is given exactly once.
    /// An embedder uses it to attach the thread to an interpreter once for its life.
    pub fn wrap_worker(
        &mut self,
        wrapper: impl Fn(&mut dyn FnMut()) + Send + Sync + 'static,
    ) -> &mut Self {
        self.hooks.worker = Some(Wrapper::new(wrapper));
        self
    }

    /// Runs each blocking wait in the ring (a worker, or a `block_on` caller, with
    /// nothing to do) inside `wrapper`; an embedder uses it to release a global lock
    /// while the thread sleeps.
    pub fn wrap_park(
        &mut self,
        wrapper: impl Fn(&mut dyn FnMut()) + Send + Sync + 'static,
    ) -> &mut Self {
        self.hooks.park = Some(Wrapper::new(wrapper));
        self
    }

    /// Starts the workers. Each creates its own ring on its own thread; if io_uring is
    /// unavailable they use the fallback driver and say so once through `log`.
    pub fn build(&self) -> io::Result<Runtime> {
        let invalid = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                what.to_string(),
            ))
        };
        if self.workers == 0 {
            return invalid("workers must be at least 1");
        }
        if self.workers > crate::task::MAX_WORKERS {
            return invalid("workers must be at most 65535");
        }
        if self.ring_entries == 0 {
            return invalid("ring_entries must be at least 1");
        }
        if self.blocking_threads == 0 {
            return invalid("blocking_threads must be at least 1");
        }
        let sched_seed = match self.sched_seed {
            Some(seed) => seed,
            None => crate::shuffle::seed_from_env()?,
        };
        let blocking = BlockingPool::new(self.blocking_threads, self.blocking_keep_alive);
        let config = DriverConfig {
            ring_entries: self.ring_entries,
            force_fallback: self.force_fallback,
            blocking: blocking.clone(),
            #[cfg(feature = "fault-injection")]
            faults: self.faults.clone(),
        };
        let pool = Arc::new(Pool::new(
            self.workers,
            blocking,
            config,
            self.hooks.clone(),
            sched_seed,
        ));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::with_capacity(self.workers);
        for index in 0..self.workers {
            let worker_pool = pool.clone();
            let ready = ready_tx.clone();
            let limit = self.shutdown_timeout;
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{index}", self.thread_name))
                .spawn(move || run_worker(worker_pool, index, ready, limit));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    stop(&pool, threads, Duration::from_secs(5));
                    return Err(err);
                }
            }
        }
        drop(ready_tx);
        for _ in 0..self.workers {
            let started = ready_rx.recv().unwrap_or_else(|_| {
                Err(io::Error::other(
                    "a ringloom worker exited before it started",
                ))
            });
            if let Err(err) = started {
                stop(&pool, threads, Duration::from_secs(5));
                return Err(err);
            }
        }
        Ok(Runtime {
            pool,
            threads,
            shutdown_timeout: self.shutdown_timeout,
            stopped: false,
        })
    }
}

/// Stops the workers and waits up to `limit` for their threads.
///
/// On one of the runtime's own workers (a task dropping its runtime) the wait could only
/// time out, since this worker cannot stop while it runs this: the workers are told to
/// stop, and left to do so after the current poll (detached).
fn stop(pool: &Arc<Pool>, threads: Vec<ThreadHandle<()>>, limit: Duration) -> bool {
    pool.shutdown.store(true, Ordering::Release);
    pool.unpark_all();
    if pool.current_worker().is_some() {
        log::warn!("ringloom: runtime dropped on one of its own workers; they stop detached");
        return false;
    }
    let all_exited = pool.exited.wait_until(Instant::now() + limit);
    if all_exited {
        for thread in threads {
            let _ = thread.join();
        }
    } else {
        log::warn!("ringloom: workers did not stop within {limit:?}; detaching them");
    }
    pool.blocking.shutdown();
    all_exited
}

/// A set of worker threads, each with its own ring, running tasks.
pub struct Runtime {
    pool: Arc<Pool>,
    threads: Vec<ThreadHandle<()>>,
    shutdown_timeout: Duration,
    stopped: bool,
}

impl Runtime {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime with one worker per core.
    pub fn new() -> io::Result<Runtime> {
        Builder::default().build()
    }

    /// Spawns a `Send` task on the workers.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.pool.spawn(future)
    }

    /// Spawns a `Send` task queued first on worker `worker` (modulo the number of
    /// workers), which is woken if parked; an idle worker may still steal it. Spreads a
    /// burst over the workers from the start instead of leaving it to stealing.
    pub fn spawn_on<F>(&self, worker: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.pool.spawn_on(worker, future)
    }

    /// Spawns a `Send` task queued on worker `worker` (modulo the number of workers),
    /// which is woken if parked; no other worker is woken for it, though an idle one
    /// that is awake may still steal it. For tasks that gain from sharing a worker with
    /// the ones spawned before them (threads that take turns holding one lock).
    pub fn spawn_packed_on<F>(&self, worker: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.pool.spawn_packed_on(worker, future)
    }

    /// Whether the calling thread is one of this runtime's workers (where dropping or
    /// shutting the runtime down would wait for itself).
    pub fn is_worker_thread(&self) -> bool {
        self.pool.current_worker().is_some()
    }

    /// Counters of every worker and the driver in use.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats::collect(&self.pool)
    }

    /// Stops the workers, dropping unfinished tasks and cancelling their ops; waits up
    /// to `timeout` for the worker threads, then detaches any that are stuck.
    /// Returns true if every worker stopped in time.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> bool {
        let threads = std::mem::take(&mut self.threads);
        self.stopped = true;
        stop(&self.pool, threads, timeout)
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let threads = std::mem::take(&mut self.threads);
        stop(&self.pool, threads, self.shutdown_timeout);
    }
}
