//! The hub: one task per worker (per `Loom`) that runs every virtual thread started on
//! that worker.
//!
//! A task per virtual thread cost a GIL take and release per resume, and the runtime's
//! scheduling per resume, and its run queue knows nothing of priorities. The hub takes
//! the GIL once per poll and switches into ready virtual threads one after another, the
//! lowest priority number first ([`ReadyQueue`]), for up to [`BUDGET`] rounds before it
//! yields so the worker reaps its ring and runs its other tasks.
//!
//! A parked virtual thread's wait is polled with a waker of its own. Wakers may fire on
//! any thread (a `Parker` unparked by an OS thread, a blocking-pool completion), so they
//! only note the virtual thread's key in [`Shared`] and wake the hub task; the hub polls
//! those waits again on its worker, and the completed ones make their threads ready.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use pyo3::prelude::*;

use crate::gil::with_gil;
use crate::greenlet;
use crate::ready::ReadyQueue;
use crate::stats::Counters;
use crate::vthread::{Idle, Step, Unstarted, VThread, Wait};

/// Rounds (a switch into a virtual thread, or a look at wake-ups that found none ready)
/// in one poll of the hub before it yields to the worker. Larger amortizes the GIL take
/// over more switches; smaller reaps the ring (completions, timers) more often.
const BUDGET: u32 = 128;

/// Places kept while no virtual thread is left: a burst's worth beyond this is given
/// back (about 100 bytes a place) rather than kept for the life of the `Loom`.
const KEEP_PLACES: usize = 1024;

thread_local! {
    /// The hubs of this worker: one per `Loom` that started virtual threads here (a
    /// worker belongs to one runtime, so in practice one). Weak: the hub task owns its
    /// inbox, and its virtual threads go with it when the runtime drops the task.
    static HUBS: RefCell<Vec<Weak<Inbox>>> = const { RefCell::new(Vec::new()) };
}

/// Calls a hub holds that it has not started yet, beyond which a batch's starter keeps
/// the rest: a call handed to a hub stays on its worker, while a starter waiting in a
/// run queue can be stolen by an idle worker. About one poll's worth ([`BUDGET`]).
pub(crate) const START_AHEAD: usize = 128;

/// Hands a virtual thread to this worker's hub of its `Loom`, creating the hub on
/// first use. Runs in the starter task, on the worker the virtual thread will stay on.
pub(crate) fn adopt(unstarted: Unstarted) {
    let inbox = inbox_for(unstarted.counters());
    inbox.arrivals.borrow_mut().push(unstarted.into_vthread());
    inbox.unstarted.set(inbox.unstarted.get() + 1);
    inbox.shared.note(None);
}

/// How many more calls this worker's hub of the `Loom` that `counters` names takes
/// before it holds [`START_AHEAD`] not started.
pub(crate) fn room(counters: &Arc<Counters>) -> usize {
    START_AHEAD.saturating_sub(inbox_for(counters).unstarted.get())
}

/// This worker's hub of the `Loom` that `counters` names, created on first use.
fn inbox_for(counters: &Arc<Counters>) -> Rc<Inbox> {
    HUBS.with(|hubs| {
        let mut hubs = hubs.borrow_mut();
        hubs.retain(|hub| hub.strong_count() > 0);
        let found = hubs
            .iter()
            .filter_map(Weak::upgrade)
            .find(|inbox| Arc::ptr_eq(&inbox.counters, counters));
        found.unwrap_or_else(|| {
            let inbox = Rc::new(Inbox {
                counters: counters.clone(),
                arrivals: RefCell::default(),
                unstarted: Cell::new(0),
                shared: Arc::default(),
            });
            hubs.push(Rc::downgrade(&inbox));
            drop(ringloom::spawn_local(Hub::new(inbox.clone())));
            inbox
        })
    })
}

/// The starter task of a chunk of a batch's calls (`Loom.spawn_batch`): it hands calls
/// to the hub of the worker it runs on while that hub has fewer than [`START_AHEAD`]
/// not started, and yields with the rest. Yielded, it waits in the worker's run queue,
/// where an idle worker steals it (the yield's wake-up wakes a parked one): a batch
/// spreads over the workers, and a worker held by long calls (work that releases the
/// GIL, such as hashing) does not keep calls that another could start.
pub(crate) struct StartBatch {
    calls: VecDeque<Unstarted>,
}

impl StartBatch {
    pub(crate) fn new(calls: Vec<Unstarted>) -> StartBatch {
        StartBatch {
            calls: calls.into(),
        }
    }
}

