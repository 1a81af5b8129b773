//! The timers of one driver: a binary heap of deadlines over a slab of entries.
//!
//! A sleep costs one slab entry and one heap entry, no submission: the driver bounds its
//! park by the earliest deadline instead. Removal is lazy; a heap entry whose slab slot
//! moved on (different sequence number) is skipped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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

#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    entries: Slab<Entry>,
    ops: HashMap<u64, TimerKey>,
    next_seq: u64,
}

impl TimerQueue {
    fn insert(&mut self, deadline: Instant, expiry: Expiry) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.entries.insert(Entry { seq, expiry });
        self.heap.push(Reverse((deadline, seq, key)));
        TimerKey { key, seq }
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
        while let Some(Reverse((deadline, seq, key))) = self.heap.peek().copied() {
            match self.entries.get(key) {
                Some(entry) if entry.seq == seq && !matches!(entry.expiry, Expiry::Fired) => {
                    return Some(deadline)
                }
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// Fires everything due at `now`, in deadline order (ties in registration order).
    pub(crate) fn fire(&mut self, now: Instant, wakers: &mut Vec<Waker>, ops: &mut Vec<u64>) {
        while let Some(Reverse((deadline, seq, key))) = self.heap.peek().copied() {
            if deadline > now {
                break;
            }
            self.heap.pop();
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
            // Reclaim the memory a burst of timers left behind. Every heap entry is stale
            // now, and stale keys are told apart by their sequence numbers.
            self.entries = Slab::new();
            self.heap = BinaryHeap::new();
        }
    }
}
