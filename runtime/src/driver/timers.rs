//! The timers of one driver: deadlines in order over a table of slots.
//!
//! A sleep costs one slot and one ordered entry, no submission: the driver bounds its
//! park by the earliest deadline instead. Removal is lazy; an ordered entry whose slot
//! moved on (different sequence number) is skipped.
//!
//! The order is kept in two places. Sleeps of one length registered one after another
//! come in deadline order, so an entry not earlier than the newest in `run` is appended
//! there (O(1) in and out); only the others go to the binary heap, whose pops cost a
//! cache miss per level.
//!
//! A slot and an ordered entry take 24 bytes each: a burst of a million sleeps touches
//! 48 MB of fresh memory for them, and first-touch page faults are a good part of what
//! such a burst costs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Marks a vacant slot's `seq`; the low bits name the next vacant slot.
const VACANT: u64 = 1 << 63;
/// No slot (the end of the vacant list).
const NO_SLOT: u32 = u32::MAX;

/// A sleep's place in the table.
struct Slot {
    /// The registration's sequence number, or `VACANT | next vacant slot`.
    seq: u64,
    /// The sleep's waker; `None` once it fired and its future has not seen it yet.
    waker: Option<Waker>,
}

/// Identifies a registered sleep. `check` is the low half of the slot's sequence
/// number: only the sleep itself removes its slot, so a key never outlives it, and the
/// check is there to catch a mistake, not a race.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: u32,
    check: u32,
}

/// An ordered entry: deadline (nanoseconds after the queue's origin), then registration
/// order, then slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: u64,
    seq: u64,
    slot: u32,
}

pub(crate) struct TimerQueue {
    /// Deadlines are kept as nanoseconds after this (earlier ones as 0: they are due).
    origin: Instant,
    /// Entries in non-decreasing deadline (and registration) order.
    run: VecDeque<Due>,
    /// Entries that came earlier than the end of `run`.
    heap: BinaryHeap<Reverse<Due>>,
    slots: Vec<Slot>,
    /// The first vacant slot.
    vacant: u32,
    /// Occupied slots.
    live: usize,
    /// The fallback driver's timeout ops, by (deadline, sequence number), and the same
    /// by op: few, so kept apart from the sleeps' compact table.
    ops: BTreeMap<(Instant, u64), u64>,
    op_deadlines: HashMap<u64, (Instant, u64)>,
    next_seq: u64,
}

impl Default for TimerQueue {
    fn default() -> TimerQueue {
        TimerQueue {
            origin: Instant::now(),
            run: VecDeque::new(),
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            vacant: NO_SLOT,
            live: 0,
            ops: BTreeMap::new(),
            op_deadlines: HashMap::new(),
            next_seq: 0,
        }
    }
}

impl TimerQueue {
    fn nanos(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX)
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub(crate) fn insert_waker(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        let seq = self.take_seq();
        let filled = Slot {
            seq,
            waker: Some(waker),
        };
        let slot = if self.vacant == NO_SLOT {
            let slot = u32::try_from(self.slots.len())
                .ok()
                .filter(|&slot| slot != NO_SLOT)
                .expect("over 4 billion sleeps registered on one driver");
            self.slots.push(filled);
            slot
        } else {
            let slot = self.vacant;
            let next = std::mem::replace(&mut self.slots[slot as usize], filled).seq;
            debug_assert!(next & VACANT != 0, "the vacant list names an occupied slot");
            self.vacant = next as u32;
            slot
        };
        self.live += 1;
        let due = Due {
            at: self.nanos(deadline),
            seq,
            slot,
        };
        match self.run.back() {
            Some(last) if due.at < last.at => self.heap.push(Reverse(due)),
            _ => self.run.push_back(due),
        }
        TimerKey {
            slot,
            check: seq as u32,
        }
    }

