//! `Waiter`: one waiter's wake-up slot, under every native lock, event, condition and
//! queue (`sync/`), and `Parker`, its Python face (for `python/ringloom/sync.py`).
//!
//! [`wait`] parks a virtual thread on a ringloom future (its worker runs others
//! meanwhile) and blocks a plain OS thread on a condition variable with the GIL released.
//! `unpark` works from any thread: it sets the flag, signals the condition variable and
//! wakes the parked task's waker (which the runtime accepts from any thread).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::vthread;

#[derive(Default)]
struct State {
    notified: bool,
    waker: Option<Waker>,
}

/// Forks survived by this process: bumped in a forked child, before any of its code runs.
static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);

/// In a forked child: every waiter made before the fork is stale (it waited in a thread
/// of the parent, which the child does not have).
pub(crate) fn after_fork() {
    FORK_EPOCH.fetch_add(1, Ordering::AcqRel);
}

/// One waiter's wake-up slot, shared by the waiting side and whoever wakes it.
pub(crate) struct Waiter {
    state: Mutex<State>,
    cond: Condvar,
    /// `FORK_EPOCH` when it was made.
    epoch: u64,
}

impl Default for Waiter {
    fn default() -> Waiter {
        Waiter {
            state: Mutex::default(),
            cond: Condvar::new(),
            epoch: FORK_EPOCH.load(Ordering::Acquire),
        }
    }
}

impl Waiter {
    /// Made before a fork this process is the child of: its waiter exists only in the
    /// parent. A lock must not be handed to it, and waking it would touch the parent's
    /// runtime structures (copied, perhaps mid-update) and the eventfd the child shares
    /// with the parent.
    pub(crate) fn is_stale(&self) -> bool {
        self.epoch != FORK_EPOCH.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the notification, if any (a later `park` waits for a new `unpark`).
    fn take(&self) -> bool {
        let mut state = self.lock();
        state.waker = None;
        std::mem::take(&mut state.notified)
    }
}

/// Completes once the parker is notified.
struct Notified(Arc<Waiter>);

impl Future for Notified {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.lock();
        if state.notified {
            return Poll::Ready(());
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// One waiter's wake-up slot: `park(timeout)` waits for `unpark()` (from any thread).
#[pyclass(module = "ringloom._native", frozen)]
pub(crate) struct Parker {
    inner: Arc<Waiter>,
}

#[pymethods]
impl Parker {
    #[new]
    fn new() -> Self {
        Parker {
            inner: Arc::default(),
        }
    }

    /// Waits until `unpark` is called (True; at once if it was called already) or
    /// `timeout` seconds pass (False; None waits forever). A virtual thread parks, a
    /// plain OS thread blocks with the GIL released. The notification is consumed.
    #[pyo3(signature = (timeout = None))]
    fn park(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        wait(py, &self.inner, check_timeout(timeout)?)
    }

    /// Wakes the `park` in progress, or makes the next one return True at once.
    pub(crate) fn unpark(&self) {
        self.inner.unpark();
    }

    /// Whether it was made before a fork this process is the child of (its waiter is
    /// in the parent): a permit or a lock must not be handed to it.
    #[getter]
    fn stale(&self) -> bool {
        self.inner.is_stale()
    }
}

impl Waiter {
    /// Wakes the wait in progress, or makes the next one return true at once; nothing
    /// for a stale waiter (see `is_stale`).
    pub(crate) fn unpark(&self) {
        if self.is_stale() {
            return;
        }
        let waker = {
            let mut state = self.lock();
            state.notified = true;
            state.waker.take()
        };
        self.cond.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A timeout in seconds (None: no limit) as a `Duration`; a negative or unrepresentable
/// one is a ValueError.
pub(crate) fn check_timeout(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout
        .map(|secs| {
            Duration::try_from_secs_f64(secs)
                .map_err(|_| PyValueError::new_err("timeout must be a non-negative number"))
        })
        .transpose()
}

/// Waits until `inner` is unparked (true; at once if it was already) or `timeout`
/// passes (false). A virtual thread parks (its worker runs others meanwhile); a plain
/// OS thread blocks on the condition variable with the GIL released, in slices, so that
/// a signal handler (Ctrl-C) runs within one slice and its exception ends the wait. The
/// notification is consumed. An error (the handler's exception, or `GreenletExit` thrown
/// into a parked virtual thread) leaves a notification that came meanwhile in place, for
/// the caller to take or pass on.
pub(crate) fn wait(
    py: Python<'_>,
    inner: &Arc<Waiter>,
    timeout: Option<Duration>,
) -> PyResult<bool> {
    if inner.lock().notified || timeout == Some(Duration::ZERO) {
        return Ok(inner.take());
    }
    if vthread::in_virtual_thread(py)? {
        let notified = Notified(inner.clone());
        let wait: vthread::Wait = match timeout {
            None => Box::pin(notified),
            Some(timeout) => Box::pin(async move {
                let _ = ringloom::time::timeout(timeout, notified).await;
            }),
        };
        match vthread::park(py, wait, crate::frames::ParkedOn::Waiter) {
            Some(Err(err)) => return Err(err),
            Some(Ok(())) => return Ok(inner.take()),
            None => {}
        }
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = Duration::from_millis(50);
        let wait = match deadline {
            None => slice,
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(slice),
        };
        let notified = py.detach(|| {
            let state = inner.lock();
            let (state, _) = inner
                .cond
                .wait_timeout_while(state, wait, |s| !s.notified)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.notified
        });
        if notified || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(inner.take());
        }
        py.check_signals()?;
    }
}
