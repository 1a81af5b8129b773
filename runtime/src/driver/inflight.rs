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

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
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
impl<T: Any + Send> Discard for crate::op::Ignored<T>
where
    T: crate::op::OpCode,
{
    fn discard(self: Box<Self>, completion: Completion) {
        self.0.discard(completion.io_result());
    }
}
