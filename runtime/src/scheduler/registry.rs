//! The unfinished tasks one executor owns, so that shutdown can drop their futures on
//! that executor's thread.
//!
//! A slab of task pointers at one word a slot (a general slab of `Task` takes two): a
//! million live tasks keep a million slots, so the slot size is per-task memory. A
//! vacant slot holds the next vacant index, shifted and tagged with the low bit (a task
//! pointer is aligned, so its low bit is clear).

use std::ptr::NonNull;

use crate::task::{Header, Task};

const VACANT: usize = 1;

pub(crate) struct Registry {
    slots: Vec<*mut Header>,
    /// The first vacant slot.
    free: Option<usize>,
    len: usize,
}

// SAFETY: the occupied slots are `Task`s (Send), held as raw pointers.
unsafe impl Send for Registry {}

/// A vacant slot pointing to the next vacant one (stored plus one, zero for none).
fn vacant(next: Option<usize>) -> *mut Header {
    // Never dereferenced: only told apart from task pointers by its low bit.
    ((next.map_or(0, |next| next + 1) << 1) | VACANT) as *mut Header
}

/// For a vacant slot, the next vacant one; `None` for an occupied slot.
fn next_vacant(slot: *mut Header) -> Option<Option<usize>> {
    let bits = slot as usize;
    (bits & VACANT != 0).then(|| (bits >> 1).checked_sub(1))
}

impl Registry {
    pub(crate) const fn new() -> Registry {
        Registry {
            slots: Vec::new(),
            free: None,
            len: 0,
        }
    }

    /// Keeps `task`'s reference; returns its key.
    pub(crate) fn insert(&mut self, task: Task) -> usize {
        let ptr = task.into_raw().as_ptr();
        debug_assert_eq!(ptr as usize & VACANT, 0, "task pointers are aligned");
        self.len += 1;
        let Some(key) = self.free else {
            self.slots.push(ptr);
            return self.slots.len() - 1;
        };
        self.free = next_vacant(self.slots[key]).expect("the free list names a vacant slot");
        self.slots[key] = ptr;
        key
    }

    /// Takes the reference of the task at `key` if it is `header`'s (shutdown may have
    /// emptied the registry, and the key reused since).
    pub(crate) fn remove(&mut self, key: usize, header: &Header) -> Option<Task> {
        let slot = self.slots.get_mut(key)?;
        if !std::ptr::eq(*slot, header) {
            return None;
        }
        let ptr = std::mem::replace(slot, vacant(self.free));
        self.free = Some(key);
        self.len -= 1;
        // SAFETY: an occupied slot holds the reference `insert` took.
        Some(unsafe { Task::from_raw(NonNull::new_unchecked(ptr)) })
    }

    /// Takes every task out.
    pub(crate) fn take_all(&mut self) -> Vec<Task> {
        let slots = std::mem::take(&mut self.slots);
        self.free = None;
        self.len = 0;
        slots
            .into_iter()
            .filter(|&slot| next_vacant(slot).is_none())
            // SAFETY: an occupied slot holds the reference `insert` took.
            .map(|ptr| unsafe { Task::from_raw(NonNull::new_unchecked(ptr)) })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        drop(self.take_all());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Registry;
    use crate::scheduler::{Executor, Home};
    use crate::task::new_task;

    #[test]
    fn vacant_slots_are_reused_and_stale_keys_ignored() {
        let executor = Arc::new(Executor::new(None));
        let mut made: Vec<_> = (0..4)
            .map(|_| new_task(async {}, Home::local(executor.clone()), 0))
            .collect();
        assert_eq!(executor.live_tasks(), 4);
        let headers: Vec<*const crate::task::Header> = made
            .iter()
            .map(|(task, _)| task.header() as *const _)
            .collect();
        // SAFETY (all derefs below): each join handle in `made` keeps its task alive.
        let header = |i: usize| unsafe { &*headers[i] };

        let mut registry = Registry::new();
        let (tasks, handles): (Vec<_>, Vec<_>) = made.drain(..).unzip();
        let keys: Vec<usize> = tasks.into_iter().map(|t| registry.insert(t)).collect();
        assert_eq!(keys, [0, 1, 2, 3]);
        assert!(registry.remove(1, header(1)).is_some());
        assert!(registry.remove(1, header(1)).is_none(), "already removed");
        assert!(
            registry.remove(2, header(3)).is_none(),
            "another task's key"
        );
        assert!(registry.remove(3, header(3)).is_some());
        assert_eq!(registry.len(), 2);
        // The most recently vacated slot is reused first.
        let (again, again_handle) = new_task(async {}, Home::local(executor.clone()), 0);
        assert_eq!(registry.insert(again), 3);
        assert_eq!(registry.insert(registry_task(&executor)), 1);
        assert_eq!(registry.len(), 4);
        assert_eq!(registry.take_all().len(), 4);
        assert_eq!(registry.len(), 0);
        assert_eq!(registry.insert(registry_task(&executor)), 0);

        drop((handles, again_handle, registry));
        for task in executor.take_registry() {
            task.shut_down();
        }
    }

    fn registry_task(executor: &Arc<Executor>) -> crate::task::Task {
        new_task(async {}, Home::local(executor.clone()), 0).0
    }
}
