//! `Lock` and `RLock`: `_thread.lock` and `_thread.RLock` for virtual threads and OS
//! threads alike.
//!
//! Uncontended, a lock is one atomic word: acquire is a compare-and-swap from unlocked
//! to locked, release one back. Only a contended acquire takes the waiter queue's
//! mutex, queues a wake-up slot and waits (a virtual thread parks, an OS thread blocks
//! with the GIL released). A release that finds waiters hands the lock to the first one
//! directly: it stays locked, so a newcomer cannot take it first, and waiters are served
//! in arrival order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyTuple};

use crate::vthread;
use crate::waiter::{self, Waiter};

const UNLOCKED: u8 = 0;
/// Locked, no waiter queued.
const LOCKED: u8 = 1;
/// Locked, and waiters may be queued: a release goes through the queue.
const CONTENDED: u8 = 2;

/// `_thread.TIMEOUT_MAX` on Linux: the longest timeout a lock accepts, in seconds.
pub(crate) const TIMEOUT_MAX: f64 = 9_223_372_036.0;

/// The state of one non-reentrant lock.
#[derive(Default)]
pub(crate) struct LockCore {
    state: AtomicU8,
    /// Waiting acquirers, first come first served. A waiter taken out of it by a
    /// release owns the lock (it was handed over).
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
}

impl LockCore {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn try_acquire(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }

