//! Where a virtual thread's outcome goes: a `concurrent.futures.Future` of its own, or
//! one place in a [`Batch`], the shared completion of a `VirtualThreadPool.map`.
//!
//! A future per call costs more than the call's virtual thread once greenlets are
//! reused: its `Condition` and `RLock`, the locked state changes, the done callbacks.
//! A map needs none of that per call: its results go straight into one list, its first
//! error (in input order) is kept, and one callback runs when the last call ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::window::Window;

/// The shared completion of a batch of calls (`Loom.spawn_batch`).
///
/// `results[i]` gets call `i`'s return value. The error of the lowest index is kept; an
/// error cancels the calls after it that have not started (the ones before it still
/// run: one of them may fail and come first in input order), and `cancel()` cancels
/// every call not started; a cancelled call leaves its
/// place as it was. `on_done(batch)` is called once every call has ended or was
/// cancelled, on the worker that ended the last one (as a future's done callbacks are).
#[pyclass(module = "ringloom._native", frozen)]
pub(crate) struct Batch {
    results: Py<PyList>,
    on_done: Py<PyAny>,
    /// Calls not yet ended (nor cancelled).
    remaining: AtomicUsize,
    /// Calls of this index or above that have not started are skipped.
    skip_from: AtomicUsize,
    /// Calls that were cancelled before they started.
    skipped: AtomicUsize,
    failed: AtomicUsize,
    /// The error of the lowest index so far.
    error: Mutex<Option<(usize, Py<PyAny>)>>,
    /// The bound on calls running at once, for a bounded pool's map.
    window: OnceLock<Arc<Window>>,
}

#[pymethods]
impl Batch {
    /// A batch whose calls fill `results` (a list at least as long as the calls), and
    /// which calls `on_done(batch)` when they are over.
    #[new]
    fn new(results: Bound<'_, PyList>, on_done: Bound<'_, PyAny>) -> PyResult<Batch> {
        if !on_done.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "on_done must be callable",
            ));
        }
        Ok(Batch {
            remaining: AtomicUsize::new(0),
            results: results.unbind(),
            on_done: on_done.unbind(),
            skip_from: AtomicUsize::new(usize::MAX),
            skipped: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            error: Mutex::new(None),
            window: OnceLock::new(),
        })
    }

    /// Calls not started yet are skipped (a call running now runs to its end).
    fn cancel(&self) {
        self.skip_from.store(0, Ordering::Release);
    }

    /// Calls not yet ended or skipped.
    #[getter]
    fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Acquire)
    }

    /// Calls that raised.
    #[getter]
    fn failed(&self) -> usize {
        self.failed.load(Ordering::Acquire)
    }

    /// Calls skipped because the batch was cancelled before they started.
    #[getter]
    fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Acquire)
    }

    /// `(index, exception)` of the failed call of the lowest index, or None.
    #[getter]
    fn error(&self, py: Python<'_>) -> Option<(usize, Py<PyAny>)> {
        let error = self.error.lock().unwrap_or_else(|p| p.into_inner());
        error
            .as_ref()
            .map(|(index, err)| (*index, err.clone_ref(py)))
    }
}

impl Batch {
    /// Counts `calls` more calls in, before they are started.
    pub(crate) fn expect(&self, calls: usize) {
        self.remaining.fetch_add(calls, Ordering::AcqRel);
    }

    /// Keeps `err` if no call before `index` failed.
    ///
    /// Nothing that may let go of the GIL runs under `error`'s lock: normalizing a lazy
    /// error (PyO3 detaches while it does) or dropping the one replaced (its finalizers
    /// may run Python). A worker waiting for the GIL there while another, holding the
    /// GIL, waits for the lock deadlocked the workers of a pool closed under a map.
    fn keep_error(&self, py: Python<'_>, index: usize, err: PyErr) {
        let value = err.into_value(py).into_any();
        let replaced = {
            let mut error = self.error.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(error.as_ref(), Some((first, _)) if *first < index) {
                Some(value)
            } else {
                error.replace((index, value)).map(|(_, old)| old)
            }
        };
        if let Some(replaced) = replaced {
            replaced.drop_ref(py);
        }
    }

    /// Bounds the calls running at once by `window` (set once, before any call starts).
    pub(crate) fn set_window(&self, window: Arc<Window>) {
        // Checked by the caller (`has_window`), under the GIL it holds throughout.
        let _ = self.window.set(window);
    }

    pub(crate) fn has_window(&self) -> bool {
        self.window.get().is_some()
    }

    /// One call of `batch` is over: its place in the window goes to the next call, and
    /// the last one calls `on_done`.
    fn end_one(py: Python<'_>, batch: &Py<Batch>) {
        let this = batch.get();
        if let Some(window) = this.window.get() {
            window.ended();
        }
        if this.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Err(err) = this.on_done.bind(py).call1((batch,)) {
                err.write_unraisable(py, Some(this.on_done.bind(py)));
            }
        }
    }
}

/// Where one virtual thread's outcome goes.
pub(crate) enum Sink {
    /// A `concurrent.futures.Future`.
    Future(Py<PyAny>),
    /// Place `index` of a batch.
    Batch { batch: Py<Batch>, index: usize },
}

impl Sink {
    /// Marks the call running; false if it was cancelled first (and is over).
    pub(crate) fn start(&self, py: Python<'_>) -> PyResult<bool> {
        match self {
            Sink::Future(future) => future
                .bind(py)
                .call_method0(pyo3::intern!(py, "set_running_or_notify_cancel"))?
                .is_truthy(),
            Sink::Batch { batch, index } => {
                let this = batch.get();
                if *index >= this.skip_from.load(Ordering::Acquire) {
                    this.skipped.fetch_add(1, Ordering::AcqRel);
                    Batch::end_one(py, batch);
                    return Ok(false);
                }
                Ok(true)
            }
        }
    }

    /// Hands over the call's outcome.
    pub(crate) fn deliver(self, py: Python<'_>, outcome: PyResult<Bound<'_, PyAny>>) {
        match self {
            Sink::Future(future) => {
                let future = future.into_bound(py);
                let delivered = match outcome {
                    Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,)),
                    Err(err) => future
                        .call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),)),
                };
                // A future cancelled meanwhile refuses (InvalidStateError): nobody waits
                // for it, and nothing is worth reporting (an unstarted call failed as
                // its pool closes, after the close cancelled its future).
                if let Err(err) = delivered {
                    let cancelled = future
                        .call_method0(pyo3::intern!(py, "cancelled"))
                        .and_then(|c| c.is_truthy())
                        .unwrap_or(false);
                    if !cancelled {
                        err.write_unraisable(py, Some(&future));
                    }
                }
            }
            Sink::Batch {
                batch: owner,
                index,
            } => {
                let batch = owner.get();
                match outcome {
                    Ok(value) => {
                        if let Err(err) = batch.results.bind(py).set_item(index, value) {
                            err.write_unraisable(py, None);
                        }
                    }
                    Err(err) => {
                        batch.failed.fetch_add(1, Ordering::AcqRel);
                        batch.skip_from.fetch_min(index + 1, Ordering::AcqRel);
                        batch.keep_error(py, index, err);
                    }
                }
                Batch::end_one(py, &owner);
                owner.drop_ref(py);
            }
        }
    }
}
