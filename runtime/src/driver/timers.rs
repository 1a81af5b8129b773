//! The timers of one driver: deadlines in order over a slab of entries.
//!
//! A sleep costs one slab entry and one ordered entry, no submission: the driver bounds
//! its park by the earliest deadline instead. Removal is lazy; an ordered entry whose
//! slab slot moved on (different sequence number) is skipped.
//!
//! The order is kept in two places. Sleeps of one length registered one after another
//! come in deadline order, so an entry not earlier than the newest in `run` is appended
//! there (O(1) in and out); only the others go to the binary heap, whose pops cost a
//! cache miss per level.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::task::Waker;
use std::time::Instant;

use slab::Slab;

enum Expiry {
    /// A sleep; wake this when due.
    Waiting(Option<Waker>),
    /// A sleep that is due; its future has not seen it yet.
    Fired,
    /// A fallback timeout op; complete it when due.
    Op(u64),
}

struct Entry {
    seq: u64,
    expiry: Expiry,
}

/// Identifies a registered sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    key: usize,
    seq: u64,
}

/// An ordered entry: deadline, then registration order, then slab key.
type Due = (Instant, u64, usize);

#[derive(Default)]
pub(crate) struct TimerQueue {
    /// Entries in non-decreasing deadline (and registration) order.
    run: VecDeque<Due>,
    /// Entries that came earlier than the end of `run`.
    heap: BinaryHeap<Reverse<Due>>,
    entries: Slab<Entry>,
    ops: HashMap<u64, TimerKey>,
    next_seq: u64,
}