    /// Acquires, waiting at most `timeout` (None: no limit; zero: not at all). False on
    /// timeout. An error (Ctrl-C on the main thread, a virtual thread killed while
    /// parked) leaves the lock as if this call had not been made.
    pub(crate) fn acquire(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<bool> {
        if self.try_acquire() {
            return Ok(true);
        }
        if timeout.is_some_and(|t| t.is_zero()) {
            return Ok(false);
        }
        let waiter = {
            let mut queue = self.queue();
            loop {
                match self.state.load(Ordering::Relaxed) {
                    UNLOCKED => {
                        if self.try_acquire() {
                            return Ok(true);
                        }
                    }
                    LOCKED => {
                        // Only now may a release find waiters; if it got in first, the
                        // lock is free: look again.
                        let marked = self.state.compare_exchange(
                            LOCKED,
                            CONTENDED,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        if marked.is_ok() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            let waiter = Arc::new(Waiter::default());
            queue.push_back(waiter.clone());
            waiter
        };
        let woken = waiter::wait(py, &waiter, timeout);
        if matches!(woken, Ok(true)) {
            return Ok(true);
        }
        let handed_over = {
            let mut queue = self.queue();
            match queue.iter().position(|other| Arc::ptr_eq(other, &waiter)) {
                Some(at) => {
                    queue.remove(at);
                    if queue.is_empty() {
                        // Still locked by its owner, whose release may take the fast path.
                        let _ = self.state.compare_exchange(
                            CONTENDED,
                            LOCKED,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    false
                }
                // A release took it out of the queue: the lock was handed to it.
                None => true,
            }
        };
        match woken {
            Ok(_) => Ok(handed_over),
            Err(err) => {
                if handed_over {
                    self.release_held();
                }
                Err(err)
            }
        }
    }

    /// Acquires without a timeout, through Ctrl-C: the interrupt is raised once the
    /// lock is held. A virtual thread killed meanwhile (`GreenletExit`) gives up.
    pub(crate) fn acquire_uninterrupted(&self, py: Python<'_>) -> PyResult<()> {
        let mut interrupted = None;
        while !self.try_acquire() {
            match self.acquire(py, None) {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) if crate::greenlet::is_exit(py, &err) => return Err(err),
                Err(err) => interrupted = Some(err),
            }
        }
        interrupted.map_or(Ok(()), Err)
    }

    /// Releases a lock that the caller knows to be locked.
    fn release_held(&self) {
        if self
            .state
            .compare_exchange(LOCKED, UNLOCKED, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        let next = {
            let mut queue = self.queue();
            // Waiters from before a fork (in a forked child) are not handed the lock.
            while queue.front().is_some_and(|waiter| waiter.is_stale()) {
                queue.pop_front();
            }
            let next = queue.pop_front();
            match &next {
                // Handed over: it stays locked.
                Some(_) if queue.is_empty() => self.state.store(LOCKED, Ordering::Relaxed),
                Some(_) => {}
                None => self.state.store(UNLOCKED, Ordering::Release),
            }
            next
        };
        if let Some(next) = next {
            next.unpark();
        }
    }

    /// Releases; false if it was not locked.
    pub(crate) fn release(&self) -> bool {
        if self.state.load(Ordering::Relaxed) == UNLOCKED {
            return false;
        }
        self.release_held();
        true
    }

    /// Waiters queued now.
    pub(crate) fn waiting(&self) -> usize {
        self.queue().len()
    }

    /// In a forked child: unlocked, nobody waiting (the waiters were threads of the
    /// parent). Only the forking thread exists then, and the queue's mutex is only ever
    /// held with the GIL, which the fork held: nobody else can hold it.
    pub(crate) fn reset(&self) {
        if let Ok(mut queue) = self.waiters.try_lock() {
            queue.clear();
        }
        self.state.store(UNLOCKED, Ordering::Release);
    }
}

/// `acquire(blocking, timeout)`'s arguments, checked as `_thread.lock.acquire` checks
/// them: the wait they ask for (None: no limit).
pub(crate) fn acquire_timeout(
    blocking: Option<&Bound<'_, PyAny>>,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Duration>> {
    // Any object, by its truth, as the stock parser's "p".
    let blocking = match blocking {
        None => true,
        Some(blocking) => blocking.is_truthy()?,
    };
    let seconds = match timeout {
        None => -1.0,
        Some(value) => match value.cast::<PyFloat>() {
            Ok(float) => {
                let seconds = float.value();
                if seconds.is_nan() {
                    return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
                }
                seconds
            }
            // An int (or anything with `__index__`), as the stock parser takes it.
            Err(_) => value.extract::<i64>()? as f64,
        },
    };
    if !blocking {
        if seconds != -1.0 {
            return Err(PyValueError::new_err(
                "can't specify a timeout for a non-blocking call",
            ));
        }
        return Ok(Some(Duration::ZERO));
    }
    if seconds == -1.0 {
        return Ok(None);
    }
    if seconds < 0.0 {
        return Err(PyValueError::new_err("timeout value must be positive"));
    }
    if seconds > TIMEOUT_MAX {
        return Err(PyOverflowError::new_err("timeout value is too large"));
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

fn repr_address(slf: &Bound<'_, PyAny>) -> PyResult<(String, usize)> {
    let ty = slf.get_type();
    Ok((
        format!("{}.{}", ty.module()?, ty.qualname()?),
        slf.as_ptr() as usize,
    ))
}

/// A non-reentrant lock with `_thread.lock`'s interface (`threading.Lock()` once
/// patched): a contended `acquire` parks a virtual thread and blocks an OS thread
/// (GIL released, Ctrl-C seen within 50 ms). Any thread may release it.
///
/// Example::
///
///     lock = ringloom.Lock()
///     with lock:
///         ...
#[pyclass(module = "ringloom._native", frozen, weakref, subclass)]
pub(crate) struct Lock {
    core: LockCore,
}

impl Lock {
    pub(crate) fn new_unlocked() -> Lock {
        Lock {
            core: LockCore::default(),
        }
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.core.is_locked()
    }

    /// `with lock:`'s acquire: no timeout.
    pub(crate) fn enter(&self, py: Python<'_>) -> PyResult<bool> {
        if self.core.try_acquire() {
            return Ok(true);
        }
        self.core.acquire(py, None)
    }

    pub(crate) fn release_checked(&self) -> PyResult<()> {
        if self.core.release() {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err("release unlocked lock"))
        }
    }

    /// Acquires even through Ctrl-C (raised once the lock is held), as a condition's
    /// wait takes its lock back; gives up only when a virtual thread is killed.
    pub(crate) fn acquire_uninterrupted(&self, py: Python<'_>) -> PyResult<()> {
        self.core.acquire_uninterrupted(py)
    }
}

#[pymethods]
impl Lock {
    #[new]
    fn new() -> Lock {
        Lock {
            core: LockCore::default(),
        }
    }

    /// Acquires the lock; with `blocking`, waits up to `timeout` seconds (-1: no limit).
    /// True once acquired, False if not.
    #[pyo3(signature = (blocking = None, timeout = None))]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if timeout.is_none() && self.core.try_acquire() {
            return Ok(true);
        }
        let wait = acquire_timeout(blocking, timeout)?;
        self.core.acquire(py, wait)
    }

    /// `acquire` under `_thread`'s old name.
    #[pyo3(signature = (blocking = None, timeout = None))]
    fn acquire_lock(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.acquire(py, blocking, timeout)
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.enter(py)
    }

    /// Releases the lock (from any thread); RuntimeError if it is not locked.
    fn release(&self) -> PyResult<()> {
        self.release_checked()
    }

    /// `release` under `_thread`'s old name.
    fn release_lock(&self) -> PyResult<()> {
        self.release()
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    fn locked(&self) -> bool {
        self.core.is_locked()
    }

    /// `locked` under `_thread`'s old name.
    fn locked_lock(&self) -> bool {
        self.locked()
    }

    /// In a forked child: unlocked, with no waiters.
    fn _at_fork_reinit(&self) {
        self.core.reset();
    }

    /// How many wait for it now (for tests and debugging).
    #[getter]
    fn _waiting(&self) -> usize {
        self.core.waiting()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let state = if slf.get().core.is_locked() {
            "locked"
        } else {
            "unlocked"
        };
        let (name, address) = repr_address(slf.as_any())?;
        Ok(format!("<{state} {name} object at {address:#x}>"))
    }
}

/// A reentrant lock with `_thread.RLock`'s interface (`threading.RLock()` once
/// patched): owned by a virtual thread or an OS thread (`get_ident()`), which may take
/// it again; only the owner may release it.
///
/// Example::
///
///     lock = ringloom.RLock()
///     with lock:
///         with lock:
///             ...
#[pyclass(module = "ringloom._native", frozen, weakref, subclass)]
pub(crate) struct RLock {
    core: LockCore,
    /// The owner's identity, 0 when free. Only the owner writes it while it owns the
    /// lock, so a thread comparing it with its own identity reads the truth.
    owner: AtomicU64,
    /// Times the owner took it; only the owner touches it.
    count: AtomicU64,
}

impl Default for RLock {
    fn default() -> RLock {
        RLock {
            core: LockCore::default(),
            owner: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl RLock {
    fn owned_by(&self, me: u64) -> bool {
        self.owner.load(Ordering::Relaxed) == me
    }

    pub(crate) fn is_owned(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.owned_by(vthread::ident(py)?))
    }

    pub(crate) fn enter(&self, py: Python<'_>) -> PyResult<bool> {
        self.take(py, vthread::ident(py)?, None)
    }

    /// Releases one level; RuntimeError unless the caller owns it.
    pub(crate) fn release_owned(&self, py: Python<'_>) -> PyResult<()> {
        let me = vthread::ident(py)?;
        if !self.owned_by(me) {
            return Err(PyRuntimeError::new_err("cannot release un-acquired lock"));
        }
        let count = self.count.load(Ordering::Relaxed) - 1;
        self.count.store(count, Ordering::Relaxed);
        if count == 0 {
            self.owner.store(0, Ordering::Relaxed);
            self.core.release();
        }
        Ok(())
    }

    /// Frees it whatever the count; `(count, owner)` for [`Self::acquire_restore`].
    pub(crate) fn release_save(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        let me = vthread::ident(py)?;
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 || !self.owned_by(me) {
            return Err(PyRuntimeError::new_err("cannot release un-acquired lock"));
        }
        self.count.store(0, Ordering::Relaxed);
        self.owner.store(0, Ordering::Relaxed);
        self.core.release();
        Ok((count, me))
    }

    /// Takes it back as `release_save` left it, through Ctrl-C (see
    /// `LockCore::acquire_uninterrupted`).
    pub(crate) fn acquire_restore(&self, py: Python<'_>, state: (u64, u64)) -> PyResult<()> {
        let (count, owner) = state;
        let acquired = self.core.acquire_uninterrupted(py);
        if acquired
            .as_ref()
            .is_err_and(|err| crate::greenlet::is_exit(py, err))
        {
            return acquired;
        }
        self.owner.store(owner, Ordering::Relaxed);
        self.count.store(count, Ordering::Relaxed);
        acquired
    }

    fn take(&self, py: Python<'_>, me: u64, timeout: Option<Duration>) -> PyResult<bool> {
        if self.owned_by(me) {
            let count = self.count.load(Ordering::Relaxed);
            if count == u64::MAX {
                return Err(PyOverflowError::new_err("Internal lock count overflowed"));
            }
            self.count.store(count + 1, Ordering::Relaxed);
            return Ok(true);
        }
        if !(self.core.try_acquire() || self.core.acquire(py, timeout)?) {
            return Ok(false);
        }
        self.owner.store(me, Ordering::Relaxed);
        self.count.store(1, Ordering::Relaxed);
        Ok(true)
    }
}

#[pymethods]
impl RLock {
    #[new]
    fn new() -> RLock {
        RLock::default()
    }

    /// Acquires the lock (again, if the caller owns it); with `blocking`, waits up to
    /// `timeout` seconds (-1: no limit). True once acquired, False if not.
    #[pyo3(signature = (blocking = None, timeout = None))]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let wait = acquire_timeout(blocking, timeout)?;
        self.take(py, vthread::ident(py)?, wait)
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.enter(py)
    }

    /// Releases one level; the last one frees the lock. RuntimeError unless the caller
    /// owns it.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.release_owned(py)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(py)
    }

    /// Whether the caller owns it (for `threading.Condition`).
    fn _is_owned(&self, py: Python<'_>) -> PyResult<bool> {
        self.is_owned(py)
    }

    /// Frees it whatever the count; returns `(count, owner)` for `_acquire_restore`
    /// (for `threading.Condition.wait`).
    fn _release_save(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        self.release_save(py)
    }

    /// Takes it back as `_release_save` left it. Like the stock one it is not given up
    /// on Ctrl-C (the caller's `with` block would then release a lock it does not hold):
    /// the interrupt is raised once the lock is back. A virtual thread killed meanwhile
    /// (its runtime closing) gives up.
    fn _acquire_restore(&self, py: Python<'_>, state: (u64, u64)) -> PyResult<()> {
        self.acquire_restore(py, state)
    }

    /// Times the caller holds it (0 if it does not own it).
    fn _recursion_count(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(if self.owned_by(vthread::ident(py)?) {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        })
    }

    /// How many wait for it now (for tests and debugging).
    #[getter]
    fn _waiting(&self) -> usize {
        self.core.waiting()
    }

    /// In a forked child: free, with no waiters.
    fn _at_fork_reinit(&self) {
        self.core.reset();
        self.owner.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        let state = if this.core.is_locked() {
            "locked"
        } else {
            "unlocked"
        };
        let (name, address) = repr_address(slf.as_any())?;
        Ok(format!(
            "<{state} {name} object owner={} count={} at {address:#x}>",
            this.owner.load(Ordering::Relaxed),
            this.count.load(Ordering::Relaxed)
        ))
    }
}