    pub(crate) fn insert_op(&mut self, deadline: Instant, user_data: u64) {
        let seq = self.take_seq();
        self.ops.insert((deadline, seq), user_data);
        self.op_deadlines.insert(user_data, (deadline, seq));
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

    /// The slot of a live ordered entry.
    fn slot_of(&mut self, due: Due) -> Option<&mut Slot> {
        self.slots
            .get_mut(due.slot as usize)
            .filter(|slot| slot.seq == due.seq)
    }

    fn key_is_live(&self, key: TimerKey) -> bool {
        self.slots
            .get(key.slot as usize)
            .is_some_and(|slot| slot.seq & VACANT == 0 && slot.seq as u32 == key.check)
    }

    fn vacate(&mut self, slot: u32) {
        self.slots[slot as usize] = Slot {
            seq: VACANT | u64::from(self.vacant),
            waker: None,
        };
        self.vacant = slot;
        self.live -= 1;
    }

    /// True if the sleep is due (and forgets it); otherwise stores the waker.
    pub(crate) fn poll(&mut self, key: TimerKey, waker: &Waker) -> bool {
        if !self.key_is_live(key) {
            return true;
        }
        match &mut self.slots[key.slot as usize].waker {
            None => {
                self.vacate(key.slot);
                true
            }
            Some(current) => {
                if !current.will_wake(waker) {
                    *current = waker.clone();
                }
                false
            }
        }
    }

    pub(crate) fn remove(&mut self, key: TimerKey) {
        if self.key_is_live(key) {
            self.vacate(key.slot);
        }
    }

    /// Removes a fallback timeout op; false if it already fired.
    pub(crate) fn remove_op(&mut self, user_data: u64) -> bool {
        match self.op_deadlines.remove(&user_data) {
            Some(at) => {
                self.ops.remove(&at);
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0 && self.ops.is_empty()
    }

    /// The earliest deadline of a sleep that has not fired or an op.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        let mut sleep = None;
        while let Some(due) = self.peek() {
            if self.slot_of(due).is_some_and(|slot| slot.waker.is_some()) {
                sleep = Some(self.origin + Duration::from_nanos(due.at));
                break;
            }
            self.pop();
        }
        let op = self.ops.keys().next().map(|&(deadline, _)| deadline);
        match (sleep, op) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires everything due at `now`: sleeps in deadline order (ties in registration
    /// order), then ops.
    pub(crate) fn fire(&mut self, now: Instant, wakers: &mut Vec<Waker>, ops: &mut Vec<u64>) {
        let now_at = self.nanos(now);
        while let Some(due) = self.peek() {
            if due.at > now_at {
                break;
            }
            self.pop();
            if let Some(waker) = self.slot_of(due).and_then(|slot| slot.waker.take()) {
                wakers.push(waker);
            }
        }
        while let Some(entry) = self.ops.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let user_data = entry.remove();
            self.op_deadlines.remove(&user_data);
            ops.push(user_data);
        }
        if self.live == 0 && self.slots.capacity() > 4096 {
            // Reclaim the memory a burst of timers left behind. Every ordered entry is
            // stale now.
            self.slots = Vec::new();
            self.vacant = NO_SLOT;
            self.run = VecDeque::new();
            self.heap = BinaryHeap::new();
        }
    }
}

// What a sleep costs the queue: a slot and an ordered entry, 24 bytes each.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Slot>() == 24 && std::mem::size_of::<Due>() == 24);

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
    #[test]
    fn a_reused_slot_is_not_fired_by_the_stale_entry_of_its_last_sleep() {
        let mut timers = TimerQueue::default();
        let now = Instant::now();
        let (early, late) = (waker(), waker());
        let removed = timers.insert_waker(now + Duration::from_millis(10), early.clone());
        timers.remove(removed);
        let kept = timers.insert_waker(now + Duration::from_secs(10), late.clone());
        assert_eq!(kept.slot, removed.slot, "the vacant slot is reused");
        let (mut fired, mut ops) = (Vec::new(), Vec::new());
        timers.fire(now + Duration::from_secs(1), &mut fired, &mut ops);
        assert!(
            fired.is_empty(),
            "the stale entry woke the slot's new sleep"
        );
        assert!(!timers.poll(kept, &late));
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_secs(10)));
        timers.fire(now + Duration::from_secs(10), &mut fired, &mut ops);
        assert_eq!(fired.len(), 1);
        assert!(timers.poll(kept, &late));
        assert!(timers.is_empty());
    }

    #[test]
    fn deadlines_before_the_queue_existed_are_due_and_ops_order_with_sleeps() {
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let mut timers = TimerQueue::default();
        let w = waker();
        timers.insert_op(past + Duration::from_secs(5), 1);
        let key = timers.insert_waker(past, w.clone());
        assert_eq!(timers.next_deadline(), Some(timers.origin));
        let (mut fired, mut ops) = (Vec::new(), Vec::new());
        timers.fire(Instant::now(), &mut fired, &mut ops);
        assert_eq!((fired.len(), ops.len()), (1, 0));
        assert!(timers.poll(key, &w));
        assert_eq!(timers.next_deadline(), Some(past + Duration::from_secs(5)));
        assert!(!timers.is_empty(), "the op is still waiting");
        timers.fire(past + Duration::from_secs(5), &mut fired, &mut ops);
        assert_eq!(ops, vec![1]);
        assert!(timers.is_empty());
    }
}
