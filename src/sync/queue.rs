//! `QueueCore`: `queue.Queue`'s algorithm in Rust, under the Python classes of
//! `ringloom.queues` (which `ringloom.monkey.patch_queue` installs as `queue.Queue`,
//! `LifoQueue` and `PriorityQueue`).
//!
//! The state and its lock are the stock ones, kept where stock code looks for them:
//! `mutex` (a ringloom `Lock`), the conditions `not_empty`, `not_full` and
//! `all_tasks_done` over it, `queue` (the storage `_init` made), `maxsize` and
//! `unfinished_tasks`. `put` and `get` run the stock steps natively; the storage hooks
//! `_qsize`, `_put` and `_get` are called through Python only when a subclass overrides
//! them (`LifoQueue`, `PriorityQueue`, user subclasses), and a plain `Queue` works its
//! `collections.deque` through the deque's own `append` and `popleft`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::PyTraverseError;
use pyo3::PyVisit;

use super::condition::Condition;
use super::lock::{Lock, TIMEOUT_MAX};
use super::queue_storage::{Deque, StorageCell};

/// The class's `_empty_error` or `_full_error` (`queue.Empty` and `queue.Full` in
/// `ringloom.queues`), raised with no arguments as stock.
fn raise(slf: &Bound<'_, QueueCore>, attribute: &str) -> PyErr {
    match slf.get_type().getattr(attribute) {
        Ok(ty) => match ty.cast_into::<pyo3::types::PyType>() {
            Ok(ty) => PyErr::from_type(ty, ()),
            Err(err) => err.into(),
        },
        Err(err) => err,
    }
}

/// `block` as the stock methods read it: by its truth, True when not given.
fn truthy(block: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
    block.map_or(Ok(true), |block| block.is_truthy())
}

/// The pieces made by `_setup`.
struct Parts {
    mutex: Py<Lock>,
    not_empty: Py<Condition>,
    not_full: Py<Condition>,
    all_tasks_done: Py<Condition>,
}

/// The native half of `ringloom.queues.Queue`; see the module doc.
#[pyclass(module = "ringloom._native", subclass, weakref, frozen)]
pub(crate) struct QueueCore {
    parts: PyOnceLock<Parts>,
    storage: StorageCell,
    maxsize: AtomicI64,
    unfinished: AtomicI64,
    /// `_qsize`, `_put` and `_get` are the base class's: work the deque directly.
    plain: AtomicBool,
}

