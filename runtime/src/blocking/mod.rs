//! The blocking pool: OS threads for calls that cannot be a submission (and for every
//! file call under the fallback driver). Threads are started on demand up to a bound and
//! retire after sitting idle.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

mod oneshot;

pub(crate) use oneshot::channel as oneshot;

type Job = Box<dyn FnOnce() + Send>;

struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    /// Wake-ups sent to idle threads not yet taken: a job counts on each of them.
    notified: usize,
    threads: usize,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    job_ready: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    spawned_total: AtomicUsize,
}

/// A handle to a blocking pool; clones share the pool.
#[derive(Clone)]
pub struct BlockingPool {
    inner: Arc<Inner>,
}

impl BlockingPool {
    pub fn new(max_threads: usize, keep_alive: Duration) -> BlockingPool {
        BlockingPool {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    idle: 0,
                    notified: 0,
                    threads: 0,
                    shutdown: false,
                }),
                job_ready: Condvar::new(),
                max_threads: max_threads.max(1),
                keep_alive,
                spawned_total: AtomicUsize::new(0),
            }),
        }
    }

    /// Queues `job`; starts a thread for it if none is idle and the bound allows.
    /// Fails only if the pool is shut down or no thread exists and none can be started.
    pub fn spawn(&self, job: Job) -> io::Result<()> {
        let mut state = self.inner.state.lock().unwrap();
        if state.shutdown {
            return Err(io::Error::other("ringloom blocking pool is shut down"));
        }
        state.jobs.push_back(job);
        if state.idle > state.notified {
            state.notified += 1;
            drop(state);
            self.inner.job_ready.notify_one();
            return Ok(());
        }
        if state.threads < self.inner.max_threads {
            state.threads += 1;
            drop(state);
            let inner = self.inner.clone();
            let started = std::thread::Builder::new()
                .name("ringloom-blocking".into())
                .spawn(move || run(inner));
            if let Err(err) = started {
                let mut state = self.inner.state.lock().unwrap();
                state.threads -= 1;
                if state.threads == 0 {
                    state.jobs.pop_back();
                    return Err(err);
                }
                // Another thread will get to the job.
            } else {
                self.inner.spawned_total.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Threads alive now.
    pub fn threads(&self) -> usize {
        self.inner.state.lock().unwrap().threads
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.inner.state.lock().unwrap().jobs.len()
    }

    pub fn max_threads(&self) -> usize {
        self.inner.max_threads
    }

    /// Lets running jobs finish and idle threads exit; queued jobs still run.
    pub fn shutdown(&self) {
        self.inner.state.lock().unwrap().shutdown = true;
        self.inner.job_ready.notify_all();
    }
}

fn run(inner: Arc<Inner>) {
    let mut state = inner.state.lock().unwrap();
    loop {
        if let Some(job) = state.jobs.pop_front() {
            drop(state);
            // A panicking job must not take the thread's bookkeeping with it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            state = inner.state.lock().unwrap();
            continue;
        }
        if state.shutdown {
            break;
        }
        state.idle += 1;
        let (next, timeout) = inner
            .job_ready
            .wait_timeout_while(state, inner.keep_alive, |s| {
                s.jobs.is_empty() && !s.shutdown
            })
            .unwrap();
        state = next;
        state.idle -= 1;
        state.notified = state.notified.saturating_sub(1);
        if timeout.timed_out() && state.jobs.is_empty() {
            break;
        }
    }
    state.threads -= 1;
}
