//! The driver: one per worker thread (and one per `block_on` caller). It owns the ring,
//! the table of in-flight ops, the timers, and the means to be woken from other threads.
//!
//! The driver is usable on its own, without the scheduler: create one with
//! [`Driver::new`], [`Driver::enter`] it on the current thread, submit ops, and call
//! [`Driver::turn`] to submit and reap. The scheduler is just its most common user.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;

use crate::blocking::BlockingPool;
use crate::group_refs::Stock;
use op::{OpCode, Submitted};

mod enter;
mod fallback;
mod faults;
mod inflight;
pub(crate) mod op;
mod probe;
mod refs;
mod timers;
mod unpark;
mod uring;

use crate::table_lock::TableLock;
#[cfg(feature = "fault-injection")]
pub use faults::FaultPlan;
pub use inflight::Completion;
pub(crate) use inflight::{Discard, InFlightTable, Lifecycle};
pub use probe::{DriverKind, RingFeatures};
pub(crate) use refs::DriverRef;
pub(crate) use timers::{TimerKey, TimerQueue};
pub(crate) use unpark::Unpark;

/// Requests for a driver from other threads; its own thread carries them out.
pub(crate) enum Remote {
    /// Cancel the op with this user_data (its future was dropped on another thread).
    Cancel(u64),
    /// A fallback syscall finished on the blocking pool.
    Complete(u64, Completion),
}

/// Counters one driver keeps; read at any time from any thread.
#[derive(Default, Debug)]
pub struct DriverCounters {
    // Written by the driver's own thread only (see `count`), read from anywhere.
    pub ops_submitted: AtomicU64,
    pub ops_completed: AtomicU64,
    pub ring_enters: AtomicU64,
    pub parks: AtomicU64,
}