impl QueueCore {
    fn parts(&self, py: Python<'_>) -> PyResult<&Parts> {
        self.parts.get(py).ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err("the queue is not set up (Queue.__init__)")
        })
    }

    /// A plain queue's deque; None for a subclass's storage hooks (or other storage).
    fn plain<'py>(&self, py: Python<'py>) -> Option<Deque<'py>> {
        if !self.plain.load(Ordering::Relaxed) {
            return None;
        }
        self.storage.deque(py)
    }

    fn size_now(slf: &Bound<'_, Self>) -> PyResult<i64> {
        let plain = slf.get().plain(slf.py());
        Self::size_of(slf, plain.as_ref())
    }

    /// The size, from the deque of `plain` or else through `_qsize`.
    fn size_of(slf: &Bound<'_, Self>, plain: Option<&Deque<'_>>) -> PyResult<i64> {
        match plain {
            Some(deque) => Ok(deque.len() as i64),
            None => slf
                .call_method0(pyo3::intern!(slf.py(), "_qsize"))?
                .extract(),
        }
    }

    /// Runs `f` holding `mutex`, as `with self.mutex:`.
    fn locked<R>(slf: &Bound<'_, Self>, f: impl FnOnce(&Parts) -> PyResult<R>) -> PyResult<R> {
        let py = slf.py();
        let parts = slf.get().parts(py)?;
        let mutex = parts.mutex.get();
        mutex.enter(py)?;
        let result = f(parts);
        // A virtual thread killed in a wait may not have the lock back.
        if mutex.is_locked() {
            mutex.release_checked()?;
        }
        result
    }

    /// Waits on `condition` until `blocked()` is false: for ever, or up to `timeout`
    /// (then `on_timeout`), as the stock put and get do. `mutex` is held.
    fn wait_while(
        slf: &Bound<'_, Self>,
        condition: &Py<Condition>,
        timeout: Option<f64>,
        mut blocked: impl FnMut() -> PyResult<bool>,
        on_timeout: impl Fn() -> PyErr,
    ) -> PyResult<()> {
        let py = slf.py();
        let condition = condition.get();
        match timeout {
            None => {
                while blocked()? {
                    condition.wait_for_notify(py, None)?;
                }
            }
            Some(seconds) => {
                if seconds < 0.0 {
                    return Err(PyValueError::new_err(
                        "'timeout' must be a non-negative number",
                    ));
                }
                if seconds > TIMEOUT_MAX {
                    return Err(PyOverflowError::new_err("timeout value is too large"));
                }
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                while blocked()? {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(on_timeout());
                    }
                    condition.wait_for_notify(py, Some(left))?;
                }
            }
        }
        Ok(())
    }

    /// Puts `item`; with `block` and a full bounded queue, waits for room (for ever, or
    /// `timeout` seconds, then `queue.Full`); without, `queue.Full` at once.
    pub(super) fn put(
        slf: &Bound<'_, Self>,
        item: Bound<'_, PyAny>,
        block: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let block = truthy(block)?;
        let py = slf.py();
        let this = slf.get();
        Self::locked(slf, |parts| {
            let plain = this.plain(py);
            let maxsize = this.maxsize.load(Ordering::Relaxed);
            if maxsize > 0 {
                if !block {
                    if Self::size_of(slf, plain.as_ref())? >= maxsize {
                        return Err(raise(slf, "_full_error"));
                    }
                } else {
                    Self::wait_while(
                        slf,
                        &parts.not_full,
                        timeout,
                        || {
                            let size = Self::size_of(slf, plain.as_ref())?;
                            Ok(size >= this.maxsize.load(Ordering::Relaxed))
                        },
                        || raise(slf, "_full_error"),
                    )?;
                }
            }
            match &plain {
                Some(deque) => deque.append(&item)?,
                None => drop(slf.call_method1(pyo3::intern!(py, "_put"), (item,))?),
            };
            this.unfinished.fetch_add(1, Ordering::Relaxed);
            parts.not_empty.get().wake(1);
            Ok(())
        })
    }

    /// Takes the next item; with `block` and an empty queue, waits for one (for ever, or
    /// `timeout` seconds, then `queue.Empty`); without, `queue.Empty` at once.
    pub(super) fn get<'py>(
        slf: &Bound<'py, Self>,
        block: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let block = truthy(block)?;
        let py = slf.py();
        Self::locked(slf, |parts| {
            let plain = slf.get().plain(py);
            if !block {
                if Self::size_of(slf, plain.as_ref())? == 0 {
                    return Err(raise(slf, "_empty_error"));
                }
            } else {
                Self::wait_while(
                    slf,
                    &parts.not_empty,
                    timeout,
                    || Ok(Self::size_of(slf, plain.as_ref())? == 0),
                    || raise(slf, "_empty_error"),
                )?;
            }
            let item = match &plain {
                Some(deque) => deque.popleft()?,
                None => slf.call_method0(pyo3::intern!(py, "_get"))?,
            };
            parts.not_full.get().wake(1);
            Ok(item)
        })
    }

    /// `put(item)` when it need not wait: a plain queue with room and its `mutex` free.
    /// None sends the call to the general `put`.
    ///
    /// It takes no lock: with the GIL held and no Python code run between the checks
    /// and the append (`deque.append` runs none, and keeps the GIL), no other thread can
    /// see the deque in between, which is all `mutex` would add. A thread holding
    /// `mutex` (stock code may, to work on `queue`) makes the call go the general way.
    pub(super) fn put_now(&self, py: Python<'_>, item: &Bound<'_, PyAny>) -> Option<PyResult<()>> {
        let (parts, deque) = self.ready_plain(py)?;
        let maxsize = self.maxsize.load(Ordering::Relaxed);
        if maxsize > 0 && deque.len() as i64 >= maxsize {
            return None;
        }
        if let Err(err) = deque.append(item) {
            return Some(Err(err));
        }
        self.unfinished.fetch_add(1, Ordering::Relaxed);
        parts.not_empty.get().wake(1);
        Some(Ok(()))
    }

    /// `get()` when it need not wait: a plain queue with an item and its `mutex` free
    /// (see `put_now` for why no lock is taken). None sends the call to the general `get`.
    pub(super) fn get_now<'py>(&self, py: Python<'py>) -> Option<PyResult<Bound<'py, PyAny>>> {
        let (parts, deque) = self.ready_plain(py)?;
        if deque.len() == 0 {
            return None;
        }
        let item = deque.popleft();
        if item.is_ok() {
            parts.not_full.get().wake(1);
        }
        Some(item)
    }

    /// The parts and deque of a set-up plain queue whose `mutex` nobody holds.
    fn ready_plain<'py>(&self, py: Python<'py>) -> Option<(&Parts, Deque<'py>)> {
        let parts = self.parts.get(py)?;
        if parts.mutex.get().is_locked() {
            return None;
        }
        Some((parts, self.plain(py)?))
    }
}

