//! `Condition`: `threading.Condition` in Rust, over any lock, with fast paths for
//! ringloom's own `Lock` and `RLock`.
//!
//! Every stock `Event`, `Semaphore`, `Barrier`, `queue.Queue` and
//! `concurrent.futures.Future` waits through a `Condition`, so once
//! `ringloom.monkey.patch_thread` installs this one, their notify, wait and `with` blocks
//! are native calls. Each waiter has its own wake-up slot in a FIFO; `notify` takes
//! waiters out and wakes them, so a waiter that is no longer queued when its wait ends
//! was notified (even if its timeout expired at the same instant).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOverflowError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use pyo3::PyTraverseError;
use pyo3::PyVisit;

use super::lock::{Lock, RLock, TIMEOUT_MAX};
use crate::waiter::{self, Waiter};

/// The lock under a condition, as far as the fast paths care.
enum Kind {
    RLock,
    Lock,
    /// Anything else with a lock's methods: called through Python.
    Other,
}

/// A condition variable with `threading.Condition`'s interface (the default lock is a
/// ringloom `RLock`): `wait` parks a virtual thread and blocks an OS thread (GIL
/// released, Ctrl-C seen); `notify` wakes the longest waiting first.
///
/// Example::
///
///     ready = ringloom.Condition()
///     with ready:
///         ready.wait_for(lambda: items)
#[pyclass(module = "ringloom._native", frozen, weakref, subclass)]
pub(crate) struct Condition {
    lock: Py<PyAny>,
    kind: Kind,
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
    /// `waiters.len()`, readable without the mutex (a notify with nobody waiting).
    waiting: AtomicUsize,
}

impl Condition {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_owned(&self, py: Python<'_>) -> PyResult<bool> {
        let lock = self.lock.bind(py);
        match self.kind {
            Kind::RLock => lock.cast::<RLock>()?.get().is_owned(py),
            // The stock test for a plain lock: held by someone.
            Kind::Lock => Ok(lock.cast::<Lock>()?.get().is_locked()),
            Kind::Other => {
                if let Ok(is_owned) = lock.getattr(pyo3::intern!(py, "_is_owned")) {
                    return is_owned.call0()?.is_truthy();
                }
                if lock
                    .call_method1(pyo3::intern!(py, "acquire"), (false,))?
                    .is_truthy()?
                {
                    lock.call_method0(pyo3::intern!(py, "release"))?;
                    return Ok(false);
                }
                Ok(true)
            }
        }
    }

    /// Frees the lock whatever its recursion; what `acquire_restore` needs back.
    fn release_save(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let lock = self.lock.bind(py);
        match self.kind {
            Kind::RLock => {
                let state = lock.cast::<RLock>()?.get().release_save(py)?;
                Ok(state.into_pyobject(py)?.into_any().unbind())
            }
            Kind::Lock => {
                lock.cast::<Lock>()?.get().release_checked()?;
                Ok(py.None())
            }
            Kind::Other => match lock.getattr(pyo3::intern!(py, "_release_save")) {
                Ok(release_save) => Ok(release_save.call0()?.unbind()),
                Err(_) => {
                    lock.call_method0(pyo3::intern!(py, "release"))?;
                    Ok(py.None())
                }
            },
        }
    }

    fn acquire_restore(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let lock = self.lock.bind(py);
        match self.kind {
            Kind::RLock => lock
                .cast::<RLock>()?
                .get()
                .acquire_restore(py, state.extract()?),
            Kind::Lock => lock.cast::<Lock>()?.get().acquire_uninterrupted(py),
            Kind::Other => {
                match lock.getattr(pyo3::intern!(py, "_acquire_restore")) {
                    Ok(acquire_restore) => acquire_restore.call1((state,))?,
                    Err(_) => lock.call_method0(pyo3::intern!(py, "acquire"))?,
                };
                Ok(())
            }
        }
    }