/// Adds `n` to a counter only its driver's thread writes: a plain load and store, not an
/// atomic read-modify-write per op.
fn count(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// The part of a driver other threads may touch: the in-flight table (to poll or drop an
/// op from a task that moved to another worker), timers, and the wake-up path.
pub struct DriverShared {
    pub(crate) ops: TableLock<InFlightTable>,
    pub(crate) timers: TableLock<TimerQueue>,
    pub(crate) remote: SegQueue<Remote>,
    pub(crate) unpark: Unpark,
    pub(crate) counters: DriverCounters,
    owner: ThreadId,
    kind: DriverKind,
    /// References of ops in flight, registered sleeps and the driver's own stock (see
    /// `refs.rs`); while nonzero they hold one `Arc` of this between them.
    refs: AtomicUsize,
}

impl DriverShared {
    /// Cancels an op from whichever thread holds its future.
    pub(crate) fn cancel(&self, user_data: u64) {
        if std::thread::current().id() == self.owner {
            let done = CURRENT.with(|current| match current.try_borrow_mut() {
                Ok(mut current) => match current.as_mut() {
                    Some(driver) if std::ptr::eq(Arc::as_ptr(&driver.shared), self) => {
                        driver.cancel(user_data);
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            });
            if done {
                return;
            }
        }
        self.remote.push(Remote::Cancel(user_data));
        self.unpark.unpark();
    }

    /// Wakes this driver's thread if it is parked; costs nothing if it is awake.
    pub fn unpark(&self) {
        self.unpark.unpark();
    }

    pub fn kind(&self) -> DriverKind {
        self.kind
    }

    pub fn counters(&self) -> &DriverCounters {
        &self.counters
    }
}

// One per thread, moved once into its thread-local: a box would only add a hop.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Uring(uring::UringBackend),
    Fallback(fallback::FallbackBackend),
}

/// Driver settings, from the runtime builder.
#[derive(Clone)]
pub struct DriverConfig {
    pub ring_entries: u32,
    pub force_fallback: bool,
    pub blocking: BlockingPool,
    /// Faults to inject (tests only: the `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    pub faults: Option<FaultPlan>,
}

/// A thread's driver. Not `Send`: it lives on the thread that created it.
pub struct Driver {
    shared: Arc<DriverShared>,
    backend: Backend,
    wakers: Vec<Waker>,
    /// Wakers to wake at the end of the next turn (see [`defer`]).
    deferred: Vec<Waker>,
    discards: Vec<(Box<dyn Discard>, Completion)>,
    /// One turn's reaped completions (empty between turns).
    completions: Vec<(u64, Completion)>,
    faults: faults::Faults,
    /// References to `shared` held for this thread's ops and sleeps (see `refs.rs`).
    ref_stock: Stock,
}

thread_local! {
    static CURRENT: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

/// Wakes `waker` at the end of this thread's next driver turn, once what is queued is
/// submitted, completions are reaped and due timers fired. A task that has run long and
/// yields this way lets I/O in before it runs again: waking itself at once would put it
/// back in the same batch of the worker's loop, and a busy worker would not look at its
/// ring for as long as such tasks keep yielding. Outside a thread with a driver (or
/// inside its turn), it wakes `waker` at once.
pub fn defer(waker: &Waker) {
    let deferred = CURRENT
        .try_with(|current| match current.try_borrow_mut() {
            Ok(mut current) => match current.as_mut() {
                Some(driver) => {
                    driver.deferred.push(waker.clone());
                    true
                }
                None => false,
            },
            Err(_) => false,
        })
        .unwrap_or(false);
    if !deferred {
        waker.wake_by_ref();
    }
}

/// Whether the environment asks for the fallback driver (`RINGLOOM_DRIVER=fallback`).
pub fn fallback_forced_by_env() -> bool {
    matches!(
        std::env::var("RINGLOOM_DRIVER").as_deref(),
        Ok("fallback") | Ok("epoll")
    )
}

static ANNOUNCED: OnceLock<()> = OnceLock::new();

impl Driver {
    /// Creates a driver for the calling thread: io_uring with the best setup flags the
    /// kernel accepts, or the fallback driver if io_uring is unavailable or forced off.
    pub fn new(config: &DriverConfig) -> io::Result<Driver> {
        if config.ring_entries == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring_entries must be at least 1",
            ));
        }
        let unpark = Unpark::new()?;
        let faults = faults::Faults::new(config);
        let (backend, kind, why) = if config.force_fallback {
            (
                None,
                DriverKind::Fallback,
                "forced by configuration".to_string(),
            )
        } else {
            match uring::UringBackend::new(config.ring_entries, unpark.fd(), faults.clone()) {
                Ok(ring) => {
                    let kind = DriverKind::Uring(ring.features());
                    (Some(Backend::Uring(ring)), kind, String::new())
                }
                Err(err) => (
                    None,
                    DriverKind::Fallback,
                    format!("io_uring unavailable: {err}"),
                ),
            }
        };
        let backend = match backend {
            Some(backend) => backend,
            None => Backend::Fallback(fallback::FallbackBackend::new(
                unpark.fd(),
                config.blocking.clone(),
                faults.clone(),
            )?),
        };
        ANNOUNCED.get_or_init(|| match &kind {
            DriverKind::Uring(features) => log::info!("ringloom: io_uring driver ({features})"),
            DriverKind::Fallback => {
                log::warn!("ringloom: fallback driver (epoll + blocking pool), {why}")
            }
        });
        Ok(Driver {
            shared: Arc::new(DriverShared {
                ops: TableLock::default(),
                timers: TableLock::default(),
                remote: SegQueue::new(),
                unpark,
                counters: DriverCounters::default(),
                owner: std::thread::current().id(),
                kind,
                refs: AtomicUsize::new(0),
            }),
            backend,
            wakers: Vec::new(),
            deferred: Vec::new(),
            discards: Vec::new(),
            completions: Vec::new(),
            faults,
            ref_stock: Stock::EMPTY,
        })
    }

    pub fn is_fallback(&self) -> bool {
        matches!(self.backend, Backend::Fallback(_))
    }

    pub fn shared(&self) -> &Arc<DriverShared> {
        &self.shared
    }

    /// Makes this driver the current thread's: ops submitted on this thread go to it.
    /// Returns the driver that was current before, if any.
    pub fn enter(self) -> Option<Driver> {
        CURRENT.with(|current| current.borrow_mut().replace(self))
    }

    /// Takes the current thread's driver back out.
    pub fn exit() -> Option<Driver> {
        CURRENT.with(|current| current.borrow_mut().take())
    }

    fn submit_op<T: OpCode>(&mut self, data: &mut T) -> io::Result<Submitted> {
        count(&self.shared.counters.ops_submitted, 1);
        let fault = self.faults.fail_op::<T>();
        match &mut self.backend {
            Backend::Uring(ring) => {
                let entry = match fault {
                    // The op's data stays in the table until the NOP completes, as
                    // its own entry's would.
                    Some(_) => io_uring::opcode::Nop::new().build(),
                    None => data.uring_entry(),
                };
                let user_data = self.shared.ops.lock().insert(Lifecycle::Submitted);
                if let Err(err) = ring.push(entry.user_data(user_data)) {
                    self.shared.ops.lock().remove(user_data);
                    return Err(err);
                }
                if let Some(errno) = fault {
                    self.faults.mark(user_data, errno);
                }
                Ok(Submitted::InFlight {
                    driver: DriverRef::from_stock(self),
                    user_data,
                })
            }
            Backend::Fallback(fallback) => {
                let submitted = match fault {
                    Some(errno) => Ok(Submitted::Done(Completion {
                        result: -errno,
                        flags: 0,
                    })),
                    None => fallback.submit(&self.shared, data.fallback()),
                };
                if let Ok(Submitted::Done(_)) = submitted {
                    // Finished on the spot; it still counts as a completion.
                    count(&self.shared.counters.ops_completed, 1);
                }
                submitted
            }
        }
    }

    fn cancel(&mut self, user_data: u64) {
        match &mut self.backend {
            Backend::Uring(ring) => ring.cancel(user_data),
            Backend::Fallback(fallback) => fallback.cancel(&self.shared, user_data),
        }
    }

    /// One turn: carry out requests from other threads, submit what is queued, reap
    /// completions and fire due timers, waking their tasks. With `wait`, block until at
    /// least one event arrives (a completion, a wake-up, a timer) or `wait`'s timeout
    /// passes. Returns how many tasks it woke.
    pub fn turn(&mut self, wait: Option<Option<Duration>>) -> io::Result<usize> {
        // `is_empty` first: an empty queue's `pop` costs a full fence, twice a turn.
        while let Some(request) = self.take_remote() {
            match request {
                Remote::Cancel(user_data) => self.cancel(user_data),
                Remote::Complete(user_data, completion) => self.complete(user_data, completion),
            }
        }
        // Completions taken from the remote queue above have tasks to wake: blocking
        // now would sit on them until something else happened.
        let wait = if self.wakers.is_empty() && self.discards.is_empty() && self.deferred.is_empty()
        {
            wait.map(|timeout| self.bound_by_timers(timeout))
        } else {
            wait.map(|_| Some(Duration::ZERO))
        };
        if wait.is_some() {
            count(&self.shared.counters.parks, 1);
        }
        // Kept across turns to reuse its allocation.
        let mut completions = std::mem::take(&mut self.completions);
        let entered = match &mut self.backend {
            Backend::Uring(ring) => ring.submit_and_reap(wait, &mut completions)?,
            Backend::Fallback(fallback) => fallback.wait_and_reap(wait, &mut completions)?,
        };
        if entered {
            count(&self.shared.counters.ring_enters, 1);
        }
        // Blocking-pool completions may have arrived while we waited.
        while let Some(request) = self.take_remote() {
            match request {
                Remote::Cancel(user_data) => self.cancel(user_data),
                Remote::Complete(user_data, completion) => {
                    completions.push((user_data, completion))
                }
            }
        }
        self.complete_all(&mut completions);
        self.completions = completions;
        self.fire_timers();
        // After what the ring and the timers woke: a task that deferred its wake-up runs
        // behind them.
        self.wakers.append(&mut self.deferred);
        Ok(self.wake_all())
    }

    /// The next request from another thread. A request pushed while this runs is taken
    /// at the next turn: before parking, a worker checks again after a fence (see
    /// `Unpark`), and the pusher wakes a parked driver.
    fn take_remote(&self) -> Option<Remote> {
        if self.shared.remote.is_empty() {
            return None;
        }
        self.shared.remote.pop()
    }

    fn bound_by_timers(&self, timeout: Option<Duration>) -> Option<Duration> {
        let next = self.shared.timers.lock().next_deadline();
        let until_timer = next.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match (timeout, until_timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records a batch of completions under one lock of the in-flight table.
    fn complete_all(&mut self, completions: &mut Vec<(u64, Completion)>) {
        if completions.is_empty() {
            return;
        }
        count(
            &self.shared.counters.ops_completed,
            completions.len() as u64,
        );
        let mut ops = self.shared.ops.lock();
        for (user_data, mut completion) in completions.drain(..) {
            if let Some(errno) = self.faults.take(user_data) {
                completion.result = -errno;
            }
            let (waker, discard) = ops.complete(user_data, completion);
            if let Some(waker) = waker {
                self.wakers.push(waker);
            }
            if let Some(discard) = discard {
                self.discards.push((discard, completion));
            }
        }
    }

    fn complete(&mut self, user_data: u64, mut completion: Completion) {
        count(&self.shared.counters.ops_completed, 1);
        if let Some(errno) = self.faults.take(user_data) {
            completion.result = -errno;
        }
        let (waker, discard) = self.shared.ops.lock().complete(user_data, completion);
        if let Some(waker) = waker {
            self.wakers.push(waker);
        }
        if let Some(discard) = discard {
            self.discards.push((discard, completion));
        }
    }

    fn fire_timers(&mut self) {
        let mut expired_ops = Vec::new();
        {
            let mut timers = self.shared.timers.lock();
            if timers.is_empty() {
                // No clock read on the hot path of a worker without timers.
                return;
            }
            timers.fire(Instant::now(), &mut self.wakers, &mut expired_ops);
        }
        for user_data in expired_ops {
            self.complete(
                user_data,
                Completion {
                    result: -libc::ETIME,
                    flags: 0,
                },
            );
        }
    }

    fn wake_all(&mut self) -> usize {
        // Outside every lock: dropping discarded op data and waking tasks may run
        // arbitrary code.
        for (discard, completion) in self.discards.drain(..) {
            discard.discard(completion);
        }
        let woken = self.wakers.len();
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
        woken
    }

    /// Ops submitted on this driver whose completion has not been reaped.
    pub fn in_flight(&self) -> usize {
        self.shared.ops.lock().len()
    }

    /// Cancels every op still in flight and reaps until they have all completed, or
    /// until `limit` passes; whatever is still in the kernel's hands then is leaked
    /// rather than freed.
    pub fn drain(&mut self, limit: Duration) {
        self.drain_until(limit);
        // No completion is reaped after this: ops that have none yet leak their data.
        self.shared.ops.lock().close();
    }

    fn drain_until(&mut self, limit: Duration) {
        let pending = self.shared.ops.lock().pending();
        for user_data in pending {
            self.cancel(user_data);
        }
        let deadline = Instant::now() + limit;
        loop {
            let pending = self.shared.ops.lock().pending();
            if pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                log::warn!(
                    "ringloom: {} ops still in flight at shutdown; leaking their buffers",
                    pending.len()
                );
                self.shared.ops.lock().leak_ignored();
                break;
            }
            if self.turn(Some(Some(deadline - now))).is_err() {
                self.shared.ops.lock().leak_ignored();
                break;
            }
        }
    }
}

/// Submits an op on the current thread's driver.
pub(crate) fn submit<T: OpCode>(data: &mut T) -> io::Result<Submitted> {
    CURRENT.with(|current| match current.try_borrow_mut() {
        Ok(mut current) => match current.as_mut() {
            Some(driver) => driver.submit_op(data),
            None => Err(io::Error::other(
                "no ringloom driver on this thread: run this inside a ringloom runtime",
            )),
        },
        Err(_) => Err(io::Error::other(
            "ringloom driver is busy (re-entrant submit)",
        )),
    })
}

/// Hands the ops queued so far on this thread's ring to the kernel now, instead of at
/// the worker's next turn; nothing under the fallback driver, or outside a runtime.
///
/// For an op that names a descriptor it only borrows (`OpFd::borrowed`): the kernel
/// resolves the number when it takes the entry, so submitting at once leaves no longer
/// a window for the number to be closed and reused than a plain syscall would.
pub fn submit_now() -> io::Result<()> {
    with_current(|driver| match &mut driver.backend {
        Backend::Uring(ring) => {
            if ring.submit_now()? {
                count(&driver.shared.counters.ring_enters, 1);
            }
            Ok(())
        }
        Backend::Fallback(_) => Ok(()),
    })
    .unwrap_or(Ok(()))
}

/// Runs `f` with the current thread's driver, if it has one.
pub(crate) fn with_current<R>(f: impl FnOnce(&mut Driver) -> R) -> Option<R> {
    CURRENT.with(|current| current.try_borrow_mut().ok()?.as_mut().map(f))
}

/// The current thread's driver's shared half, if it has one.
pub fn current_shared() -> Option<Arc<DriverShared>> {
    with_current(|driver| driver.shared.clone())
}

/// The kind of the current thread's driver, if it has one (no reference taken).
pub fn current_kind() -> Option<DriverKind> {
    with_current(|driver| driver.shared.kind())
}

/// A reference to the current thread's driver (from its stock), if it has one.
pub(crate) fn current_ref() -> Option<DriverRef> {
    with_current(DriverRef::from_stock)
}

/// What the driver's unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    pub(crate) struct Count(pub(crate) AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