#[pymethods]
impl QueueCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        _args: &Bound<'_, pyo3::types::PyTuple>,
        _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> QueueCore {
        QueueCore {
            parts: PyOnceLock::new(),
            storage: StorageCell::new(),
            maxsize: AtomicI64::new(0),
            unfinished: AtomicI64::new(0),
            plain: AtomicBool::new(false),
        }
    }

    /// What the stock `__init__` does: `maxsize`, `_init(maxsize)`, the lock and its
    /// conditions, no unfinished tasks. `plain` says the storage hooks are the base
    /// class's (the caller checks; a subclass overriding one gets all called).
    fn _setup(slf: &Bound<'_, Self>, maxsize: i64, plain: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.maxsize.store(maxsize, Ordering::Relaxed);
        this.plain.store(plain, Ordering::Relaxed);
        slf.call_method1(pyo3::intern!(py, "_init"), (maxsize,))?;
        let mutex = Py::new(py, Lock::new_unlocked())?;
        let condition = |mutex: &Py<Lock>| -> PyResult<Py<Condition>> {
            Py::new(py, Condition::over(mutex.bind(py).as_any())?)
        };
        let parts = Parts {
            not_empty: condition(&mutex)?,
            not_full: condition(&mutex)?,
            all_tasks_done: condition(&mutex)?,
            mutex,
        };
        this.unfinished.store(0, Ordering::Relaxed);
        if this.parts.set(py, parts).is_err() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "the queue is set up already",
            ));
        }
        Ok(())
    }

    #[getter]
    fn maxsize(&self) -> i64 {
        self.maxsize.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_maxsize(&self, maxsize: i64) {
        self.maxsize.store(maxsize, Ordering::Relaxed);
    }

    #[getter]
    fn unfinished_tasks(&self) -> i64 {
        self.unfinished.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_unfinished_tasks(&self, count: i64) {
        self.unfinished.store(count, Ordering::Relaxed);
    }

    /// The storage `_init` made (a `collections.deque` for a plain `Queue`).
    #[getter]
    fn queue<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.storage.items(py).ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err("'queue' is not set yet (no _init)")
        })
    }

    #[setter]
    fn set_queue(&self, items: Bound<'_, PyAny>) -> PyResult<()> {
        self.storage.replace(items)
    }

    #[getter]
    fn mutex(&self, py: Python<'_>) -> PyResult<Py<Lock>> {
        Ok(self.parts(py)?.mutex.clone_ref(py))
    }

    #[getter]
    fn not_empty(&self, py: Python<'_>) -> PyResult<Py<Condition>> {
        Ok(self.parts(py)?.not_empty.clone_ref(py))
    }

    #[getter]
    fn not_full(&self, py: Python<'_>) -> PyResult<Py<Condition>> {
        Ok(self.parts(py)?.not_full.clone_ref(py))
    }

    #[getter]
    fn all_tasks_done(&self, py: Python<'_>) -> PyResult<Py<Condition>> {
        Ok(self.parts(py)?.all_tasks_done.clone_ref(py))
    }

    /// `put(item, block=False)`.
    fn put_nowait(slf: &Bound<'_, Self>, item: Bound<'_, PyAny>) -> PyResult<()> {
        let no = pyo3::types::PyBool::new(slf.py(), false)
            .to_owned()
            .into_any();
        Self::put(slf, item, Some(&no), None)
    }

    /// `get(block=False)`.
    fn get_nowait<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let no = pyo3::types::PyBool::new(slf.py(), false)
            .to_owned()
            .into_any();
        Self::get(slf, Some(&no), None)
    }

    /// One task got earlier is done; ValueError past the number put.
    fn task_done(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        Self::locked(slf, |parts| {
            let unfinished = this.unfinished.load(Ordering::Relaxed) - 1;
            if unfinished <= 0 {
                if unfinished < 0 {
                    return Err(PyValueError::new_err("task_done() called too many times"));
                }
                parts.all_tasks_done.get().wake(usize::MAX);
            }
            this.unfinished.store(unfinished, Ordering::Relaxed);
            Ok(())
        })
    }

    /// Waits until every item put has been marked done (`task_done`).
    fn join(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        Self::locked(slf, |parts| {
            Self::wait_while(
                slf,
                &parts.all_tasks_done,
                None,
                || Ok(this.unfinished.load(Ordering::Relaxed) != 0),
                || unreachable!("no timeout"),
            )
        })
    }

    fn qsize(slf: &Bound<'_, Self>) -> PyResult<i64> {
        Self::locked(slf, |_| Self::size_now(slf))
    }

    fn empty(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Self::locked(slf, |_| Ok(Self::size_now(slf)? == 0))
    }

    fn full(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let maxsize = slf.get().maxsize.load(Ordering::Relaxed);
        Self::locked(slf, |_| Ok(0 < maxsize && maxsize <= Self::size_now(slf)?))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.storage.traverse(&visit)
    }

    fn __clear__(&self, py: Python<'_>) {
        self.storage.clear(py);
    }
}
