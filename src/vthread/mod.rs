//! A virtual thread: one Python callable run in a greenlet by its worker's hub
//! (`hub.rs`).
//!
//! A started greenlet cannot move between OS threads, so a virtual thread stays on the
//! worker whose hub took it. Each resume switches into the greenlet; the greenlet runs
//! until it returns, raises, or parks ([`park`]): it leaves the ringloom future it waits
//! for in the thread's [`Running`] and switches back to the worker's main greenlet, where
//! the hub runs. The hub then polls that future with the virtual thread's own waker, so
//! the completion marks this one virtual thread ready again.
//!
//! A greenlet outlives its virtual thread: its body ([`run_calls`]) hands each call's
//! outcome to the hub and waits for the next call, and the hub keeps a few such idle
//! greenlets ([`Idle`]) for the next virtual threads it starts. A new greenlet costs more
//! than the greenlet object: CPython 3.11 gives each one a 16 KiB frame data-stack chunk,
//! mapped at its first call and unmapped when it dies, and that `mmap`/`munmap` pair
//! (with its page faults and TLB shootdowns) was over half the CPU of a trivial task.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::batch::Sink;
use crate::frames;
use crate::gil::with_gil;
use crate::greenlet;
use crate::running_loop;
use crate::stats::Counters;
use crate::watchdog;

/// What a parked virtual thread waits for. Polled only by its hub, on its worker.
pub(crate) type Wait = Pin<Box<dyn Future<Output = ()>>>;

/// The virtual thread running now on this worker: set by [`VThread::resume`] for exactly
/// the time it is switched into the greenlet.
struct Running {
    /// The worker's main greenlet, which the hub runs in.
    hub: Py<PyAny>,
    /// The virtual thread's own greenlet, so a greenlet that user code started inside
    /// a virtual thread is not mistaken for it.
    greenlet: *mut pyo3::ffi::PyObject,
    /// Left here by [`park`] for the resume to take.
    wait: Option<Wait>,
    /// Left here by [`run_calls`]: the outcome of the call it finished.
    finished: Option<PyResult<Py<PyAny>>>,
    /// Whether the hub will keep the greenlet once its call is over (it has room for
    /// one more idle greenlet); if not, [`run_calls`] ends.
    may_idle: bool,
    /// Whether the interception layer turns this thread's blocking calls into parks
    /// (`is_blocking` not False at submit).
    intercept: bool,
    /// The virtual thread's identity (`threading.get_ident()` in it, once patched).
    ident: u64,
    /// The Python layer's object for this virtual thread (its `threading` identity and
    /// locals), moved in for the switch and back out after it.
    state: Option<Py<PyAny>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Running>> = const { RefCell::new(None) };
}

mod identity;
mod unstarted;

pub(crate) use identity::{
    detach_after_fork, get_ident, ident, in_virtual_thread, intercepting, is_virtual_thread,
    set_vthread_state, vthread_ident, vthread_state,
};
pub(crate) use unstarted::Unstarted;

/// Parks the calling virtual thread until `wait` completes. Returns `None` (and does
/// nothing) when the caller is not a virtual thread: the caller then blocks the plain way.
/// `Some(Err)` when the greenlet is thrown an exception while parked (such as
/// `GreenletExit` when its hub is dropped at shutdown).
/// `on` says what it waits for, for a hang's report (see `frames`).
pub(crate) fn park(py: Python<'_>, wait: Wait, on: frames::ParkedOn) -> Option<PyResult<()>> {
    match in_virtual_thread(py) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(err) => return Some(Err(err)),
    }
    let (hub, ident) = CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let slot = current.as_mut().expect("checked above");
        slot.wait = Some(wait);
        (slot.hub.clone_ref(py).into_bound(py), slot.ident)
    });
    frames::note_wait(ident, Some(on));
    // No borrow of CURRENT is held across the switch: the resume takes the slot meanwhile.
    let switched = hub.call_method0(intern!(py, "switch")).map(drop);
    frames::note_wait(ident, None);
    // A switch that failed before leaving must not leave its wait behind: the resume
    // would take the greenlet for parked when it returns or yields later.
    CURRENT.with(|c| {
        if let Some(slot) = c.borrow_mut().as_mut() {
            slot.wait = None;
        }
    });
    Some(switched)
}

