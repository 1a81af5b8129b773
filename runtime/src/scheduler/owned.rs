//! A worker's own queue: the tasks it spawned or woke itself, in a fixed ring that only
//! it pushes to and pops from without a lock, and from which an idle worker steals half.
//!
//! A wake-up or spawn on a worker is the hot path of a task-heavy program; through the
//! locked [`TaskQueue`] it cost two lock round trips (push and pop) and two sequentially
//! consistent stores per task. Here the owner's push is a plain store and a release,
//! its pop one compare-and-swap, and a stealer claims a whole run of tasks with one. A
//! burst beyond the ring's size goes to the locked queue, and so does what comes after
//! it until that queue drains: the worker runs its tasks in FIFO order. Those go in runs
//! of `SPILL_BATCH`, gathered in an owner-only spill first, and come back a half ring
//! at a time, so that a burst of a million spawns takes a lock per run, not per task;
//! the spill (under one run) is the only part of the queue a stealer cannot see.
//!
//! The head is two indices in one word: `real`, the next task the owner pops, and
//! `steal`, the start of a run a stealer has claimed but not yet copied out (equal to
//! `real` when no steal is under way). The owner never writes a slot at or past `steal`
//! plus the capacity, so a stealer copies its run while the owner goes on pushing and
//! popping; one steal at a time.
//!
//! [`TaskQueue`]: super::queue::TaskQueue

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::queue::TaskQueue;
use crate::task::Task;

const CAPACITY: u32 = 256;
const MASK: u32 = CAPACITY - 1;
/// The most a steal takes at once.
const STEAL_MAX: u32 = CAPACITY / 2;
/// Tasks gathered in the spill before they go to the locked queue under one lock.
const SPILL_BATCH: usize = 64;
/// Tasks taken back from the locked queue into an empty ring under one lock.
const REFILL: usize = (CAPACITY / 2) as usize;

fn pack(steal: u32, real: u32) -> u64 {
    (u64::from(steal) << 32) | u64::from(real)
}

fn unpack(head: u64) -> (u32, u32) {
    ((head >> 32) as u32, head as u32)
}

pub(crate) struct OwnedQueue {
    head: AtomicU64,
    /// Written by the owner only.
    tail: AtomicU32,
    slots: Box<[UnsafeCell<MaybeUninit<Task>>]>,
    /// Tasks queued after the locked queue's, not yet moved there: owner-only.
    spill: UnsafeCell<Vec<Task>>,
    /// `spill.len()`, written by the owner only, so that the owner's own "anything
    /// queued?" check is a safe read.
    spilled: AtomicU32,
}

// SAFETY: a slot is written only by the owner and only outside [steal, tail), read by the
// owner or by the one stealer that claimed it, with the head and tail's acquire/release
// ordering every write before its read; the tasks themselves are Send.
unsafe impl Send for OwnedQueue {}
// SAFETY: as above; the owner-only methods are `unsafe` and say so.
unsafe impl Sync for OwnedQueue {}

impl Default for OwnedQueue {
    fn default() -> OwnedQueue {
        OwnedQueue {
            head: AtomicU64::new(0),
            tail: AtomicU32::new(0),
            slots: (0..CAPACITY)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            spill: UnsafeCell::new(Vec::new()),
            spilled: AtomicU32::new(0),
        }
    }
}