    /// Takes `waiter` out of the queue; false if a notify took it out first.
    fn leave(&self, waiter: &Arc<Waiter>) -> bool {
        let mut queue = self.queue();
        match queue.iter().position(|other| Arc::ptr_eq(other, waiter)) {
            Some(at) => {
                queue.remove(at);
                self.waiting.store(queue.len(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub(crate) fn wait_for_notify(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
    ) -> PyResult<bool> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot wait on un-acquired lock"));
        }
        let waiter = Arc::new(Waiter::default());
        {
            let mut queue = self.queue();
            queue.push_back(waiter.clone());
            self.waiting.store(queue.len(), Ordering::Relaxed);
        }
        let saved = match self.release_save(py) {
            Ok(saved) => saved,
            Err(err) => {
                self.leave(&waiter);
                return Err(err);
            }
        };
        let woken = waiter::wait(py, &waiter, timeout);
        // The lock comes back whatever happened, as the stock wait's `finally` does.
        let restored = self.acquire_restore(py, saved.bind(py));
        let notified = match woken {
            Ok(true) => true,
            Ok(false) => !self.leave(&waiter),
            Err(err) => {
                self.leave(&waiter);
                return Err(err);
            }
        };
        restored?;
        Ok(notified)
    }

    pub(crate) fn wake(&self, n: usize) {
        if n == 0 || self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let woken: Vec<Arc<Waiter>> = {
            let mut queue = self.queue();
            // Waiters from before a fork (in a forked child) neither count nor stay.
            queue.retain(|waiter| !waiter.is_stale());
            let take = n.min(queue.len());
            let woken = queue.drain(..take).collect();
            self.waiting.store(queue.len(), Ordering::Relaxed);
            woken
        };
        for waiter in woken {
            waiter.unpark();
        }
    }
}

/// `wait`'s timeout as the stock one reads it: None waits for ever; above zero, at most
/// that long (within `TIMEOUT_MAX`); zero or below, not at all.
fn wait_timeout(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(seconds) if seconds > 0.0 => {
            if seconds > TIMEOUT_MAX {
                return Err(PyOverflowError::new_err("timeout value is too large"));
            }
            Ok(Some(Duration::from_secs_f64(seconds)))
        }
        Some(_) => Ok(Some(Duration::ZERO)),
    }
}

impl Condition {
    /// A condition over `lock`.
    pub(crate) fn over(lock: &Bound<'_, PyAny>) -> PyResult<Condition> {
        let lock = lock.clone();
        let kind = if lock.is_instance_of::<RLock>() {
            Kind::RLock
        } else if lock.is_instance_of::<Lock>() {
            Kind::Lock
        } else {
            Kind::Other
        };
        Ok(Condition {
            lock: lock.unbind(),
            kind,
            waiters: Mutex::default(),
            waiting: AtomicUsize::new(0),
        })
    }
}

#[pymethods]
impl Condition {
    #[new]
    #[pyo3(signature = (lock = None))]
    fn new(py: Python<'_>, lock: Option<Bound<'_, PyAny>>) -> PyResult<Condition> {
        match lock {
            Some(lock) if !lock.is_none() => Condition::over(&lock),
            _ => Condition::over(Bound::new(py, RLock::default())?.as_any()),
        }
    }

    /// The lock's `acquire`.
    #[getter]
    fn acquire<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.lock.bind(py).getattr(pyo3::intern!(py, "acquire"))
    }

    /// The lock's `release`.
    #[getter]
    fn release<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.lock.bind(py).getattr(pyo3::intern!(py, "release"))
    }

    #[getter]
    fn _lock(&self, py: Python<'_>) -> Py<PyAny> {
        self.lock.clone_ref(py)
    }

