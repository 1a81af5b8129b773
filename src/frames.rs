//! The live virtual threads' greenlets, so that `sys._current_frames()` (once patched)
//! can show each virtual thread's stack under its own identity: profilers, debuggers
//! and Dask's worker profiler look threads up there by `get_ident()`.
//!
//! Beside each, what it is parked on and since when, for a hang's report
//! (`ringloom.watchdog.dump_virtual_threads()`).
//!
//! Off until `ringloom.monkey.patch_thread()` (or `ringloom.watchdog.track()`) turns it
//! on; then each start, end, park and resume of a virtual thread costs one short lock of
//! a map.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;

static TRACKING: AtomicBool = AtomicBool::new(false);

/// A live virtual thread's greenlet and its worker's thread ident.
type Entry = (Py<PyAny>, u64);

/// Identity of each live virtual thread -> its entry.
static LIVE: Mutex<Option<HashMap<u64, Entry>>> = Mutex::new(None);

/// What a parked virtual thread waits for: the ring op (or the other wait) behind it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ParkedOn {
    /// A timer on the worker's ring.
    Sleep(Duration),
    /// POLL_ADD on `fd` for `events`, and on `others` more descriptors with it.
    Poll {
        fd: RawFd,
        events: u32,
        others: usize,
    },
    /// A ringloom lock, event, condition or queue (stock ones too, once patched).
    Waiter,
    /// A call running on the blocking pool.
    Blocking,
    /// A ring op on a file: "READ", "WRITE", "OPENAT".
    File(&'static str),
}

impl fmt::Display for ParkedOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParkedOn::Sleep(d) => write!(f, "ring TIMEOUT: sleep of {:.3} s", d.as_secs_f64()),
            ParkedOn::Poll { fd, events, others } => {
                let mut wants = Vec::new();
                if events & libc::POLLIN as u32 != 0 {
                    wants.push("POLLIN");
                }
                if events & libc::POLLOUT as u32 != 0 {
                    wants.push("POLLOUT");
                }
                write!(f, "ring POLL_ADD: fd {fd} for {}", wants.join("|"))?;
                if others > 0 {
                    write!(f, " (and {others} more descriptors)")?;
                }
                Ok(())
            }
            ParkedOn::Waiter => f.write_str("a lock, event, condition or queue"),
            ParkedOn::Blocking => f.write_str("a call on the blocking pool"),
            ParkedOn::File(op) => write!(f, "ring {op} on a file"),
        }
    }
}

/// Identity of each parked virtual thread noted -> what it waits for, and since when.
static WAITS: Mutex<Option<HashMap<u64, (ParkedOn, Instant)>>> = Mutex::new(None);

/// Notes that the virtual thread `ident` parks on `on` (`None`: it resumed).
pub(crate) fn note_wait(ident: u64, on: Option<ParkedOn>) {
    if !TRACKING.load(Ordering::Relaxed) {
        return;
    }
    let mut waits = WAITS.lock().unwrap_or_else(|p| p.into_inner());
    let waits = waits.get_or_insert_with(HashMap::new);
    match on {
        Some(on) => waits.insert(ident, (on, Instant::now())),
        None => waits.remove(&ident),
    };
}

/// `{identity: (what, seconds)}` for each parked virtual thread noted.
#[pyfunction]
pub(crate) fn vthread_waits(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let waits: Vec<(u64, String, f64)> = WAITS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .flatten()
        .map(|(ident, (on, since))| (*ident, on.to_string(), since.elapsed().as_secs_f64()))
        .collect();
    let dict = PyDict::new(py);
    for (ident, on, seconds) in waits {
        dict.set_item(ident, (on, seconds))?;
    }
    Ok(dict)
}

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

/// The thread ident of the worker that runs the live virtual thread `ident` (a
/// greenlet never leaves its OS thread), or None for one not noted (ended, or started
/// before tracking was on): what `signal.pthread_kill` and friends need, since a
/// virtual thread's identity is not a `pthread_t`.
#[pyfunction]
pub(crate) fn vthread_host(ident: u64) -> Option<u64> {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|live| live.get(&ident).map(|(_, worker)| *worker))
}

/// In a forked child: the parent's virtual threads are not there. Their greenlets are
/// leaked, not dropped: they belong to worker threads that do not exist in the child.
pub(crate) fn forget_after_fork() {
    if let Ok(mut live) = LIVE.try_lock() {
        if let Some(map) = live.take() {
            std::mem::forget(map);
        }
    }
    if let Ok(mut waits) = WAITS.try_lock() {
        waits.take();
    }
}