/// The body of every virtual thread's greenlet: calls `func(*args)`, leaves its outcome
/// for the resume, and switches back to the hub, idle, until the hub switches in the
/// next virtual thread's callable and arguments. Returns, ending the greenlet, when the
/// hub has no room for another idle greenlet, or when the greenlet is killed:
/// `GreenletExit` thrown into a parked call (the hub dropped at shutdown) or into the
/// idle wait (the hub's idle greenlets dropped with it).
#[pyfunction]
pub(crate) fn run_calls(
    py: Python<'_>,
    func: Bound<'_, PyAny>,
    args: Bound<'_, PyTuple>,
) -> PyResult<()> {
    let (mut func, mut args) = (func, args);
    loop {
        let outcome = call_in_new_context(py, &func, &args);
        drop((func, args));
        if identity::detached() {
            end_forked_child(py, outcome);
        }
        if let Err(err) = &outcome {
            if greenlet::is_exit(py, err) {
                return outcome.map(drop);
            }
        }
        let hub = CURRENT.with(|c| {
            let mut current = c.borrow_mut();
            let slot = current.as_mut()?;
            slot.finished = Some(outcome.map(Bound::unbind));
            Some(slot.may_idle.then(|| slot.hub.clone_ref(py)))
        });
        let Some(Some(hub)) = hub else {
            // The hub keeps no more idle greenlets (or nothing runs this one: someone
            // switched into it by hand): end, rather than be killed later, which costs
            // an exception thrown through greenlet's C++ for each one.
            return Ok(());
        };
        let next = hub.into_bound(py).call_method0(intern!(py, "switch"))?;
        (func, args) = next.extract()?;
    }
}

/// A forked child's copy of a virtual thread has finished its call: the child ends here,
/// since what comes next (the hub, the worker's loop) would run on the parent's ring.
/// Exit code 0 after a return, a `SystemExit`'s code, 1 after another exception (its
/// traceback printed first); `sys.stdout` and `sys.stderr` are flushed.
fn end_forked_child(py: Python<'_>, outcome: PyResult<Bound<'_, PyAny>>) -> ! {
    let code = match outcome {
        Ok(_) => 0,
        Err(err) if err.is_instance_of::<pyo3::exceptions::PySystemExit>(py) => {
            let code = err.value(py).getattr(intern!(py, "code")).ok();
            match code {
                None => 1,
                Some(code) if code.is_none() => 0,
                Some(code) => code.extract::<i32>().unwrap_or_else(|_| {
                    let _ = py
                        .import(intern!(py, "builtins"))
                        .and_then(|b| b.getattr(intern!(py, "print")))
                        .and_then(|print| print.call1((code,)));
                    1
                }),
            }
        }
        Err(err) => {
            err.print(py);
            1
        }
    };
    if let Ok(sys) = py.import(intern!(py, "sys")) {
        for stream in [intern!(py, "stdout"), intern!(py, "stderr")] {
            if let Ok(stream) = sys.getattr(stream) {
                let _ = stream.call_method0(intern!(py, "flush"));
            }
        }
    }
    // SAFETY: ends the process at once (no Rust or Python clean-up runs): this child's
    // runtimes were let go of at the fork, and only this thread exists.
    unsafe { libc::_exit(code) }
}

