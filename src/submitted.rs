//! Virtual threads started from OS threads (`pool.submit` on the main thread, say): one
//! queue per `Loom` and a few starter tasks that drain it, instead of a runtime task per
//! call.
//!
//! A starter task per call made each call a task allocation and, often, a worker
//! wake-up; and a worker alternates between its queues, so it ran the hub after every
//! starter: one GIL take per virtual thread. With the submitting thread waiting for that
//! same GIL, one worker handed the GIL back and forth with it on every call (two
//! `futex` calls a call, and a third of the throughput of two workers). A starter here
//! hands the hub of its worker a bite of the queued calls, as far as the hub has room
//! ([`hub::room`]), so the hub starts them in one GIL take; it yields with calls left,
//! so an idle worker may steal it, and up to one starter per worker drains the queue, in
//! bites small enough that calls which hold their worker are shared by every worker.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use crate::hub;
use crate::stats::Counters;
use crate::vthread::Unstarted;

/// Calls waiting for a starter, and how many starters are queued or running.
pub(crate) struct Submitted {
    counters: Arc<Counters>,
    /// Starters at most: one per worker.
    workers: usize,
    state: Mutex<Queue>,
}

struct Queue {
    calls: VecDeque<Unstarted>,
    starters: usize,
}

impl Submitted {
    pub(crate) fn new(counters: Arc<Counters>, workers: usize) -> Submitted {
        Submitted {
            counters,
            workers,
            state: Mutex::new(Queue {
                calls: VecDeque::new(),
                starters: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while it is held (no Python, no drop of a call).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `call`. `Some(n)` if the caller must spawn a starter for the queue, `n`
    /// starters being counted already: up to one per worker while more calls wait than
    /// there are starters, so a burst of calls that hold their worker (hashing,
    /// compression) is shared by every worker.
    pub(crate) fn push(&self, call: Unstarted) -> Option<usize> {
        let mut queue = self.lock();
        queue.calls.push_back(call);
        let more = queue.starters < self.workers && queue.calls.len() > queue.starters;
        more.then(|| {
            queue.starters += 1;
            queue.starters - 1
        })
    }

    /// Takes every queued call out (the runtime is closed: nothing will start them).
    /// The caller drops them, outside the lock: a call's drop fails its future, with
    /// the GIL.
    pub(crate) fn take_all(&self) -> VecDeque<Unstarted> {
        let mut queue = self.lock();
        queue.starters = 0;
        std::mem::take(&mut queue.calls)
    }
}

/// A starter task of [`Submitted`] calls.
pub(crate) struct StartSubmitted(pub(crate) Arc<Submitted>);

impl Future for StartSubmitted {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let submitted = &self.0;
        let room = hub::room(&submitted.counters);
        let (calls, done) = {
            let mut queue = submitted.lock();
            // A bite of what waits, as far as the hub has room: a call handed to a hub
            // stays on its worker, while what is left here goes to whichever starter
            // (or worker stealing this one) comes next. With more than one worker, an
            // eighth of a worker's share, as a batch's chunks are (`Loom.spawn_batch`).
            let waiting = queue.calls.len();
            let bite = match submitted.workers {
                1 => waiting,
                workers => waiting.div_ceil(workers * 8),
            };
            let count = room.min(bite);
            let calls: Vec<Unstarted> = queue.calls.drain(..count).collect();
            // Decided under the lock that `push` takes: a call queued after this is
            // seen by a starter still counted, or makes `push` ask for a new one.
            let done = queue.calls.is_empty();
            if done {
                // Saturating: `take_all` zeroes the count when the runtime closes, and a
                // starter of a worker that outlived its runtime's shutdown may end later.
                queue.starters = queue.starters.saturating_sub(1);
            }
            (calls, done)
        };
        for call in calls {
            hub::adopt(call);
        }
        if done {
            Poll::Ready(())
        } else {
            // Back in the run queue, where an idle worker may steal it.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}
