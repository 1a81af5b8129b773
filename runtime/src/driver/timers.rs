//! The timers of one driver: deadlines in order over a table of slots.
//!
//! A sleep costs one slot and one ordered entry, no submission: the driver bounds its
//! park by the earliest deadline instead. A removed sleep's slot stays taken (cancelled)
//! until its ordered entry leaves the queue, so an entry always names the sleep it was
//! made for, with no sequence number to tell a reused slot apart.
//!
//! The order is kept in two places. Sleeps of one length registered one after another
//! come in deadline order, so an entry not earlier than the newest in `run` is appended
//! there (O(1) in and out); only the others go to the binary heap, whose pops cost a
//! cache miss per level.
//!
//! A sleep takes 33 bytes here (an ordered entry, a waker, a state byte): a burst of a
//! million sleeps touches that many megabytes of fresh memory, and the first-touch page
//! faults of it were a good part of what such a burst cost.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Where a slot is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Free for the next sleep.
    Vacant,
    /// A sleep's deadline is ahead; its waker is stored.
    Waiting,
    /// Its entry left the queue and its waker was woken; its sleep has not seen it yet.
    Fired,
    /// Its sleep is gone; the slot waits for the entry to leave the queue.
    Cancelled,
}

/// Identifies a registered sleep: valid until the sleep reads as due or is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: u32,
}

/// An ordered entry: deadline (nanoseconds after the queue's origin), then slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: u64,
    slot: u32,
}

pub(crate) struct TimerQueue {
    /// Deadlines are kept as nanoseconds after this (earlier ones as 0: they are due).
    origin: Instant,
    /// Entries in non-decreasing deadline order.
    run: VecDeque<Due>,
    /// Entries that came earlier than the end of `run`.
    heap: BinaryHeap<Reverse<Due>>,
    /// By slot: the waker of a waiting sleep, and the slot's state.
    wakers: Vec<Option<Waker>>,
    states: Vec<SlotState>,
    /// Vacant slots, the most recently freed last.
    vacant: Vec<u32>,
    /// Slots a sleep holds (waiting or fired).
    live: usize,
    /// The fallback driver's timeout ops, by (deadline, sequence number), and the same
    /// by op: few, so kept apart from the sleeps' compact table.
    ops: BTreeMap<(Instant, u64), u64>,
    op_deadlines: HashMap<u64, (Instant, u64)>,
    next_op_seq: u64,
}

impl Default for TimerQueue {
    fn default() -> TimerQueue {
        TimerQueue {
            origin: Instant::now(),
            run: VecDeque::new(),
            heap: BinaryHeap::new(),
            wakers: Vec::new(),
            states: Vec::new(),
            vacant: Vec::new(),
            live: 0,
            ops: BTreeMap::new(),
            op_deadlines: HashMap::new(),
            next_op_seq: 0,
        }
    }
}

