//! `Loom`: a ringloom runtime whose workers run virtual threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use ringloom::Runtime;

use crate::batch::{Batch, Sink};
use crate::hub;
use crate::stats::Counters;
use crate::submitted::{StartSubmitted, Submitted};
use crate::vthread::Unstarted;
use crate::watchdog::Watch;
use crate::window::{StartWindow, Window};

/// Owns the runtime. Its workers are attached to the interpreter for their whole life
/// (attaching per greenlet switch destroys the thread state a parked greenlet needs, and
/// the next switch segfaults) but hold the GIL only while they run Python: each poll of
/// a worker's hub takes it (`gil::with_gil`) and gives it back.
///
/// Holding the GIL for the whole worker loop and releasing it only around the ring wait
/// (`wrap_park`) was tried first: it works while running, but the runtime's shutdown
/// makes each worker wait for the others *outside* the park hook, GIL held, while the
/// others need the GIL to get there: every close took the full 10 s shutdown timeout.
#[pyclass(module = "ringloom._native", weakref)]
pub(crate) struct Loom {
    runtime: Arc<RuntimeSlot>,
    workers: usize,
    counters: Arc<Counters>,
    /// The workers' clocks, for the watchdog.
    watch: Arc<Watch>,
    /// The worker the next batch's first chunk, or the next extra starter of submitted
    /// calls, is queued on.
    next_worker: AtomicUsize,
    /// Virtual threads started from OS threads go to one worker, which wakes no other
    /// for them (see `new`).
    pack: bool,
    /// Seeded scheduling is on (`RINGLOOM_SCHED_SEED`): a batch goes out as one chunk
    /// per worker (see `spawn_batch`), and a call from an OS thread as a task of its own
    /// (how a queue's calls split among its starters depends on timing a seed cannot
    /// replay).
    seeded: bool,
}

#[pymethods]
impl Loom {
    #[new]
    /// `pack`: a virtual thread started from an OS thread (not a virtual thread) goes
    /// to the first worker, and wakes no other worker to take it; without it, such
    /// threads are spread over the workers in turn. Threads that take turns with one
    /// lock or queue then share a worker and hand the GIL over with a switch instead of
    /// an OS thread wake-up; an idle worker that is awake still takes starts it finds
    /// waiting, and threads started from virtual threads spread as before.
    #[pyo3(signature = (workers = 2, pack = false))]
    fn new(py: Python<'_>, workers: usize, pack: bool) -> PyResult<Loom> {
        if workers == 0 {
            return Err(PyValueError::new_err("workers must be at least 1"));
        }
        // Virtual threads start and end by the thousand: their frame stacks come from a
        // pool (see `arena.rs`).
        crate::arena::install(py);
        let watch = Arc::new(Watch::default());
        let worker_watch = watch.clone();
        let mut builder = Runtime::builder();
        builder
            .workers(workers)
            .thread_name("ringloom-vt")
            .wrap_worker(move |run| {
                let run = RunFn(run);
                // SAFETY: a plain query of the calling thread, valid with or without the GIL.
                let ident = unsafe { pyo3::ffi::PyThread_get_thread_ident() } as u64;
                worker_watch.register(ident);
                Python::attach(|py| py.detach(|| (run.into_inner())()));
                worker_watch.unregister();
            });
        // No `wrap_park`: the workers hold no GIL when they park.
        // The workers attach as they start, and `build` waits for them: not with the GIL.
        let runtime = py
            .detach(|| builder.build())
            .map_err(|err| PyRuntimeError::new_err(format!("ringloom runtime: {err}")))?;
        let counters = Arc::<Counters>::default();
        let submitted = Arc::new(Submitted::new(counters.clone(), workers));
        let runtime = Arc::new(Mutex::new(Some(Running { runtime, submitted })));
        let mut live = LIVE.lock().unwrap();
        live.retain(|slot| slot.strong_count() > 0);
        live.push(Arc::downgrade(&runtime));
        drop(live);
        Ok(Loom {
            runtime,
            workers,
            counters,
            watch,
            next_worker: AtomicUsize::new(0),
            pack,
            // `build` refused an invalid value already.
            seeded: matches!(ringloom::shuffle::seed_from_env(), Ok(Some(_))),
        })
    }

