//! A virtual thread: a ringloom task that runs one Python callable in a greenlet.
//!
//! The task is local to its worker (`spawn_local`) because a started greenlet cannot
//! move between OS threads. Each poll switches into the greenlet; the greenlet runs until
//! it returns, raises, or parks ([`park`]): it leaves the ringloom future it waits for in
//! the thread's [`Slot`] and switches back to the hub (the worker's main greenlet, where
//! the poll is). The poll then polls that future with the task's waker, so the completion
//! wakes the task and the next poll switches back into the greenlet.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use pyo3::prelude::*;

use crate::gil::with_gil;
use crate::greenlet;
use crate::stats::Counters;
use crate::watchdog;

/// What a parked virtual thread waits for. Polled only by its task, on its worker.
pub(crate) type Wait = Pin<Box<dyn Future<Output = ()>>>;

/// The virtual thread running now on this worker: set by the task's poll for exactly
/// the time it is switched into the greenlet.
struct Slot {
    /// The worker's main greenlet, which the poll runs in.
    hub: Py<PyAny>,
    /// The virtual thread's own greenlet, so a greenlet that user code started inside
    /// a virtual thread is not mistaken for it.
    greenlet: *mut pyo3::ffi::PyObject,
    /// Left here by [`park`] for the poll to take.
    wait: Option<Wait>,
    /// Whether the interception layer turns this thread's blocking calls into parks
    /// (`is_blocking` not False at submit).
    intercept: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// Whether the caller is a virtual thread's own greenlet (so it may park).
pub(crate) fn in_virtual_thread(py: Python<'_>) -> PyResult<bool> {
    let Some(expected) = CURRENT.with(|c| c.borrow().as_ref().map(|slot| slot.greenlet)) else {
        return Ok(false);
    };
    Ok(greenlet::current(py)?.as_ptr() == expected)
}

/// Whether the caller is a virtual thread's own greenlet started with interception on:
/// the interception layer (patched `time.sleep`, sockets, files) parks it only then.
/// False outside virtual threads and in one submitted with `is_blocking=False`.
#[pyfunction]
pub(crate) fn intercepting(py: Python<'_>) -> PyResult<bool> {
    let Some((expected, intercept)) = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .map(|slot| (slot.greenlet, slot.intercept))
    }) else {
        return Ok(false);
    };
    Ok(intercept && greenlet::current(py)?.as_ptr() == expected)
}

/// Parks the calling virtual thread until `wait` completes. Returns `None` (and does
/// nothing) when the caller is not a virtual thread: the caller then blocks the plain way.
/// `Some(Err)` when the greenlet is thrown an exception while parked (such as
/// `GreenletExit` when its task is dropped at shutdown).
pub(crate) fn park(py: Python<'_>, wait: Wait) -> Option<PyResult<()>> {
    match in_virtual_thread(py) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(err) => return Some(Err(err)),
    }
    let hub = CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let slot = current.as_mut().expect("checked above");
        slot.wait = Some(wait);
        slot.hub.clone_ref(py)
    });
    // No borrow of CURRENT is held across the switch: the poll takes the slot meanwhile.
    Some(hub.bind(py).call_method0("switch").map(drop))
}

/// The task of one virtual thread.
pub(crate) struct VThread {
    /// The callable, until the greenlet is created at the first poll.
    func: Option<Py<PyAny>>,
    /// The `concurrent.futures.Future` that gets the outcome; `None` once delivered.
    future: Option<Py<PyAny>>,
    greenlet: Option<Py<PyAny>>,
    hub: Option<Py<PyAny>>,
    wait: Option<Wait>,
    intercept: bool,
    counters: Arc<Counters>,
    /// Counted in `counters.parked` now.
    parked: bool,
}

/// What one switch into the greenlet ended with.
enum Step {
    Finished,
    Parked(Wait),
    /// The greenlet switched to the hub without parking: run it again later.
    Yielded,
}

impl VThread {
    fn new(func: Py<PyAny>, future: Py<PyAny>, intercept: bool, counters: Arc<Counters>) -> Self {
        VThread {
            func: Some(func),
            future: Some(future),
            greenlet: None,
            hub: None,
            wait: None,
            intercept,
            counters,
            parked: false,
        }
    }