    /// The queued waiters' count as a list of that length (the stock attribute is a
    /// deque of their locks; code reads its length).
    #[getter]
    fn _waiters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let count = self.waiting.load(Ordering::Relaxed);
        PyList::new(py, (0..count).map(|_| py.None()))
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let lock = self.lock.bind(py);
        let entered = match self.kind {
            Kind::RLock => lock.cast::<RLock>()?.get().enter(py)?,
            Kind::Lock => lock.cast::<Lock>()?.get().enter(py)?,
            Kind::Other => return Ok(lock.call_method0(pyo3::intern!(py, "__enter__"))?.unbind()),
        };
        Ok(pyo3::types::PyBool::new(py, entered)
            .to_owned()
            .into_any()
            .unbind())
    }

    #[pyo3(signature = (*args))]
    fn __exit__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let lock = self.lock.bind(py);
        match self.kind {
            Kind::RLock => {
                lock.cast::<RLock>()?.get().release_owned(py)?;
                Ok(py.None())
            }
            Kind::Lock => {
                lock.cast::<Lock>()?.get().release_checked()?;
                Ok(py.None())
            }
            Kind::Other => Ok(lock
                .call_method1(pyo3::intern!(py, "__exit__"), args)?
                .unbind()),
        }
    }

    /// Whether the caller holds the lock (for a plain lock: whether anyone does, as
    /// the stock condition tests it).
    #[pyo3(name = "_is_owned")]
    fn is_owned_py(&self, py: Python<'_>) -> PyResult<bool> {
        self.is_owned(py)
    }

    #[pyo3(name = "_release_save")]
    fn release_save_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.release_save(py)
    }

    #[pyo3(name = "_acquire_restore")]
    fn acquire_restore_py(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        self.acquire_restore(py, state)
    }

    /// Releases the lock, waits for a notify (True) or `timeout` seconds (False; zero or
    /// less: only a notify already given counts), and takes the lock back. RuntimeError
    /// unless the caller holds the lock.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.wait_for_notify(py, wait_timeout(timeout)?)
    }

    /// Waits until `predicate()` is true (its value is returned) or `timeout` seconds
    /// pass (the last value then), as `threading.Condition.wait_for`.
    #[pyo3(signature = (predicate, timeout = None))]
    fn wait_for<'py>(
        &self,
        py: Python<'py>,
        predicate: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut end: Option<Instant> = None;
        let mut wait = timeout;
        let mut result = predicate.call0()?;
        while !result.is_truthy()? {
            if let Some(seconds) = wait {
                match end {
                    None => {
                        end = Some(
                            Instant::now()
                                + Duration::try_from_secs_f64(seconds.max(0.0))
                                    .unwrap_or(Duration::MAX),
                        )
                    }
                    Some(end) => {
                        let left = end.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        wait = Some(left.as_secs_f64());
                    }
                }
            }
            self.wait_for_notify(py, wait_timeout(wait)?)?;
            result = predicate.call0()?;
        }
        Ok(result)
    }

    /// Wakes up to `n` waiters, longest waiting first. RuntimeError unless the caller
    /// holds the lock.
    #[pyo3(signature = (n = 1))]
    fn notify(&self, py: Python<'_>, n: isize) -> PyResult<()> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot notify on un-acquired lock"));
        }
        self.wake(n.max(0) as usize);
        Ok(())
    }

    /// Wakes every waiter. RuntimeError unless the caller holds the lock.
    fn notify_all(&self, py: Python<'_>) -> PyResult<()> {
        self.notify(py, isize::MAX)
    }

    /// `notify_all` under its deprecated name (with the stock DeprecationWarning).
    #[pyo3(name = "notifyAll")]
    fn notify_all_deprecated(&self, py: Python<'_>) -> PyResult<()> {
        let warning = py.get_type::<pyo3::exceptions::PyDeprecationWarning>();
        PyErr::warn(
            py,
            &warning,
            c"notifyAll() is deprecated, use notify_all() instead",
            2,
        )?;
        self.notify_all(py)
    }

    /// In a forked child: the lock reset, nobody waiting.
    fn _at_fork_reinit(&self, py: Python<'_>) -> PyResult<()> {
        self.lock
            .bind(py)
            .call_method0(pyo3::intern!(py, "_at_fork_reinit"))?;
        if let Ok(mut queue) = self.waiters.try_lock() {
            queue.clear();
        }
        self.waiting.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<Condition({}, {})>",
            self.lock.bind(py).str()?,
            self.waiting.load(Ordering::Relaxed)
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.lock)
    }
}
