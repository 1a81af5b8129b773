//! A run queue: a locked ring buffer of task pointers, with its length readable
//! without the lock.
//!
//! A queued task costs one word here (a `SegQueue<Task>` slot takes two), and a queue
//! can hold a million tasks after a burst of spawns. The lock is held for a push or a
//! pop only, and is almost always uncontended: a worker's locked queue takes what other
//! threads queue on it and what overflows its own ring (`owned.rs`), and is popped by
//! the worker and by a stealer; the injector is one of these too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::task::Task;

/// An emptied queue above this capacity gives its memory back.
const KEEP_CAPACITY: usize = 4096;

#[derive(Default)]
pub(crate) struct TaskQueue {
    tasks: Mutex<VecDeque<Task>>,
    /// `tasks.len()`, written under the lock; SeqCst so that it takes part in the
    /// park/wake handshake (queue, fence, check parked / prepare park, fence, check
    /// queues) exactly as the queue itself would.
    len: AtomicUsize,
}

impl TaskQueue {
    pub(crate) fn push(&self, task: Task) {
        let mut tasks = self.tasks.lock().unwrap();
        tasks.push_back(task);
        self.len.store(tasks.len(), Ordering::SeqCst);
    }

    pub(crate) fn pop(&self) -> Option<Task> {
        if self.is_empty() {
            return None;
        }
        let mut tasks = self.tasks.lock().unwrap();
        let task = tasks.pop_front();
        self.len.store(tasks.len(), Ordering::SeqCst);
        if tasks.is_empty() && tasks.capacity() > KEEP_CAPACITY {
            *tasks = VecDeque::new();
        }
        task
    }

    /// Queues every task of `tasks` (emptying it) under one lock, in order.
    pub(crate) fn push_all(&self, tasks: &mut Vec<Task>) {
        let mut queue = self.tasks.lock().unwrap();
        queue.extend(tasks.drain(..));
        self.len.store(queue.len(), Ordering::SeqCst);
    }

    /// Takes up to `max` tasks from the front under one lock, handing each to `take` in
    /// order; returns how many it took.
    pub(crate) fn pop_many(&self, max: usize, mut take: impl FnMut(Task)) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut queue = self.tasks.lock().unwrap();
        let n = max.min(queue.len());
        for task in queue.drain(..n) {
            take(task);
        }
        self.len.store(queue.len(), Ordering::SeqCst);
        if queue.is_empty() && queue.capacity() > KEEP_CAPACITY {
            *queue = VecDeque::new();
        }
        n
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