    fn set_parked(&mut self, parked: bool) {
        if self.parked != parked {
            self.parked = parked;
            if parked {
                self.counters.parked.fetch_add(1, Ordering::Relaxed);
                Counters::add(&self.counters.parks);
            } else {
                self.counters.parked.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn deliver(&mut self, py: Python<'_>, outcome: PyResult<Bound<'_, PyAny>>) {
        let Some(future) = self.future.take() else {
            return;
        };
        let future = future.bind(py);
        let delivered = match outcome {
            Ok(value) => future.call_method1("set_result", (value,)),
            Err(err) => future.call_method1("set_exception", (err.into_value(py),)),
        };
        // Only a future cancelled meanwhile refuses (InvalidStateError): nobody waits.
        if let Err(err) = delivered {
            err.write_unraisable(py, Some(future));
        }
    }

    /// Creates the greenlet on this worker, unless the future was cancelled first.
    fn start<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let func = self.func.take().expect("a virtual thread starts once");
        let future = self.future.as_ref().expect("not delivered before start");
        if !future
            .bind(py)
            .call_method0("set_running_or_notify_cancel")?
            .is_truthy()?
        {
            self.future = None;
            return Ok(None);
        }
        self.hub = Some(greenlet::current(py)?.unbind());
        let created = greenlet::new_greenlet(py, func.bind(py))?;
        self.greenlet = Some(created.clone().unbind());
        Counters::add(&self.counters.started);
        Ok(Some(created))
    }

    fn resume(&mut self, py: Python<'_>) -> Step {
        let greenlet = match &self.greenlet {
            Some(greenlet) => greenlet.bind(py).clone(),
            None => match self.start(py) {
                Ok(Some(greenlet)) => greenlet,
                Ok(None) => {
                    self.finish();
                    return Step::Finished;
                }
                Err(err) => {
                    self.deliver(py, Err(err));
                    self.finish();
                    return Step::Finished;
                }
            },
        };
        let hub = self.hub.as_ref().expect("set at start").clone_ref(py);
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(Slot {
                hub,
                greenlet: greenlet.as_ptr(),
                wait: None,
                intercept: self.intercept,
            })
        });
        watchdog::mark(true);
        let switched = greenlet.call_method0("switch");
        watchdog::mark(false);
        let slot = CURRENT.with(|c| c.borrow_mut().take());
        let dead = match &switched {
            Ok(_) => greenlet.getattr("dead").and_then(|d| d.is_truthy()),
            Err(_) => Ok(true),
        };
        match dead {
            Ok(false) => match slot.and_then(|slot| slot.wait) {
                Some(wait) => Step::Parked(wait),
                None => Step::Yielded,
            },
            Ok(true) => {
                self.deliver(py, switched);
                self.finish();
                Step::Finished
            }
            Err(err) => {
                self.deliver(py, Err(err));
                self.finish();
                Step::Finished
            }
        }
    }

    /// Lets go of every Python object while the GIL is held, so dropping the finished
    /// task needs no GIL.
    fn finish(&mut self) {
        if self.greenlet.is_some() {
            Counters::add(&self.counters.finished);
        }
        self.greenlet = None;
        self.hub = None;
    }
}

/// A virtual thread on its way to a worker, in the `Send` starter task.
pub(crate) struct Unstarted {
    func: Option<Py<PyAny>>,
    future: Option<Py<PyAny>>,
    intercept: bool,
    counters: Arc<Counters>,
}

impl Unstarted {
    pub(crate) fn new(
        func: Py<PyAny>,
        future: Py<PyAny>,
        intercept: bool,
        counters: Arc<Counters>,
    ) -> Unstarted {
        Unstarted {
            func: Some(func),
            future: Some(future),
            intercept,
            counters,
        }
    }

    /// Called on the worker that will run it: from here on it stays there.
    pub(crate) fn into_vthread(mut self) -> VThread {
        let counters = self.counters.clone();
        match (self.func.take(), self.future.take()) {
            (Some(func), Some(future)) => VThread::new(func, future, self.intercept, counters),
            _ => unreachable!("taken only here"),
        }
    }
}

impl Drop for Unstarted {
    /// A starter dropped unpolled (runtime shut down) drops its objects with the GIL:
    /// PyO3 cannot tell on a worker whether the GIL is held (see `gil.rs`).
    fn drop(&mut self) {
        if self.func.is_some() || self.future.is_some() {
            with_gil(|py| {
                if let Some(future) = self.future.take() {
                    let err = pyo3::exceptions::PyRuntimeError::new_err(
                        "the ringloom runtime shut down before this virtual thread started",
                    );
                    let _ = future
                        .bind(py)
                        .call_method1("set_exception", (err.into_value(py),));
                }
                self.func = None;
            });
        }
    }
}

impl Future for VThread {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            if let Some(wait) = this.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    this.set_parked(true);
                    return Poll::Pending;
                }
                this.wait = None;
                this.set_parked(false);
            }
            match with_gil(|py| this.resume(py)) {
                Step::Finished => return Poll::Ready(()),
                Step::Parked(wait) => this.wait = Some(wait),
                Step::Yielded => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for VThread {
    /// A virtual thread dropped unfinished (runtime shut down) fails its future, so no
    /// caller waits forever; dropping the greenlet then kills it (`GreenletExit`).
    fn drop(&mut self) {
        self.set_parked(false);
        let holds_python = self.future.is_some()
            || self.greenlet.is_some()
            || self.func.is_some()
            || self.hub.is_some();
        if !holds_python {
            return;
        }
        with_gil(|py| {
            self.wait = None;
            if self.future.is_some() {
                let err = pyo3::exceptions::PyRuntimeError::new_err(
                    "the ringloom runtime shut down before this virtual thread finished",
                );
                self.deliver(py, Err(err));
            }
            self.func = None;
            self.greenlet = None;
            self.hub = None;
        });
    }
}
