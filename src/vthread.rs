//! A virtual thread: one Python callable run in a greenlet by its worker's hub
//! (`hub.rs`).
//!
//! A started greenlet cannot move between OS threads, so a virtual thread stays on the
//! worker whose hub took it. Each resume switches into the greenlet; the greenlet runs
//! until it returns, raises, or parks ([`park`]): it leaves the ringloom future it waits
//! for in the thread's [`Slot`] and switches back to the worker's main greenlet, where
//! the hub runs. The hub then polls that future with the virtual thread's own waker, so
//! the completion marks this one virtual thread ready again.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;

use crate::gil::with_gil;
use crate::greenlet;
use crate::stats::Counters;
use crate::watchdog;

/// What a parked virtual thread waits for. Polled only by its hub, on its worker.
pub(crate) type Wait = Pin<Box<dyn Future<Output = ()>>>;

/// The virtual thread running now on this worker: set by [`VThread::resume`] for exactly
/// the time it is switched into the greenlet.
struct Slot {
    /// The worker's main greenlet, which the hub runs in.
    hub: Py<PyAny>,
    /// The virtual thread's own greenlet, so a greenlet that user code started inside
    /// a virtual thread is not mistaken for it.
    greenlet: *mut pyo3::ffi::PyObject,
    /// Left here by [`park`] for the resume to take.
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
/// `GreenletExit` when its hub is dropped at shutdown).
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
        slot.hub.clone_ref(py).into_bound(py)
    });
    // No borrow of CURRENT is held across the switch: the resume takes the slot meanwhile.
    let switched = hub.call_method0(intern!(py, "switch")).map(drop);
    // A switch that failed before leaving must not leave its wait behind: the resume
    // would take the greenlet for parked when it returns or yields later.
    CURRENT.with(|c| {
        if let Some(slot) = c.borrow_mut().as_mut() {
            slot.wait = None;
        }
    });
    Some(switched)
}

/// One virtual thread, owned by its worker's hub from the moment it starts.
pub(crate) struct VThread {
    /// The callable, until the greenlet is created at the first resume.
    func: Option<Py<PyAny>>,
    /// The `concurrent.futures.Future` that gets the outcome; `None` once delivered.
    future: Option<Py<PyAny>>,
    greenlet: Option<Py<PyAny>>,
    intercept: bool,
    /// 0..=255, lower first: the order the hub runs ready virtual threads in.
    pub(crate) priority: u8,
    counters: Arc<Counters>,
    /// Counted in `counters.parked` now.
    parked: bool,
}

/// What one switch into the greenlet ended with.
pub(crate) enum Step {
    Finished,
    Parked(Wait),
    /// The greenlet switched to the hub without parking: run it again later.
    Yielded,
}

impl VThread {
    /// Counts the virtual thread in (or out of) `parked`; entering it counts a park.
    pub(crate) fn set_parked(&mut self, parked: bool) {
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
        let future = &future.into_bound(py);
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
        let func = func.into_bound(py);
        let future = self.future.as_ref().expect("not delivered before start");
        if !future
            .bind(py)
            .call_method0("set_running_or_notify_cancel")?
            .is_truthy()?
        {
            self.future = None;
            return Ok(None);
        }
        let created = greenlet::new_greenlet(py, &func)?;
        self.greenlet = Some(created.clone().unbind());
        Counters::add(&self.counters.started);
        Ok(Some(created))
    }