    /// Starts `func()` in a new virtual thread; its return value or exception goes to
    /// `future` (a `concurrent.futures.Future`). With `intercept=False` the thread's
    /// blocking calls are not turned into parks by the interception layer
    /// (`intercepting()` is False in it). `priority` (0..=255, lower first) orders it
    /// among the ready virtual threads of its worker (`hub.rs`). `args`: positional
    /// arguments for `func` (saves the caller a `functools.partial` per call). Returns
    /// the virtual thread's identity (`get_ident()` inside it).
    #[pyo3(signature = (func, future, intercept = true, priority = 128, args = None))]
    fn spawn(
        &self,
        func: Bound<'_, PyAny>,
        future: Bound<'_, PyAny>,
        intercept: bool,
        priority: i64,
        args: Option<Bound<'_, PyTuple>>,
    ) -> PyResult<u64> {
        if !func.is_callable() {
            return Err(PyTypeError::new_err("func must be callable"));
        }
        let priority = check_priority(priority)?;
        let guard = self.runtime.lock().unwrap();
        let runtime = guard
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the Loom is closed"))?;
        let args = args.unwrap_or_else(|| PyTuple::empty(func.py())).unbind();
        let unstarted = Unstarted::new(
            func.unbind(),
            args,
            Sink::Future(future.unbind()),
            intercept,
            priority,
            self.counters.clone(),
        );
        let ident = unstarted.ident();
        let from_os_thread = !runtime.is_worker_thread();
        if from_os_thread && !self.pack && !self.seeded {
            // Queued for a starter, which may go to any worker; the hub of the worker
            // it runs on creates the greenlet, and the thread stays there.
            if let Some(others) = runtime.submitted.push(unstarted) {
                let starter = StartSubmitted(runtime.submitted.clone());
                if others == 0 {
                    // Through the injector, which wakes a parked worker: a worker held by
                    // a call that does not park must not keep the queue waiting.
                    drop(runtime.spawn(starter));
                } else {
                    // Straight to another worker, woken for it (an idle one steals it
                    // from a worker that is held).
                    let worker = self.next_worker.fetch_add(1, Ordering::Relaxed);
                    drop(runtime.spawn_on(worker, starter));
                }
            }
            return Ok(ident);
        }
        // A Send starter, so a virtual thread not yet started may go to any worker.
        let start = async move { hub::adopt(unstarted) };
        if self.pack && from_os_thread {
            drop(runtime.spawn_packed_on(0, start));
        } else {
            drop(runtime.spawn(start));
        }
        Ok(ident)
    }