impl TimerQueue {
    fn insert(&mut self, deadline: Instant, expiry: Expiry) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.entries.insert(Entry { seq, expiry });
        match self.run.back() {
            Some(&(last, _, _)) if deadline < last => self.heap.push(Reverse((deadline, seq, key))),
            _ => self.run.push_back((deadline, seq, key)),
        }
        TimerKey { key, seq }
    }

    /// The earliest ordered entry, live or stale.
    fn peek(&self) -> Option<Due> {
        match (self.run.front(), self.heap.peek()) {
            (Some(run), Some(Reverse(heap))) => Some(*run.min(heap)),
            (Some(run), None) => Some(*run),
            (None, Some(Reverse(heap))) => Some(*heap),
            (None, None) => None,
        }
    }

    /// Removes the entry `peek` returned.
    fn pop(&mut self) {
        let from_run = match (self.run.front(), self.heap.peek()) {
            (Some(run), Some(Reverse(heap))) => run < heap,
            (run, _) => run.is_some(),
        };
        if from_run {
            self.run.pop_front();
        } else {
            self.heap.pop();
        }
    }

    pub(crate) fn insert_waker(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        self.insert(deadline, Expiry::Waiting(Some(waker)))
    }

    pub(crate) fn insert_op(&mut self, deadline: Instant, user_data: u64) {
        let key = self.insert(deadline, Expiry::Op(user_data));
        self.ops.insert(user_data, key);
    }

    fn entry_mut(&mut self, key: TimerKey) -> Option<&mut Entry> {
        self.entries.get_mut(key.key).filter(|e| e.seq == key.seq)
    }

    /// True if the sleep is due (and forgets it); otherwise stores the waker.
    pub(crate) fn poll(&mut self, key: TimerKey, waker: &Waker) -> bool {
        let Some(entry) = self.entry_mut(key) else {
            return true;
        };
        match &mut entry.expiry {
            Expiry::Fired => {
                self.entries.remove(key.key);
                true
            }
            Expiry::Waiting(slot) => {
                match slot {
                    Some(current) if current.will_wake(waker) => {}
                    _ => *slot = Some(waker.clone()),
                }
                false
            }
            Expiry::Op(_) => unreachable!("a sleep key never names an op timer"),
        }
    }

    pub(crate) fn remove(&mut self, key: TimerKey) {
        if self.entry_mut(key).is_some() {
            self.entries.remove(key.key);
        }
    }

    /// Removes a fallback timeout op; false if it already fired.
    pub(crate) fn remove_op(&mut self, user_data: u64) -> bool {
        match self.ops.remove(&user_data) {
            Some(key) => {
                self.remove(key);
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some((deadline, seq, key)) = self.peek() {
            match self.entries.get(key) {
                Some(entry) if entry.seq == seq && !matches!(entry.expiry, Expiry::Fired) => {
                    return Some(deadline)
                }
                _ => self.pop(),
            }
        }
        None
    }

    /// Fires everything due at `now`, in deadline order (ties in registration order).
    pub(crate) fn fire(&mut self, now: Instant, wakers: &mut Vec<Waker>, ops: &mut Vec<u64>) {
        while let Some((deadline, seq, key)) = self.peek() {
            if deadline > now {
                break;
            }
            self.pop();
            let Some(entry) = self.entries.get_mut(key).filter(|e| e.seq == seq) else {
                continue;
            };
            match std::mem::replace(&mut entry.expiry, Expiry::Fired) {
                Expiry::Waiting(waker) => wakers.extend(waker),
                Expiry::Op(user_data) => {
                    self.entries.remove(key);
                    self.ops.remove(&user_data);
                    ops.push(user_data);
                }
                Expiry::Fired => {}
            }
        }
        if self.entries.is_empty() && self.entries.capacity() > 4096 {
            // Reclaim the memory a burst of timers left behind. Every ordered entry is stale
            // now, and stale keys are told apart by their sequence numbers.
            self.entries = Slab::new();
            self.run = VecDeque::new();
            self.heap = BinaryHeap::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Waker;
    use std::time::{Duration, Instant};

    use super::TimerQueue;
    use crate::driver::testing::Count;

    fn waker() -> Waker {
        Waker::from(Arc::new(Count(AtomicUsize::new(0))))
    }

    #[test]
    fn fires_in_deadline_order_whatever_the_registration_order() {
        let mut timers = TimerQueue::default();
        let now = Instant::now();
        let wakers: Vec<_> = (0..6).map(|_| waker()).collect();
        // 30, 10, 50, 20, 40, 0 ms: half go to the run, half to the heap.
        let order = [30, 10, 50, 20, 40, 0];
        for (ms, w) in order.iter().zip(&wakers) {
            timers.insert_waker(now + Duration::from_millis(*ms), w.clone());
        }
        assert_eq!(timers.next_deadline(), Some(now));
        let (mut fired, mut ops) = (Vec::new(), Vec::new());
        timers.fire(now + Duration::from_millis(25), &mut fired, &mut ops);
        assert_eq!(fired.len(), 3); // 0, 10, 20
        assert!(ops.is_empty());
        assert_eq!(
            timers.next_deadline(),
            Some(now + Duration::from_millis(30))
        );
        fired.clear();
        timers.fire(now + Duration::from_secs(1), &mut fired, &mut ops);
        assert_eq!(fired.len(), 3);
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn a_fired_sleep_is_seen_once_and_a_removed_one_never_fires() {
        let mut timers = TimerQueue::default();
        let now = Instant::now();
        let w = waker();
        let fired_key = timers.insert_waker(now, w.clone());
        let removed = timers.insert_waker(now, w.clone());
        timers.remove(removed);
        let (mut fired, mut ops) = (Vec::new(), Vec::new());
        timers.fire(now, &mut fired, &mut ops);
        assert_eq!(fired.len(), 1);
        assert!(timers.poll(fired_key, &w), "the fired sleep is due");
        assert!(
            timers.poll(fired_key, &w),
            "and forgotten: a stale key reads as due"
        );
        assert!(timers.is_empty());
    }

    #[test]
    fn an_op_timeout_fires_once_unless_removed_first() {
        let mut timers = TimerQueue::default();
        let now = Instant::now();
        timers.insert_op(now, 7);
        timers.insert_op(now, 8);
        assert!(timers.remove_op(8));
        assert!(!timers.remove_op(8), "already gone");
        let (mut fired, mut ops) = (Vec::new(), Vec::new());
        timers.fire(now, &mut fired, &mut ops);
        assert_eq!(ops, vec![7]);
        assert!(!timers.remove_op(7), "it fired");
    }
}