/// Calls `func` in a new, empty `contextvars` context, as a new greenlet would run it:
/// context variables one virtual thread sets do not leak into the next one that reuses
/// its greenlet.
fn call_in_new_context<'py>(
    py: Python<'py>,
    func: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: GIL held; `PyContext_New` returns a new reference or NULL with an error set,
    // and `from_owned_ptr_or_err` takes that reference over.
    let context = unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyContext_New())? };
    // SAFETY: GIL held; `context` is a new context object, never entered before.
    if unsafe { pyo3::ffi::PyContext_Enter(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let outcome = func.call1(args);
    // SAFETY: GIL held; `context` is the one entered above, and it is current again: a
    // call that parked in between came back on this greenlet, whose context greenlet
    // saved at the switch out and restored at the switch in.
    if unsafe { pyo3::ffi::PyContext_Exit(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    outcome
}

/// The idle greenlets of one hub, each waiting in [`run_calls`] for its next call.
#[derive(Default)]
pub(crate) struct Idle {
    greenlets: Vec<Py<PyAny>>,
}

impl Idle {
    /// Idle greenlets kept per hub. Each keeps its data-stack chunk (a few KiB touched),
    /// so a burst of a million tasks leaves a few MiB behind per worker, not hundreds.
    const KEEP: usize = 256;

    /// Drops them all, GIL held: each is killed (`GreenletExit` in its idle wait).
    pub(crate) fn clear(&mut self, py: Python<'_>) {
        for greenlet in self.greenlets.drain(..) {
            greenlet.drop_ref(py);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.greenlets.is_empty()
    }

    /// An idle greenlet, or a new one, for a virtual thread's first switch.
    fn take<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(greenlet) = self.greenlets.pop() {
            return Ok(greenlet.into_bound(py));
        }
        let run = RUN_CALLS.get_or_try_init(py, || {
            Ok::<_, PyErr>(wrap_pyfunction!(run_calls, py)?.into_any().unbind())
        })?;
        greenlet::new_greenlet(py, run.bind(py))
    }

    fn has_room(&self) -> bool {
        self.greenlets.len() < Self::KEEP
    }

    /// Keeps a greenlet that waits in [`run_calls`] for its next call (there is room:
    /// its resume checked).
    fn keep(&mut self, greenlet: Py<PyAny>) {
        self.greenlets.push(greenlet);
    }
}

static RUN_CALLS: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// One virtual thread, owned by its worker's hub from the moment it starts.
pub(crate) struct VThread {
    /// The callable and its arguments, until the first resume switches them in.
    call: Option<(Py<PyAny>, Py<PyTuple>)>,
    /// Where the outcome goes; `None` once delivered.
    sink: Option<Sink>,
    greenlet: Option<Py<PyAny>>,
    intercept: bool,
    /// 0..=255, lower first: the order the hub runs ready virtual threads in.
    pub(crate) priority: u8,
    counters: Arc<Counters>,
    /// Counted in `counters.parked` now.
    parked: bool,
    ident: u64,
    /// The Python layer's object for it (see [`vthread_state`]), while not switched in.
    state: Option<Py<PyAny>>,
    /// Its asyncio running loop while switched out (`running_loop.rs`).
    running_loop: Option<Py<PyAny>>,
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
        if let Some(sink) = self.sink.take() {
            sink.deliver(py, outcome);
        }
    }

    /// Whether its first resume has happened (it may not have run: a cancelled call
    /// counts as started too).
    pub(crate) fn is_started(&self) -> bool {
        self.call.is_none()
    }

    /// Takes a greenlet on this worker (idle or new), unless the call was cancelled
    /// first; returns it with what to switch in: the callable and its arguments.
    fn start<'py>(
        &mut self,
        py: Python<'py>,
        idle: &mut Idle,
    ) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyTuple>)>> {
        let (func, args) = self.call.take().expect("a virtual thread starts once");
        let sink = self.sink.as_ref().expect("not delivered before start");
        if !sink.start(py)? {
            self.sink = None;
            return Ok(None);
        }
        let greenlet = idle.take(py)?;
        self.greenlet = Some(greenlet.clone().unbind());
        frames::track(py, self.ident, &greenlet);
        Counters::add(&self.counters.started);
        let args = PyTuple::new(py, [func.into_any(), args.into_any()])?;
        Ok(Some((greenlet, args)))
    }

    /// Switches into the greenlet (taking one the first time) until the call parks,
    /// yields or ends. `hub` is the calling greenlet: the worker's main one, which every
    /// virtual thread of the worker switches back to; `idle` its idle greenlets.
    pub(crate) fn resume(
        &mut self,
        py: Python<'_>,
        hub: &Bound<'_, PyAny>,
        idle: &mut Idle,
    ) -> Step {
        let (greenlet, call) = match &self.greenlet {
            Some(greenlet) => (greenlet.bind(py).clone(), None),
            None => match self.start(py, idle) {
                Ok(Some((greenlet, call))) => (greenlet, Some(call)),
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
            *c.borrow_mut() = Some(Running {
                hub: hub.clone().unbind(),
                greenlet: greenlet.as_ptr(),
                wait: None,
                finished: None,
                may_idle: idle.has_room(),
                intercept: self.intercept,
                ident: self.ident,
                state: self.state.take(),
            })
        });
        running_loop::switch_in(py, &mut self.running_loop);
        watchdog::mark(true);
        let switched = match call {
            Some(call) => greenlet.call_method1(intern!(py, "switch"), call),
            None => greenlet.call_method0(intern!(py, "switch")),
        };
        watchdog::mark(false);
        running_loop::switch_out(py, &mut self.running_loop);
        let (wait, finished, may_idle) = match CURRENT.with(|c| c.borrow_mut().take()) {
            Some(slot) => {
                // Not left to `Py`'s drop, which cannot tell here that the GIL is held
                // and queues the decref in PyO3's pool, behind a lock, for later.
                slot.hub.drop_ref(py);
                self.state = slot.state;
                (slot.wait, slot.finished, slot.may_idle)
            }
            None => (None, None, false),
        };
        if let Some(outcome) = finished {
            // The call ended; its greenlet waits, idle, for another, or has ended too.
            for object in [self.state.take(), self.running_loop.take()]
                .into_iter()
                .flatten()
            {
                object.drop_ref(py);
            }
            self.deliver(py, outcome.map(|value| value.into_bound(py)));
            if let Some(greenlet) = self.greenlet.take() {
                frames::untrack(py, self.ident);
                Counters::add(&self.counters.finished);
                if may_idle {
                    idle.keep(greenlet);
                } else {
                    greenlet.drop_ref(py);
                }
            }
            return Step::Finished;
        }
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
        self.call = None;
        self.finish(py);
    }

    /// Lets go of the greenlet while the GIL is held, so dropping the finished virtual
    /// thread needs no GIL.
    fn finish(&mut self, py: Python<'_>) {
        if let Some(state) = self.state.take() {
            state.drop_ref(py);
        }
        if let Some(running) = self.running_loop.take() {
            running.drop_ref(py);
        }
        if let Some(greenlet) = self.greenlet.take() {
            frames::untrack(py, self.ident);
            Counters::add(&self.counters.finished);
            greenlet.drop_ref(py);
        }
    }
}