impl OwnedQueue {
    /// Tasks a stealer could take, as seen now (a steal under way may make it stale at
    /// once); the spill is not counted.
    pub(crate) fn len(&self) -> usize {
        let (_, real) = unpack(self.head.load(Ordering::Acquire));
        self.tail.load(Ordering::Acquire).wrapping_sub(real) as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tasks in the owner's spill (see the module doc); only the owner's own reading
    /// is exact.
    pub(crate) fn spilled(&self) -> usize {
        self.spilled.load(Ordering::Relaxed) as usize
    }

    /// Queues `task` at the back. When the ring is full, or `overflow` (the locked
    /// queue, popped after the ring) or the spill holds tasks already, it goes to the
    /// spill instead, and a full spill to `overflow`: behind every task queued before
    /// it, so that the owner runs them in order.
    ///
    /// # Safety
    /// Only the queue's owner (one thread for the queue's life) calls `push` and `pop`.
    pub(crate) unsafe fn push(&self, task: Task, overflow: &TaskQueue) {
        // SAFETY: the spill is the owner's alone, and the caller is the owner.
        let spill = unsafe { &mut *self.spill.get() };
        let tail = self.tail.load(Ordering::Relaxed);
        let (steal, _) = unpack(self.head.load(Ordering::Acquire));
        if tail.wrapping_sub(steal) >= CAPACITY || !spill.is_empty() || !overflow.is_empty() {
            spill.push(task);
            if spill.len() >= SPILL_BATCH {
                overflow.push_all(spill);
            }
            self.spilled.store(spill.len() as u32, Ordering::Relaxed);
            return;
        }
        // SAFETY: owner-only, and the slot is free (checked above).
        unsafe { self.write_slot(tail, task) };
    }

    /// Writes `task` at `tail` and publishes it.
    ///
    /// # Safety
    /// The caller is the owner, `tail` is the current tail, and the ring has room.
    unsafe fn write_slot(&self, tail: u32, task: Task) {
        // SAFETY: the slot is past every claimed or queued one (the caller's check), so
        // nobody reads it; the owner is the only writer.
        unsafe { (*self.slots[(tail & MASK) as usize].get()).write(task) };
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
    }

    /// Takes the task at the front: from the ring; when it is empty, from the front of
    /// `overflow` (moving a half ring's worth into the ring under one lock), then from
    /// the spill (all of it into the ring).
    ///
    /// # Safety
    /// Only the queue's owner calls `push` and `pop`.
    pub(crate) unsafe fn pop(&self, overflow: &TaskQueue) -> Option<Task> {
        // SAFETY: forwarded from the caller.
        if let Some(task) = unsafe { self.pop_ring() } {
            return Some(task);
        }
        // SAFETY: as above.
        unsafe { self.refill(overflow) };
        // SAFETY: as above.
        unsafe { self.pop_ring() }
    }

    /// Moves the next run of tasks into the empty ring.
    ///
    /// # Safety
    /// The caller is the owner.
    unsafe fn refill(&self, overflow: &TaskQueue) {
        let tail = self.tail.load(Ordering::Relaxed);
        let (steal, _) = unpack(self.head.load(Ordering::Acquire));
        // A steal under way still owns the slots it claimed: room is counted from it.
        let room = (CAPACITY - tail.wrapping_sub(steal)) as usize;
        let mut next = tail;
        let taken = overflow.pop_many(REFILL.min(room), |task| {
            // SAFETY: owner-only, and at most `room` slots are written.
            unsafe { (*self.slots[(next & MASK) as usize].get()).write(task) };
            next = next.wrapping_add(1);
        });
        if taken > 0 {
            self.tail.store(next, Ordering::Release);
            return;
        }
        // SAFETY: the spill is the owner's alone.
        let spill = unsafe { &mut *self.spill.get() };
        let n = spill.len().min(room);
        for task in spill.drain(..n) {
            // SAFETY: owner-only, and at most `room` slots are written.
            unsafe { (*self.slots[(next & MASK) as usize].get()).write(task) };
            next = next.wrapping_add(1);
        }
        self.spilled.store(spill.len() as u32, Ordering::Relaxed);
        self.tail.store(next, Ordering::Release);
    }

    /// # Safety
    /// The caller is the owner.
    unsafe fn pop_ring(&self) -> Option<Task> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (steal, real) = unpack(head);
            if real == self.tail.load(Ordering::Relaxed) {
                return None;
            }
            let next_real = real.wrapping_add(1);
            let next = if steal == real {
                pack(next_real, next_real)
            } else {
                pack(steal, next_real)
            };
            match self
                .head
                .compare_exchange_weak(head, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY: moving `real` past the slot made it ours alone: a stealer
                    // claims only from `real` on, and the owner (us) wrote it earlier.
                    let slot = unsafe { &*self.slots[(real & MASK) as usize].get() };
                    // SAFETY: as above; the slot holds a task written by `push`.
                    return Some(unsafe { slot.assume_init_read() });
                }
                Err(actual) => head = actual,
            }
        }
    }

    /// Takes about half of the queued tasks (at most `STEAL_MAX`) into `into`; from any
    /// thread. Nothing if another steal is under way.
    pub(crate) fn steal_half(&self, into: &mut Vec<Task>) -> usize {
        let mut head = self.head.load(Ordering::Acquire);
        let (start, n) = loop {
            let (steal, real) = unpack(head);
            if steal != real {
                return 0;
            }
            let available = self.tail.load(Ordering::Acquire).wrapping_sub(real);
            let n = (available - available / 2).min(STEAL_MAX);
            if n == 0 {
                return 0;
            }
            let claimed = pack(steal, real.wrapping_add(n));
            match self.head.compare_exchange_weak(
                head,
                claimed,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break (real, n),
                Err(actual) => head = actual,
            }
        };
        into.reserve(n as usize);
        for i in 0..n {
            let index = start.wrapping_add(i) & MASK;
            // SAFETY: the claim [start, start + n) is ours: the owner pops only from
            // `real` (now past it) and writes no slot before `steal` (still `start`)
            // plus the capacity; the tail's acquire load made the owner's writes visible.
            into.push(unsafe { (*self.slots[index as usize].get()).assume_init_read() });
        }
        // Give the slots back: `steal` catches up with wherever `real` is now.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (_, real) = unpack(head);
            match self.head.compare_exchange_weak(
                head,
                pack(real, real),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return n as usize,
                Err(actual) => head = actual,
            }
        }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no other thread can hold the queue, so this is the owner.
        while let Some(task) = unsafe { self.pop_ring() } {
            drop(task);
        }
        // The spill's tasks go with its `Vec`.
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;
    use crate::scheduler::{Executor, Home};
    use crate::task::new_task;

    fn tasks(executor: &Arc<Executor>, n: usize) -> Vec<Task> {
        (0..n)
            .map(|_| new_task(async {}, Home::local(executor.clone()), 0).0)
            .collect()
    }

    fn finish(executor: &Arc<Executor>) {
        for task in executor.take_registry() {
            task.shut_down();
        }
    }

    #[test]
    fn the_owner_pops_in_push_order_through_the_spill_and_the_overflow() {
        let executor = Arc::new(Executor::new(None));
        let first = CAPACITY as usize + SPILL_BATCH + 3;
        let made = tasks(&executor, first + REFILL + 5);
        let order: Vec<*const _> = made.iter().map(|t| t.header() as *const _).collect();
        let queue = OwnedQueue::default();
        let overflow = TaskQueue::default();
        let mut made = made.into_iter();
        for task in made.by_ref().take(first) {
            // SAFETY: this thread is the queue's only user.
            unsafe { queue.push(task, &overflow) };
        }
        assert_eq!(queue.len(), CAPACITY as usize);
        assert_eq!(
            overflow.len(),
            SPILL_BATCH,
            "a full spill goes over in one run"
        );
        assert_eq!(queue.spilled(), 3);
        let mut seen = Vec::new();
        // Empty the ring and take one refill, then push more behind everything.
        for _ in 0..CAPACITY as usize + 1 {
            // SAFETY: as above.
            let task = unsafe { queue.pop(&overflow) }.expect("queued");
            seen.push(task.header() as *const _);
        }
        assert_eq!(overflow.len(), 0, "the refill took the whole run");
        for task in made {
            // SAFETY: as above.
            unsafe { queue.push(task, &overflow) };
        }
        // SAFETY: as above.
        while let Some(task) = unsafe { queue.pop(&overflow) } {
            seen.push(task.header() as *const _);
        }
        assert_eq!(queue.spilled(), 0);
        assert_eq!(
            seen, order,
            "ring, overflow, spill, ring again: push order kept"
        );
        finish(&executor);
    }

    #[test]
    fn a_steal_takes_half_and_leaves_the_rest_to_the_owner() {
        let executor = Arc::new(Executor::new(None));
        let queue = OwnedQueue::default();
        let overflow = TaskQueue::default();
        for task in tasks(&executor, 10) {
            // SAFETY: this thread is the queue's only owner.
            unsafe { queue.push(task, &overflow) };
        }
        let mut stolen = Vec::new();
        assert_eq!(queue.steal_half(&mut stolen), 5);
        assert_eq!(queue.len(), 5);
        assert_eq!(queue.steal_half(&mut stolen), 3);
        // SAFETY: as above.
        let mut left = 0;
        while unsafe { queue.pop(&overflow) }.is_some() {
            left += 1;
        }
        assert_eq!((stolen.len(), left), (8, 2));
        assert_eq!(queue.steal_half(&mut stolen), 0);
        drop(stolen);
        finish(&executor);
    }

    #[test]
    fn every_task_comes_out_once_while_stealers_race_the_owner() {
        const TOTAL: usize = 200_000;
        let executor = Arc::new(Executor::new(None));
        let queue = Arc::new(OwnedQueue::default());
        let overflow = Arc::new(TaskQueue::default());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stealers: Vec<_> = (0..3)
            .map(|_| {
                let (queue, done) = (queue.clone(), done.clone());
                thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut count = 0;
                    while !done.load(Ordering::Acquire) || !queue.is_empty() {
                        queue.steal_half(&mut got);
                        count += got.len();
                        got.clear();
                        thread::yield_now();
                    }
                    count
                })
            })
            .collect();
        let mut popped = 0;
        for (i, task) in tasks(&executor, TOTAL).into_iter().enumerate() {
            // SAFETY: this thread is the queue's only owner.
            unsafe { queue.push(task, &overflow) };
            if i % 3 == 0 {
                // SAFETY: as above.
                popped += usize::from(unsafe { queue.pop(&overflow) }.is_some());
            }
        }
        loop {
            // SAFETY: as above.
            match unsafe { queue.pop(&overflow) } {
                Some(_) => popped += 1,
                // A steal still copying holds the ring's room, so the refill could not
                // move the spill in yet (the worker's `has_queued` sees it the same way).
                None if queue.spilled() > 0 => thread::yield_now(),
                None => break,
            }
        }
        done.store(true, Ordering::Release);
        let stolen: usize = stealers.into_iter().map(|s| s.join().unwrap()).sum();
        let spilled = overflow.len();
        while overflow.pop().is_some() {}
        assert_eq!(popped + stolen + spilled, TOTAL);
        assert_eq!(executor.live_tasks(), TOTAL);
        finish(&executor);
    }
}