impl Future for StartBatch {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let calls = &mut self.get_mut().calls;
        let Some(inbox) = calls.front().map(|call| inbox_for(call.counters())) else {
            return Poll::Ready(());
        };
        while inbox.unstarted.get() < START_AHEAD {
            let Some(call) = calls.pop_front() else {
                return Poll::Ready(());
            };
            adopt(call);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// What a hub shares with its starters, on its worker.
struct Inbox {
    /// The `Loom`'s counters; the `Arc` also tells one `Loom`'s hub from another's.
    counters: Arc<Counters>,
    /// Virtual threads handed over since the hub last looked.
    arrivals: RefCell<Vec<VThread>>,
    /// Virtual threads handed over and not started yet (see [`StartBatch`]).
    unstarted: Cell<usize>,
    shared: Arc<Shared>,
}

/// What a hub shares with the wakers of its virtual threads, on any thread.
#[derive(Default)]
struct Shared {
    state: Mutex<Woken>,
}

#[derive(Default)]
struct Woken {
    /// Keys of the virtual threads whose waits were woken since the hub last looked.
    keys: Vec<usize>,
    /// The hub task's waker.
    hub: Option<Waker>,
    /// The hub is being polled or is due to be: a wake-up need not wake it again.
    scheduled: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Woken> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes a wake-up (of the virtual thread `key`, or `None` for an arrival) and
    /// wakes the hub unless it is scheduled already.
    fn note(&self, key: Option<usize>) {
        let waker = {
            let mut woken = self.lock();
            woken.keys.extend(key);
            if woken.scheduled {
                return;
            }
            woken.scheduled = true;
            woken.hub.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The start of a poll: the hub is scheduled until [`Self::idle`] says otherwise.
    fn enter(&self, waker: &Waker) {
        let mut woken = self.lock();
        woken.scheduled = true;
        if !woken.hub.as_ref().is_some_and(|hub| hub.will_wake(waker)) {
            woken.hub = Some(waker.clone());
        }
    }

    /// Moves the keys woken so far into `into` (empty).
    fn take(&self, into: &mut Vec<usize>) {
        std::mem::swap(&mut self.lock().keys, into);
    }

    /// The end of a poll with nothing left to run: unscheduled, unless wake-ups came
    /// in meanwhile (false: look again). Under the same lock as [`Self::note`], so a
    /// wake-up is either seen here or wakes the hub.
    fn idle(&self) -> bool {
        let mut woken = self.lock();
        if !woken.keys.is_empty() {
            return false;
        }
        woken.scheduled = false;
        true
    }
}

/// The waker of one virtual thread's waits.
struct ThreadWaker {
    key: usize,
    shared: Arc<Shared>,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.shared.note(Some(self.key));
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.note(Some(self.key));
    }
}

/// One place in the hub. Its waker is made once and serves every virtual thread that
/// ever takes the place: a late wake-up meant for an earlier one at most polls a wait
/// once more, which futures allow.
struct Place {
    /// Dropped before the virtual thread (the field order), as a thread's own drop did.
    wait: Option<Wait>,
    vthread: Option<VThread>,
    waker: Waker,
}

/// The task that runs one worker's virtual threads of one `Loom`.
struct Hub {
    inbox: Rc<Inbox>,
    places: Vec<Place>,
    /// Places whose virtual thread finished.
    free: Vec<usize>,
    /// Places with a virtual thread.
    live: usize,
    ready: ReadyQueue,
    /// Woken keys being looked at (kept to reuse its allocation).
    woken: Vec<usize>,
    /// Greenlets whose virtual thread finished, for the next ones to start here.
    idle: Idle,
}

/// How one poll's run ended.
enum Ran {
    /// Nothing is ready and no wake-up is pending.
    Idle,
    /// The budget is spent with work left.
    Spent,
}

/// This worker's hub's stream of seeded scheduling, if `RINGLOOM_SCHED_SEED` asks for
/// it (the runtime refused an invalid value already, when it was built).
fn seeded_order() -> Option<ringloom::shuffle::Shuffle> {
    let seed = ringloom::shuffle::seed_from_env().ok().flatten()?;
    let worker = ringloom::current_worker().unwrap_or(0) as u64;
    // Streams apart from the runtime's own (one per worker index).
    Some(ringloom::shuffle::Shuffle::new(seed, worker | 1 << 32))
}

impl Hub {
    fn new(inbox: Rc<Inbox>) -> Hub {
        Hub {
            inbox,
            places: Vec::new(),
            free: Vec::new(),
            live: 0,
            ready: ReadyQueue::new(seeded_order()),
            woken: Vec::new(),
            idle: Idle::default(),
        }
    }

    /// Runs ready virtual threads, GIL held, until none is ready or the budget is spent.
    fn run(&mut self, py: Python<'_>) -> Ran {
        // The greenlet every virtual thread of this worker switches back to.
        let hub = greenlet::current(py);
        for _ in 0..BUDGET {
            self.collect();
            let Some(key) = self.ready.pop() else {
                if self.inbox.shared.idle() {
                    if self.live == 0 && self.places.len() > KEEP_PLACES {
                        // Late wake-ups may still name these keys: see `poll_wait`.
                        self.places = Vec::new();
                        self.free = Vec::new();
                    }
                    return Ran::Idle;
                }
                continue;
            };
            let place = &mut self.places[key];
            let vthread = place.vthread.as_mut().expect("a ready key has a thread");
            if !vthread.is_started() {
                let unstarted = &self.inbox.unstarted;
                unstarted.set(unstarted.get() - 1);
            }
            let step = match &hub {
                Ok(hub) => vthread.resume(py, hub, &mut self.idle),
                Err(err) => {
                    vthread.fail(py, err.clone_ref(py));
                    Step::Finished
                }
            };
            match step {
                Step::Finished => {
                    place.vthread = None;
                    self.free.push(key);
                    self.live -= 1;
                }
                Step::Parked(wait) => {
                    place.wait = Some(wait);
                    self.poll_wait(key);
                }
                Step::Yielded => self.ready.push(vthread.priority, key),
            }
        }
        Ran::Spent
    }

    /// Takes in new arrivals and polls the waits of the woken virtual threads.
    fn collect(&mut self) {
        let arrivals = std::mem::take(&mut *self.inbox.arrivals.borrow_mut());
        for vthread in arrivals {
            let priority = vthread.priority;
            let key = self.free.pop().unwrap_or_else(|| {
                let waker = Waker::from(Arc::new(ThreadWaker {
                    key: self.places.len(),
                    shared: self.inbox.shared.clone(),
                }));
                self.places.push(Place {
                    wait: None,
                    vthread: None,
                    waker,
                });
                self.places.len() - 1
            });
            self.places[key].vthread = Some(vthread);
            self.live += 1;
            self.ready.push(priority, key);
        }
        let mut woken = std::mem::take(&mut self.woken);
        self.inbox.shared.take(&mut woken);
        for key in woken.drain(..) {
            self.poll_wait(key);
        }
        self.woken = woken;
    }

    /// Polls the wait of the virtual thread at `key`, if it is parked: completed, the
    /// thread is ready; pending, its waker will say when to look again. A key may be
    /// stale (a late wake-up for a place given back or taken by another thread).
    fn poll_wait(&mut self, key: usize) {
        let Some(place) = self.places.get_mut(key) else {
            return;
        };
        let (Some(wait), Some(vthread)) = (place.wait.as_mut(), place.vthread.as_mut()) else {
            return;
        };
        if wait
            .as_mut()
            .poll(&mut Context::from_waker(&place.waker))
            .is_pending()
        {
            vthread.set_parked(true);
            return;
        }
        place.wait = None;
        vthread.set_parked(false);
        self.ready.push(vthread.priority, key);
    }

    /// Whether a poll has anything to do beyond going idle.
    fn has_work(&self) -> bool {
        !self.ready.is_empty() || !self.inbox.arrivals.borrow().is_empty()
    }
}

impl Future for Hub {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.inbox.shared.enter(cx.waker());
        // A wake-up with nothing behind it takes no GIL.
        if !this.has_work() && this.inbox.shared.idle() {
            return Poll::Pending;
        }
        if let Ran::Spent = with_gil(|py| this.run(py)) {
            // Back after the worker's next ring turn: a hub with ready virtual threads
            // that woke itself at once would run again and again before the ring was
            // looked at, and the completions of every other virtual thread would wait.
            ringloom::driver::defer(cx.waker());
        }
        Poll::Pending
    }
}

impl Drop for Hub {
    /// The runtime drops the hub as it shuts down: its virtual threads go with it,
    /// failing their futures (`VThread`'s drop). Their waits and objects are let go of
    /// with the GIL held, and taken out first, so that the Python code a dying greenlet
    /// runs finds the hub empty rather than half dropped.
    fn drop(&mut self) {
        let places = std::mem::take(&mut self.places);
        let arrivals = std::mem::take(&mut *self.inbox.arrivals.borrow_mut());
        let python = arrivals.len() + places.iter().filter(|p| p.vthread.is_some()).count();
        if python > 0 || !self.idle.is_empty() {
            with_gil(|py| {
                drop((places, arrivals));
                self.idle.clear(py);
            });
        }
    }
}