    /// Switches into the greenlet (creating it the first time) until it parks, yields
    /// or ends. `hub` is the calling greenlet: the worker's main one, which every
    /// virtual thread of the worker switches back to.
    pub(crate) fn resume(&mut self, py: Python<'_>, hub: &Bound<'_, PyAny>) -> Step {
        let greenlet = match &self.greenlet {
            Some(greenlet) => greenlet.bind(py).clone(),
            None => match self.start(py) {
                Ok(Some(greenlet)) => greenlet,
                Ok(None) => {
                    self.finish(py);
                    return Step::Finished;
                }
                Err(err) => {
                    self.deliver(py, Err(err));
                    self.finish(py);
                    return Step::Finished;
                }
            },
        };
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(Slot {
                hub: hub.clone().unbind(),
                greenlet: greenlet.as_ptr(),
                wait: None,
                intercept: self.intercept,
            })
        });
        watchdog::mark(true);
        let switched = greenlet.call_method0(intern!(py, "switch"));
        watchdog::mark(false);
        let wait = CURRENT.with(|c| c.borrow_mut().take()).and_then(|slot| {
            // Not left to `Py`'s drop, which cannot tell here that the GIL is held and
            // queues the decref in PyO3's pool, behind a lock, for later.
            slot.hub.drop_ref(py);
            slot.wait
        });
        // A wait left behind means the greenlet is suspended in `park`: alive, and no
        // need to ask (`dead` is an attribute lookup per switch).
        let dead = match (&switched, wait) {
            (Ok(_), Some(wait)) => return Step::Parked(wait),
            (Ok(_), None) => greenlet
                .getattr(intern!(py, "dead"))
                .and_then(|d| d.is_truthy()),
            (Err(_), _) => Ok(true),
        };
        match dead {
            Ok(false) => Step::Yielded,
            Ok(true) => {
                self.deliver(py, switched);
                self.finish(py);
                Step::Finished
            }
            Err(err) => {
                self.deliver(py, Err(err));
                self.finish(py);
                Step::Finished
            }
        }
    }

    /// Ends the virtual thread with `err` without running it (its hub could not).
    pub(crate) fn fail(&mut self, py: Python<'_>, err: PyErr) {
        self.deliver(py, Err(err));
        self.func = None;
        self.finish(py);
    }

    /// Lets go of the greenlet while the GIL is held, so dropping the finished virtual
    /// thread needs no GIL.
    fn finish(&mut self, py: Python<'_>) {
        if let Some(greenlet) = self.greenlet.take() {
            Counters::add(&self.counters.finished);
            greenlet.drop_ref(py);
        }
    }
}

/// A virtual thread on its way to a worker, in the `Send` starter task.
pub(crate) struct Unstarted {
    func: Option<Py<PyAny>>,
    future: Option<Py<PyAny>>,
    intercept: bool,
    priority: u8,
    counters: Arc<Counters>,
}

impl Unstarted {
    pub(crate) fn new(
        func: Py<PyAny>,
        future: Py<PyAny>,
        intercept: bool,
        priority: u8,
        counters: Arc<Counters>,
    ) -> Unstarted {
        Unstarted {
            func: Some(func),
            future: Some(future),
            intercept,
            priority,
            counters,
        }
    }

    /// The counters of its `Loom`, which also name the `Loom` (see `hub::adopt`).
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Called on the worker that will run it: from here on it stays there.
    pub(crate) fn into_vthread(mut self) -> VThread {
        let (Some(func), Some(future)) = (self.func.take(), self.future.take()) else {
            unreachable!("taken only here")
        };
        VThread {
            func: Some(func),
            future: Some(future),
            greenlet: None,
            intercept: self.intercept,
            priority: self.priority,
            counters: self.counters.clone(),
            parked: false,
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

impl Drop for VThread {
    /// A virtual thread dropped unfinished (runtime shut down) fails its future, so no
    /// caller waits forever; dropping the greenlet then kills it (`GreenletExit`).
    fn drop(&mut self) {
        self.set_parked(false);
        if self.future.is_none() && self.greenlet.is_none() && self.func.is_none() {
            return;
        }
        with_gil(|py| {
            if self.future.is_some() {
                let err = pyo3::exceptions::PyRuntimeError::new_err(
                    "the ringloom runtime shut down before this virtual thread finished",
                );
                self.deliver(py, Err(err));
            }
            self.func = None;
            self.greenlet = None;
        });
    }
}