    /// Starts `func(*args)` in a new virtual thread for each tuple of `calls`; call `i`'s
    /// outcome goes to place `i` of `batch` (see `Batch`). The calls go out in chunks,
    /// one starter task each, so the workers share them without a task per call.
    /// With `window`, at most that many run at once: the rest start, in order, as
    /// earlier ones end (see `window.rs`).
    #[pyo3(signature = (func, calls, batch, intercept = true, priority = 128, window = None))]
    #[allow(clippy::too_many_arguments)]
    fn spawn_batch(
        &self,
        func: Bound<'_, PyAny>,
        calls: Bound<'_, PyList>,
        batch: Bound<'_, Batch>,
        intercept: bool,
        priority: i64,
        window: Option<usize>,
    ) -> PyResult<()> {
        if !func.is_callable() {
            return Err(PyTypeError::new_err("func must be callable"));
        }
        let priority = check_priority(priority)?;
        let mut args = Vec::with_capacity(calls.len());
        for call in calls.iter() {
            args.push(call.cast_into::<PyTuple>()?.unbind());
        }
        let guard = self.runtime.lock().unwrap();
        let runtime = guard
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the Loom is closed"))?;
        if window == Some(0) {
            return Err(PyValueError::new_err("window must be at least 1"));
        }
        if batch.get().has_window() {
            return Err(PyRuntimeError::new_err("this batch was spawned already"));
        }
        let mut unstarted: VecDeque<Unstarted> = args
            .into_iter()
            .enumerate()
            .map(|(index, args)| {
                let sink = Sink::Batch {
                    batch: batch.clone().unbind(),
                    index,
                };
                let func = func.clone().unbind();
                Unstarted::new(func, args, sink, intercept, priority, self.counters.clone())
            })
            .collect();
        let calls = unstarted.len();
        let backlog = match window {
            Some(limit) if limit < calls => unstarted.split_off(limit),
            _ => VecDeque::new(),
        };
        let window = (!backlog.is_empty()).then(|| Arc::new(Window::new(unstarted.len(), backlog)));
        batch.get().expect(calls);
        if let Some(window) = &window {
            batch.get().set_window(window.clone());
        }
        // Enough chunks that every worker gets several, few enough that a starter task
        // carries a good number of calls. Seeded, one chunk per worker: a worker that
        // starts calls while this thread still queues chunks would make the order depend
        // on that race, and a seed must replay it.
        let chunk = if self.seeded {
            unstarted.len().div_ceil(self.workers).max(1)
        } else {
            unstarted.len().div_ceil(self.workers * 8).clamp(1, 256)
        };
        // Chunk `i` is queued on worker `first + i`: a batch is spread over the workers
        // from the start, whichever of them wakes first (see `hub::StartBatch` for the
        // spreading that stealing does later).
        let first = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let mut worker = first;
        while !unstarted.is_empty() {
            // From the front: each chunk moves only its own calls.
            let calls: Vec<Unstarted> = unstarted.drain(..chunk.min(unstarted.len())).collect();
            drop(runtime.spawn_on(worker, hub::StartBatch::new(calls)));
            worker = worker.wrapping_add(1);
        }
        if let Some(window) = window {
            for worker in 0..self.workers {
                let starter = StartWindow::new(window.clone());
                drop(runtime.spawn_on(first.wrapping_add(worker), starter));
            }
        }
        Ok(())
    }

    /// `(thread_ident, episode, seconds)` for each worker running a virtual thread now:
    /// its thread ident (`threading.get_ident()`), a number naming this one switch into
    /// the virtual thread (the same until it parks, yields or ends), and how long it has
    /// run since that switch. For the watchdog (`ringloom.watchdog`); empty once closed.
    fn holding(&self) -> Vec<(u64, u64, f64)> {
        self.watch.holding()
    }

    #[getter]
    fn workers(&self) -> usize {
        self.workers
    }

    /// A snapshot of counters: the virtual threads' (`started`, `finished`, `parked`
    /// now, `parks` in all) and the runtime's (`driver`, `polls`, `tasks_stolen`,
    /// `ops_submitted`, `ops_completed`, `ring_enters`, `blocking_threads`). After
    /// `close` the runtime's are gone and `driver` is `"closed"`. `frame_chunk_regions`,
    /// `frame_chunks_in_use`, `frame_chunks_cached` (free, pages kept) and
    /// `frame_chunks_peak` (most in use at once): the process's pool of frame stacks
    /// (`arena.rs`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        let c = &self.counters;
        dict.set_item("workers", self.workers)?;
        dict.set_item("started", Counters::get(&c.started))?;
        dict.set_item("finished", Counters::get(&c.finished))?;
        dict.set_item(
            "parked",
            c.parked.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        dict.set_item("parks", Counters::get(&c.parks))?;
        let chunks = crate::arena::stats();
        dict.set_item("frame_chunk_regions", chunks.regions)?;
        dict.set_item("frame_chunks_in_use", chunks.chunks_in_use)?;
        dict.set_item("frame_chunks_cached", chunks.chunks_cached)?;
        dict.set_item("frame_chunks_peak", chunks.chunks_peak)?;
        // Read under the slot's lock, written into the dict after it: an allocation may
        // run the cyclic GC and finalizers, which may let go of the GIL.
        let stats = self.runtime.lock().unwrap().as_ref().map(|r| r.stats());
        match stats {
            Some(stats) => {
                let total = stats.total();
                dict.set_item("driver", stats.driver_name())?;
                dict.set_item("polls", total.polls)?;
                dict.set_item("tasks_stolen", total.tasks_stolen)?;
                dict.set_item("tasks_live", total.tasks_live)?;
                dict.set_item("ops_submitted", total.ops_submitted)?;
                dict.set_item("ops_completed", total.ops_completed)?;
                dict.set_item("ring_enters", total.ring_enters)?;
                dict.set_item("blocking_threads", stats.blocking_threads)?;
            }
            None => dict.set_item("driver", "closed")?,
        }
        Ok(dict)
    }