/// Set at interpreter exit (`close_all`): virtual threads still running then are left
/// where they stand, as daemon threads are, instead of being unwound.
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, a virtual thread dropped unfinished is leaked without running any of
/// its code: the interpreter is exiting.
pub(crate) fn leave_at_exit() {
    EXITING.store(true, Ordering::Release);
}

impl VThread {
    /// Unwinds a started virtual thread that will not be resumed (its runtime is
    /// closing): `GreenletExit` thrown in at its park, with its identity, its state and
    /// its park in place, so its `finally` blocks and `with` exits run as itself
    /// (`get_ident()`, `threading.local`, `current_thread()` are its own). A virtual
    /// thread that parks again while unwinding is dropped there (greenlet kills it).
    fn unwind(&mut self, py: Python<'_>) {
        let Some(greenlet) = self.greenlet.take() else {
            return;
        };
        frames::untrack(py, self.ident);
        let Ok(hub) = greenlet::current(py) else {
            greenlet.drop_ref(py);
            return;
        };
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(Running {
                hub: hub.unbind(),
                greenlet: greenlet.as_ptr(),
                wait: None,
                finished: None,
                may_idle: false,
                intercept: self.intercept,
                ident: self.ident,
                state: self.state.take(),
            })
        });
        // What the virtual thread raises while unwinding is its own business: it was
        // being stopped.
        let _ = greenlet.bind(py).call_method0(intern!(py, "throw"));
        if let Some(slot) = CURRENT.with(|c| c.borrow_mut().take()) {
            slot.hub.drop_ref(py);
            for object in [slot.state, slot.finished.and_then(Result::ok)]
                .into_iter()
                .flatten()
            {
                object.drop_ref(py);
            }
        }
        greenlet.drop_ref(py);
    }
}

impl Drop for VThread {
    /// A virtual thread dropped unfinished (runtime shut down) is unwound as itself
    /// (`unwind`), then fails its call, so no caller waits forever. At interpreter
    /// exit it is leaked as it stands instead, as a daemon thread is.
    fn drop(&mut self) {
        self.set_parked(false);
        if self.sink.is_none()
            && self.greenlet.is_none()
            && self.call.is_none()
            && self.state.is_none()
            && self.running_loop.is_none()
        {
            return;
        }
        if EXITING.load(Ordering::Acquire) {
            for object in [
                self.greenlet.take(),
                self.state.take(),
                self.running_loop.take(),
            ]
            .into_iter()
            .flatten()
            {
                std::mem::forget(object);
            }
            if let Some(sink) = self.sink.take() {
                std::mem::forget(sink);
            }
            if let Some(call) = self.call.take() {
                std::mem::forget(call);
            }
            return;
        }
        with_gil(|py| {
            self.unwind(py);
            if self.sink.is_some() {
                let err = pyo3::exceptions::PyRuntimeError::new_err(
                    "the ringloom runtime shut down before this virtual thread finished",
                );
                self.deliver(py, Err(err));
            }
            self.call = None;
            self.state = None;
            self.running_loop = None;
        });
    }
}
