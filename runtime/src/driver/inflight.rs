//! The table of operations a ring has in flight, and the lifecycle of each one.

use std::any::Any;
use std::io;
use std::task::Waker;

use slab::Slab;

/// What became of a completed operation: the raw CQE result and flags.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    /// Non-negative on success, `-errno` on failure.
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    pub fn io_result(self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        }
    }
}

/// Data of an operation whose future was dropped before its completion arrived. The driver
/// keeps it (buffers, paths, socket addresses) alive until the kernel is done with it, then
/// hands it the result so that, for instance, an fd opened for nobody is closed.
pub(crate) trait Discard: Send {
    fn discard(self: Box<Self>, completion: Completion);
}

/// What [`InFlightTable::poll`] found.
pub(crate) enum Polled {
    Ready(Completion),
    Pending,
}

/// What [`InFlightTable::abandon`] did with a dropped op's data.
pub(crate) enum Abandoned {
    /// Its completion had come: here is the data back, to discard.
    Completed(Box<dyn Discard>, Completion),
    /// Kept until the completion: cancel the op.
    Kept,
    /// Nothing to do (the slot is gone, or the ring was drained and the data leaked).
    Gone,
}

/// One in-flight operation's state. Exactly one of these holds at a time.
pub(crate) enum Lifecycle {
    /// Handed to the ring; nobody has polled its future yet.
    Submitted,
    /// Its future is waiting; wake this on completion.
    Waiting(Waker),
    /// Its future was dropped; keep the op's data alive until the completion.
    Ignored(Box<dyn Discard>),
    /// The completion arrived; its future has not collected it yet.
    Completed(Completion),
}

pub(crate) struct InFlight {
    /// Distinguishes this op from earlier ones that used the same slot, so that a late
    /// cancel request or completion never touches the wrong op.
    pub(crate) generation: u32,
    pub(crate) lifecycle: Lifecycle,
}

/// Slab of in-flight ops. `user_data` is `generation << 32 | key`; the top values are
/// reserved for the driver's own internal submissions.
#[derive(Default)]
pub(crate) struct InFlightTable {
    slots: Slab<InFlight>,
    next_generation: u32,
    /// The ring was drained (its owner stopped): no completion will be reaped any
    /// more, so an op that has none yet keeps its data for ever (see `Op`'s drop).
    closed: bool,
}

/// user_data values at or above this are the driver's own, never a slab entry.
pub(crate) const RESERVED_USER_DATA: u64 = u64::MAX - 16;

pub(crate) fn split_user_data(user_data: u64) -> (usize, u32) {
    ((user_data & 0xffff_ffff) as usize, (user_data >> 32) as u32)
}

impl InFlightTable {
    pub(crate) fn insert(&mut self, lifecycle: Lifecycle) -> u64 {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1) & 0x7fff_ffff;
        let key = self.slots.insert(InFlight {
            generation,
            lifecycle,
        });
        ((generation as u64) << 32) | key as u64
    }

    pub(crate) fn get_mut(&mut self, user_data: u64) -> Option<&mut InFlight> {
        let (key, generation) = split_user_data(user_data);
        self.slots
            .get_mut(key)
            .filter(|slot| slot.generation == generation)
    }

    pub(crate) fn remove(&mut self, user_data: u64) -> Option<InFlight> {
        let (key, generation) = split_user_data(user_data);
        match self.slots.get(key) {
            Some(slot) if slot.generation == generation => Some(self.slots.remove(key)),
            _ => None,
        }
    }

    /// Records a completion. Returns the waker to call (outside any lock) and, for an
    /// ignored op, its data to discard (also outside the lock).
    pub(crate) fn complete(
        &mut self,
        user_data: u64,
        completion: Completion,
    ) -> (Option<Waker>, Option<Box<dyn Discard>>) {
        let Some(slot) = self.get_mut(user_data) else {
            return (None, None);
        };
        match std::mem::replace(&mut slot.lifecycle, Lifecycle::Completed(completion)) {
            Lifecycle::Submitted => (None, None),
            Lifecycle::Waiting(waker) => (Some(waker), None),
            Lifecycle::Ignored(data) => {
                self.remove(user_data);
                (None, Some(data))
            }
            // A second completion for one op (multishot) is not used by ringloom; keep the
            // first.
            Lifecycle::Completed(first) => {
                slot.lifecycle = Lifecycle::Completed(first);
                (None, None)
            }
        }
    }

    /// An op's future asks for its result: the completion (and the op leaves the
    /// table), or `Pending` with `waker` stored to wake it (cloned only if the one
    /// stored would not wake the same task).
    pub(crate) fn poll(&mut self, user_data: u64, waker: &Waker) -> Polled {
        let slot = self
            .get_mut(user_data)
            .expect("in-flight op missing from its ring's table");
        match &mut slot.lifecycle {
            Lifecycle::Completed(completion) => {
                let completion = *completion;
                self.remove(user_data);
                Polled::Ready(completion)
            }
            Lifecycle::Waiting(stored) if stored.will_wake(waker) => Polled::Pending,
            lifecycle => {
                // Cloned before the lifecycle changes: a clone that panics leaves it be.
                let waker = waker.clone();
                *lifecycle = Lifecycle::Waiting(waker);
                Polled::Pending
            }
        }
    }

    /// An op's future is dropped before collecting its result: `data` stays here until
    /// the completion (`Kept`: the caller cancels the op), goes back with the completion
    /// that already came (`Completed`: the caller discards it outside the lock), or, on
    /// a drained ring, is leaked (`Gone`): the kernel may still hold its buffers.
    pub(crate) fn abandon(&mut self, user_data: u64, data: Box<dyn Discard>) -> Abandoned {
        let closed = self.closed;
        let Some(slot) = self.get_mut(user_data) else {
            return Abandoned::Gone;
        };
        if let Lifecycle::Completed(completion) = slot.lifecycle {
            self.remove(user_data);
            return Abandoned::Completed(data, completion);
        }
        if closed {
            std::mem::forget(data);
            return Abandoned::Gone;
        }
        slot.lifecycle = Lifecycle::Ignored(data);
        Abandoned::Kept
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// user_data of every op still in flight (for shutdown).
    pub(crate) fn pending(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|(_, s)| !matches!(s.lifecycle, Lifecycle::Completed(_)))
            .map(|(key, s)| ((s.generation as u64) << 32) | key as u64)
            .collect()
    }

    /// Forgets the data of every op still in flight without freeing it: used only when
    /// the kernel might still touch it and we can wait no longer.
    pub(crate) fn leak_ignored(&mut self) {
        for (_, slot) in self.slots.iter_mut() {
            if let Lifecycle::Ignored(_) = slot.lifecycle {
                if let Lifecycle::Ignored(data) =
                    std::mem::replace(&mut slot.lifecycle, Lifecycle::Submitted)
                {
                    std::mem::forget(data);
                }
            }
        }
    }
}