    /// Stops the workers; unfinished virtual threads fail their futures. RuntimeError
    /// on one of the Loom's own workers (in a virtual thread, or a future's done callback,
    /// which runs there): it would wait for its own thread to stop.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let runtime = {
            let mut slot = self.runtime.lock().unwrap();
            if slot.as_ref().is_some_and(|r| r.is_worker_thread()) {
                return Err(PyRuntimeError::new_err(
                    "Loom.close() on one of the Loom's own workers (a virtual thread, or a \
                     done callback running there) would wait for itself: close it from \
                     another thread",
                ));
            }
            slot.take()
        };
        if let Some(running) = runtime {
            running.shut_down(py);
        }
        Ok(())
    }

    /// Whether the caller runs on one of this Loom's workers (a virtual thread, or a
    /// callback run there), where `close` is refused.
    fn on_worker(&self) -> bool {
        self.runtime
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|r| r.is_worker_thread())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _ty: Bound<'_, PyAny>,
        _value: Bound<'_, PyAny>,
        _tb: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.close(py)
    }
}

fn check_priority(priority: i64) -> PyResult<u8> {
    u8::try_from(priority)
        .map_err(|_| PyValueError::new_err(format!("priority must be in 0..255, got {priority}")))
}

/// A `Loom`'s runtime, and the calls from OS threads queued for its starters: they go
/// together (a closed runtime starts nothing; a forked child forgets both).
struct Running {
    runtime: Runtime,
    submitted: Arc<Submitted>,
}

impl std::ops::Deref for Running {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        &self.runtime
    }
}

impl Running {
    /// Stops the workers (they need the GIL to finish their turn and drop their tasks,
    /// so the caller's is let go meanwhile), then fails the calls no starter took.
    fn shut_down(self, py: Python<'_>) {
        shut_down_all(py, vec![self]);
    }
}

fn shut_down_all(py: Python<'_>, running: Vec<Running>) {
    let (runtimes, queues): (Vec<Runtime>, Vec<Arc<Submitted>>) = running
        .into_iter()
        .map(|r| (r.runtime, r.submitted))
        .unzip();
    py.detach(|| drop(runtimes));
    // Each call's drop fails its future, with the GIL.
    for queue in queues {
        drop(queue.take_all());
    }
}

/// Where a `Loom` keeps its runtime; `None` once closed.
type RuntimeSlot = Mutex<Option<Running>>;

/// Every open `Loom`'s runtime, for [`close_all`].
static LIVE: Mutex<Vec<Weak<RuntimeSlot>>> = Mutex::new(Vec::new());

