//! The live virtual threads' greenlets, so that `sys._current_frames()` (once patched)
//! can show each virtual thread's stack under its own identity: profilers, debuggers
//! and Dask's worker profiler look threads up there by `get_ident()`.
//!
//! Off until `ringloom.monkey.patch_thread()` turns it on; then each start and end of
//! a virtual thread costs one short lock of a map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;

static TRACKING: AtomicBool = AtomicBool::new(false);

/// A live virtual thread's greenlet and its worker's thread ident.
type Entry = (Py<PyAny>, u64);

/// Identity of each live virtual thread -> its entry.
static LIVE: Mutex<Option<HashMap<u64, Entry>>> = Mutex::new(None);

/// Notes a virtual thread that starts on this worker, in `greenlet`.
pub(crate) fn track(py: Python<'_>, ident: u64, greenlet: &Bound<'_, PyAny>) {
    if !TRACKING.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: a plain query of the calling thread.
    let worker = (unsafe { pyo3::ffi::PyThread_get_thread_ident() }) as u64;
    let replaced = LIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(ident, (greenlet.clone().unbind(), worker));
    if let Some((old, _)) = replaced {
        old.drop_ref(py);
    }
}

/// Forgets a virtual thread that ended.
pub(crate) fn untrack(py: Python<'_>, ident: u64) {
    if !TRACKING.load(Ordering::Relaxed) {
        return;
    }
    let removed = LIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
        .and_then(|live| live.remove(&ident));
    if let Some((greenlet, _)) = removed {
        greenlet.drop_ref(py);
    }
}

/// Starts noting virtual threads as they start (idempotent).
#[pyfunction]
pub(crate) fn track_vthreads() {
    TRACKING.store(true, Ordering::Relaxed);
}

/// `{identity: (frame, worker_ident)}` for each live virtual thread noted: `frame` is
/// where a switched-out one stands, None for one running now (its frame is its
/// worker's, `sys._current_frames()[worker_ident]`).
#[pyfunction]
pub(crate) fn vthread_frames<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let live: Vec<(u64, Py<PyAny>, u64)> = LIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .flatten()
        .map(|(ident, (greenlet, worker))| (*ident, greenlet.clone_ref(py), *worker))
        .collect();
    let frames = PyDict::new(py);
    for (ident, greenlet, worker) in live {
        let frame = greenlet.bind(py).getattr(pyo3::intern!(py, "gr_frame"))?;
        frames.set_item(ident, (frame, worker))?;
    }
    Ok(frames)
}

/// In a forked child: the parent's virtual threads are not there. Their greenlets are
/// leaked, not dropped: they belong to worker threads that do not exist in the child.
pub(crate) fn forget_after_fork() {
    if let Ok(mut live) = LIVE.try_lock() {
        if let Some(map) = live.take() {
            std::mem::forget(map);
        }
    }
}