/// Lets ignored data be any `Send` value with a discard rule.
impl<T: Any + Send> Discard for super::op::Ignored<T>
where
    T: super::op::OpCode,
{
    fn discard(self: Box<Self>, completion: Completion) {
        self.0.discard(completion.io_result());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Waker;

    use super::{Abandoned, Completion, Discard, InFlightTable, Lifecycle, Polled};
    use crate::driver::testing::Count;

    /// Ignored data that counts its discards.
    struct Data(Arc<AtomicUsize>);

    impl Discard for Data {
        fn discard(self: Box<Self>, _completion: Completion) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn done(result: i32) -> Completion {
        Completion { result, flags: 0 }
    }

    #[test]
    fn a_waiting_op_is_woken_and_then_collects_its_completion() {
        let mut table = InFlightTable::default();
        let ud = table.insert(Lifecycle::Submitted);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert!(matches!(table.poll(ud, &waker), Polled::Pending));
        assert!(matches!(table.poll(ud, &waker), Polled::Pending));
        let (woken, discard) = table.complete(ud, done(5));
        assert!(discard.is_none());
        woken.expect("the stored waker").wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        match table.poll(ud, &waker) {
            Polled::Ready(c) => assert_eq!(c.result, 5),
            _ => panic!("completed"),
        }
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_late_completion_never_reaches_a_reused_slot() {
        let mut table = InFlightTable::default();
        let first = table.insert(Lifecycle::Submitted);
        table.remove(first);
        let second = table.insert(Lifecycle::Submitted);
        assert_ne!(first, second, "same slot, new generation");
        assert!(matches!(table.complete(first, done(1)), (None, None)));
        assert!(matches!(
            table.get_mut(second).map(|s| &s.lifecycle),
            Some(Lifecycle::Submitted)
        ));
    }

    #[test]
    fn abandoned_data_is_kept_until_its_completion_then_discarded_once() {
        let mut table = InFlightTable::default();
        let discards = Arc::new(AtomicUsize::new(0));
        let ud = table.insert(Lifecycle::Submitted);
        assert!(matches!(
            table.abandon(ud, Box::new(Data(discards.clone()))),
            Abandoned::Kept
        ));
        let (waker, discard) = table.complete(ud, done(0));
        assert!(waker.is_none());
        discard.expect("the kept data").discard(done(0));
        assert_eq!(discards.load(Ordering::SeqCst), 1);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn abandoning_after_the_completion_hands_the_data_back() {
        let mut table = InFlightTable::default();
        let discards = Arc::new(AtomicUsize::new(0));
        let ud = table.insert(Lifecycle::Submitted);
        let _ = table.complete(ud, done(3));
        match table.abandon(ud, Box::new(Data(discards.clone()))) {
            Abandoned::Completed(data, completion) => data.discard(completion),
            _ => panic!("its completion had come"),
        }
        assert_eq!(discards.load(Ordering::SeqCst), 1);
    }

    /// Data with no heap allocation of its own (a zero-sized box), so that leaking it
    /// leaks nothing a leak checker would report; it counts its discards and drops.
    struct Unallocated;

    static UNALLOCATED_DISCARDS: AtomicUsize = AtomicUsize::new(0);
    static UNALLOCATED_DROPS: AtomicUsize = AtomicUsize::new(0);

    impl Discard for Unallocated {
        fn discard(self: Box<Self>, _: Completion) {
            UNALLOCATED_DISCARDS.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Drop for Unallocated {
        fn drop(&mut self) {
            UNALLOCATED_DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn on_a_drained_table_abandoned_data_is_leaked_not_discarded() {
        let mut table = InFlightTable::default();
        let ud = table.insert(Lifecycle::Submitted);
        table.close();
        assert!(matches!(
            table.abandon(ud, Box::new(Unallocated)),
            Abandoned::Gone
        ));
        // Neither discarded nor dropped: the kernel may still use what it owns.
        assert_eq!(UNALLOCATED_DISCARDS.load(Ordering::SeqCst), 0);
        assert_eq!(UNALLOCATED_DROPS.load(Ordering::SeqCst), 0);
    }
}
