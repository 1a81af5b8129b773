//! A task's lifecycle as bits in one atomic, so that wake, run and abort can race safely.

use std::sync::atomic::{AtomicU32, Ordering};

/// In a run queue, or about to be pushed to one.
const SCHEDULED: u32 = 1;
/// Being polled.
const RUNNING: u32 = 2;
/// Woken while being polled: queue it again after the poll.
const NOTIFIED: u32 = 4;
/// Finished; its output (or error) is in the cell.
const COMPLETE: u32 = 8;
/// Cancellation requested: drop the future at its next turn.
const ABORT: u32 = 16;
/// The join handle stored a waker in the header; the task side may read it, and only a
/// successful `unset_join_waker` gives the handle the slot back (never after COMPLETE).
const JOIN_WAKER: u32 = 32;

pub(crate) struct State(AtomicU32);

/// What the poller must do after a poll returned `Pending`.
#[derive(PartialEq, Eq)]
pub(crate) enum AfterPoll {
    Idle,
    Reschedule,
}

impl State {
    /// A new task is scheduled: spawning queues it.
    pub(crate) fn new_scheduled() -> State {
        State(AtomicU32::new(SCHEDULED))
    }

    /// Returns true if the caller must push the task to a run queue.
    pub(crate) fn wake(&self) -> bool {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            let next = if current & (COMPLETE | SCHEDULED) != 0 {
                return false;
            } else if current & RUNNING != 0 {
                if current & NOTIFIED != 0 {
                    return false;
                }
                current | NOTIFIED
            } else {
                current | SCHEDULED
            };
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next & RUNNING == 0,
                Err(actual) => current = actual,
            }
        }
    }

    /// Claims the task for a poll. Returns `None` if it is complete or someone else
    /// holds it (shutdown claims tasks still sitting in run queues: the queue's copy
    /// must then not run it); otherwise whether an abort was requested.
    pub(crate) fn start_run(&self) -> Option<bool> {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            if current & (COMPLETE | RUNNING) != 0 {
                return None;
            }
            let next = (current & !SCHEDULED) | RUNNING;
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(current & ABORT != 0),
                Err(actual) => current = actual,
            }
        }
    }

    /// Ends a poll that returned `Pending`.
    pub(crate) fn end_run(&self) -> AfterPoll {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            let (next, after) = if current & NOTIFIED != 0 {
                (
                    (current & !(RUNNING | NOTIFIED)) | SCHEDULED,
                    AfterPoll::Reschedule,
                )
            } else {
                (current & !RUNNING, AfterPoll::Idle)
            };
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return after,
                Err(actual) => current = actual,
            }
        }
    }

    /// Marks the task complete. Its output must already be stored. Returns true if a
    /// join waker is stored, which the caller must then wake.
    pub(crate) fn complete(&self) -> bool {
        let previous = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                Some((current | COMPLETE) & !(RUNNING | SCHEDULED | NOTIFIED))
            })
            .unwrap_or_else(|current| current);
        previous & JOIN_WAKER != 0
    }

    /// Whether the join handle has a waker stored (so only it may not write the slot).
    pub(crate) fn has_join_waker(&self) -> bool {
        self.0.load(Ordering::Acquire) & JOIN_WAKER != 0
    }

    /// Publishes the join waker the handle just wrote; false if the task completed
    /// first (the task side will then never read the slot).
    pub(crate) fn set_join_waker(&self) -> bool {
        self.update_unless_complete(|current| current | JOIN_WAKER)
    }

    /// Takes the join waker slot back for the handle to rewrite; false if the task
    /// completed (the task side may be reading the slot, so it must stay untouched).
    pub(crate) fn unset_join_waker(&self) -> bool {
        self.update_unless_complete(|current| current & !JOIN_WAKER)
    }

    fn update_unless_complete(&self, f: impl Fn(u32) -> u32) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current & COMPLETE == 0).then(|| f(current))
            })
            .is_ok()
    }

    /// Requests cancellation; returns true if the caller must queue the task so that its
    /// next turn performs it.
    pub(crate) fn abort(&self) -> bool {
        let previous = self.0.fetch_or(ABORT, Ordering::AcqRel);
        if previous & (COMPLETE | ABORT) != 0 {
            return false;
        }
        self.wake()
    }

    /// Claims an idle task for shutdown (as `start_run` would); false if it is complete
    /// or running elsewhere.
    pub(crate) fn claim_for_shutdown(&self) -> bool {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            if current & (COMPLETE | RUNNING) != 0 {
                return false;
            }
            let next = (current & !SCHEDULED) | RUNNING | ABORT;
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.0.load(Ordering::Acquire) & COMPLETE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_while_running_reschedules_once_after_the_poll() {
        let state = State::new_scheduled();
        assert_eq!(state.start_run(), Some(false));
        assert!(
            !state.wake(),
            "the poller, not the waker, queues a running task"
        );
        assert!(
            !state.wake(),
            "a second wake during the same poll adds nothing"
        );
        assert!(state.end_run() == AfterPoll::Reschedule);
        assert!(!state.wake(), "already scheduled again");
        assert_eq!(state.start_run(), Some(false));
        assert!(state.end_run() == AfterPoll::Idle);
        assert!(state.wake(), "an idle task is queued by its waker");
    }

    #[test]
    fn a_running_or_complete_task_cannot_be_started_again() {
        let state = State::new_scheduled();
        assert_eq!(state.start_run(), Some(false));
        assert_eq!(state.start_run(), None);
        assert!(!state.claim_for_shutdown());
        assert!(!state.complete());
        assert!(state.is_complete());
        assert_eq!(state.start_run(), None);
        assert!(!state.wake());
        assert!(!state.abort());
    }

    #[test]
    fn abort_queues_an_idle_task_once_and_its_next_run_sees_it() {
        let state = State::new_scheduled();
        assert_eq!(state.start_run(), Some(false));
        assert!(state.end_run() == AfterPoll::Idle);
        assert!(state.abort());
        assert!(!state.abort(), "a second abort queues nothing");
        assert_eq!(state.start_run(), Some(true));
    }

    #[test]
    fn the_join_waker_slot_is_handed_back_only_before_completion() {
        let state = State::new_scheduled();
        assert!(state.set_join_waker());
        assert!(state.has_join_waker());
        assert!(state.unset_join_waker());
        assert!(!state.has_join_waker());
        assert!(state.set_join_waker());
        assert!(state.complete(), "completion reports the stored waker");
        assert!(!state.unset_join_waker(), "the task side may be reading it");
        assert!(!state.set_join_waker());
    }

    #[test]
    fn shutdown_claims_a_queued_task_so_its_queue_copy_does_not_run() {
        let state = State::new_scheduled();
        assert!(state.claim_for_shutdown());
        assert_eq!(state.start_run(), None);
    }
}