/// Closes every `Loom` still open; registered with `atexit`. A runtime dropped during
/// interpreter finalization would wait its whole shutdown timeout (10 s) for workers
/// that can no longer take the GIL.
#[pyfunction]
pub(crate) fn close_all(py: Python<'_>) {
    // Virtual threads still running now are left as they stand, as daemon threads are:
    // unwinding them would run their code (and report their `GreenletExit`) while the
    // interpreter is on its way out.
    crate::vthread::leave_at_exit();
    let slots: Vec<Arc<RuntimeSlot>> = std::mem::take(&mut *LIVE.lock().unwrap())
        .into_iter()
        .filter_map(|slot| slot.upgrade())
        .collect();
    let running: Vec<Running> = slots
        .iter()
        .filter_map(|slot| slot.lock().unwrap().take())
        .collect();
    shut_down_all(py, running);
}

/// In the child of an `os.fork()`: takes every open `Loom`'s runtime out of its slot and
/// leaks it; returns how many. Registered by `ringloom._fork` with
/// `os.register_at_fork(after_in_child=...)`. A `Loom` left without its runtime acts
/// closed (`spawn` raises RuntimeError, `close` and drop do nothing).
///
/// Why leaking is right: `fork` copies the calling thread only, so the child holds each
/// runtime's memory but none of its workers or blocking-pool threads. Dropping one
/// would signal workers that do not exist through eventfds the parent's workers still
/// use, wait the whole shutdown timeout for them to exit, then drop their tasks (and
/// with them greenlets whose OS threads are gone). Its io_uring rings are `MAP_SHARED`
/// mappings: whatever the child wrote into them (a cancellation on drop, say) would land
/// in the parent's rings. Its mutexes may have been held by a worker at the
/// instant of the fork and stay locked in the child. Forgetting touches none of it: the
/// memory is the child's copy-on-write image of the parent's, returned at exit with
/// the rest, and the inherited descriptors close at exit too.
///
/// `LIVE` and the slots are only locked by code that holds the GIL and lets go before
/// releasing it, and `os.fork` runs holding the GIL, so no other thread held them at
/// the fork; `try_lock` keeps even a broken promise of that from hanging the child (that
/// runtime then stays in its slot).
#[pyfunction]
pub(crate) fn forget_after_fork() -> usize {
    use std::sync::TryLockError;

    crate::frames::forget_after_fork();
    crate::waiter::after_fork();
    let slots = match LIVE.try_lock() {
        Ok(mut live) => std::mem::take(&mut *live),
        Err(TryLockError::Poisoned(poisoned)) => std::mem::take(&mut *poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => return 0,
    };
    let mut forgotten = 0;
    for slot in slots.iter().filter_map(Weak::upgrade) {
        let runtime = match slot.try_lock() {
            Ok(mut runtime) => runtime.take(),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(runtime) = runtime {
            std::mem::forget(runtime);
            forgotten += 1;
        }
    }
    forgotten
}

/// The runtime's worker closure, carried into `Python::detach`.
///
/// `detach` wants its closure `Send` (its stand-in for "holds nothing that needs the
/// GIL"), and the runtime hands over a `&mut dyn FnMut()`, which is not.
struct RunFn<'a>(&'a mut dyn FnMut());

// SAFETY: `detach` runs the closure on the calling thread, so nothing crosses threads.
// The worker body runs without the GIL; every place in it that touches a Python object
// (a hub's poll and drop, a starter's drop, a virtual thread's drop) takes the GIL first
// through `gil::with_gil`, no GIL-bound reference is created outside those places, and
// what the runtime owns that holds Python objects (a blocking call's job and result)
// is wrapped in `gil::GilDrop`, which takes the GIL to let go of them.
unsafe impl Send for RunFn<'_> {}

impl<'a> RunFn<'a> {
    /// Taking `self` makes a closure capture the whole wrapper (which is `Send`), not
    /// just its field (edition 2021 captures disjoint fields).
    fn into_inner(self) -> &'a mut dyn FnMut() {
        self.0
    }
}

impl Drop for Loom {
    fn drop(&mut self) {
        let running = self.runtime.lock().unwrap().take();
        if let Some(running) = running {
            Python::attach(|py| running.shut_down(py));
        }
    }
}