impl TimerQueue {
    fn nanos(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX)
    }

    pub(crate) fn insert_waker(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        let slot = match self.vacant.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.wakers.len())
                    .expect("over 4 billion sleeps registered on one driver");
                self.wakers.push(None);
                self.states.push(SlotState::Vacant);
                slot
            }
        };
        let index = slot as usize;
        debug_assert_eq!(self.states[index], SlotState::Vacant);
        self.wakers[index] = Some(waker);
        self.states[index] = SlotState::Waiting;
        self.live += 1;
        let due = Due {
            at: self.nanos(deadline),
            slot,
        };
        match self.run.back() {
            Some(last) if due.at < last.at => self.heap.push(Reverse(due)),
            _ => self.run.push_back(due),
        }
        TimerKey { slot }
    }

    pub(crate) fn insert_op(&mut self, deadline: Instant, user_data: u64) {
        let seq = self.next_op_seq;
        self.next_op_seq += 1;
        self.ops.insert((deadline, seq), user_data);
        self.op_deadlines.insert(user_data, (deadline, seq));
    }

    /// The earliest ordered entry.
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

    fn state(&self, key: TimerKey) -> SlotState {
        self.states
            .get(key.slot as usize)
            .copied()
            .unwrap_or(SlotState::Vacant)
    }

    fn vacate(&mut self, slot: u32) {
        self.states[slot as usize] = SlotState::Vacant;
        self.vacant.push(slot);
    }

    /// True if the sleep is due (and forgets it); otherwise stores the waker.
    pub(crate) fn poll(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.state(key) {
            SlotState::Waiting => {
                let stored = self.wakers[key.slot as usize]
                    .as_mut()
                    .expect("a waiting slot has a waker");
                if !stored.will_wake(waker) {
                    *stored = waker.clone();
                }
                false
            }
            SlotState::Fired => {
                self.vacate(key.slot);
                self.live -= 1;
                true
            }
            state => {
                debug_assert!(false, "a sleep polled its {state:?} slot");
                true
            }
        }
    }

    pub(crate) fn remove(&mut self, key: TimerKey) {
        match self.state(key) {
            SlotState::Waiting => {
                // Its entry is still queued: the slot waits for it (see the module doc).
                self.wakers[key.slot as usize] = None;
                self.states[key.slot as usize] = SlotState::Cancelled;
                self.live -= 1;
            }
            SlotState::Fired => {
                self.vacate(key.slot);
                self.live -= 1;
            }
            state => debug_assert!(false, "a sleep removed its {state:?} slot"),
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

    /// The ordered entry `peek` returned has left the queue: frees a cancelled slot,
    /// and returns the waker of a waiting one (now fired).
    fn take_due(&mut self, due: Due) -> Option<Waker> {
        let index = due.slot as usize;
        match self.states[index] {
            SlotState::Waiting => {
                self.states[index] = SlotState::Fired;
                self.wakers[index].take()
            }
            SlotState::Cancelled => {
                self.vacate(due.slot);
                None
            }
            state => unreachable!("a queued entry names a {state:?} slot"),
        }
    }

    /// The earliest deadline of a waiting sleep or an op.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        let mut sleep = None;
        while let Some(due) = self.peek() {
            if self.states[due.slot as usize] == SlotState::Waiting {
                sleep = Some(self.origin + Duration::from_nanos(due.at));
                break;
            }
            self.pop();
            let _ = self.take_due(due);
        }
        let op = self.ops.keys().next().map(|&(deadline, _)| deadline);
        match (sleep, op) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires everything due at `now`: sleeps in deadline order, then ops.
    pub(crate) fn fire(&mut self, now: Instant, wakers: &mut Vec<Waker>, ops: &mut Vec<u64>) {
        let now_at = self.nanos(now);
        while let Some(due) = self.peek() {
            if due.at > now_at {
                break;
            }
            self.pop();
            wakers.extend(self.take_due(due));
        }
        while let Some(entry) = self.ops.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let user_data = entry.remove();
            self.op_deadlines.remove(&user_data);
            ops.push(user_data);
        }
        if self.live == 0 && self.wakers.capacity() > 4096 {
            // Reclaim the memory a burst of timers left behind; what is left in the
            // queue names cancelled slots only.
            self.wakers = Vec::new();
            self.states = Vec::new();
            self.vacant = Vec::new();
            self.run = VecDeque::new();
            self.heap = BinaryHeap::new();
        }
    }
}

// What a sleep costs the queue: an ordered entry and a waker, 16 bytes each, and its
// state byte.
#[cfg(target_pointer_width = "64")]
const _: () =
    assert!(std::mem::size_of::<Due>() == 16 && std::mem::size_of::<Option<Waker>>() == 16);

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
        assert!(timers.is_empty(), "and forgotten");
        assert_eq!(timers.next_deadline(), None);
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
    fn a_removed_sleeps_slot_is_reused_only_once_its_entry_left_the_queue() {
        let mut timers = TimerQueue::default();
        let now = Instant::now();
        let (early, late) = (waker(), waker());
        let removed = timers.insert_waker(now + Duration::from_millis(10), early.clone());
        timers.remove(removed);
        assert!(timers.is_empty(), "a cancelled slot is not a live sleep");
        let kept = timers.insert_waker(now + Duration::from_secs(10), late.clone());
        assert_ne!(
            kept.slot, removed.slot,
            "the cancelled slot's entry is queued"
        );
        let (mut fired, mut ops) = (Vec::new(), Vec::new());
        timers.fire(now + Duration::from_secs(1), &mut fired, &mut ops);
        assert!(fired.is_empty(), "a removed sleep fired");
        let next = timers.insert_waker(now + Duration::from_secs(20), late.clone());
        assert_eq!(next.slot, removed.slot, "freed when its entry left");
        assert!(!timers.poll(kept, &late));
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_secs(10)));
        timers.fire(now + Duration::from_secs(10), &mut fired, &mut ops);
        assert_eq!(fired.len(), 1);
        assert!(timers.poll(kept, &late));
        assert!(!timers.poll(next, &late));
        timers.remove(next);
        assert!(timers.is_empty());
    }

    #[test]
    fn deadlines_before_the_queue_existed_are_due_and_ops_order_with_sleeps() {
        let mut timers = TimerQueue::default();
        let past = timers
            .origin
            .checked_sub(Duration::from_millis(2))
            .expect("the clock has run 2 ms");
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
