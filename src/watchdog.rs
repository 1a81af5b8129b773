//! What the watchdog (`ringloom.watchdog`) reads: per worker, since when it has been
//! running a virtual thread without parking.
//!
//! Each worker of a `Loom` registers a [`Clock`] as it starts. A virtual thread's poll
//! stamps it just before switching into the greenlet and clears it when the greenlet
//! switches back (parked, yielded or done): one clock read and two relaxed stores per
//! switch. The watchdog thread, in Python, asks [`Watch::holding`] now and then (every
//! half threshold) and finds the frame through `sys._current_frames()` by the worker's
//! thread ident.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// One worker's stamp.
pub(crate) struct Clock {
    /// The worker's thread ident, as `threading.get_ident()` gives it.
    ident: u64,
    /// Nanoseconds since [`base`] (plus one, so never 0) when the worker switched into
    /// the virtual thread it runs now; 0 while it runs none.
    since: AtomicU64,
}

/// Every worker clock of one `Loom`.
#[derive(Default)]
pub(crate) struct Watch {
    clocks: Mutex<Vec<Arc<Clock>>>,
}

thread_local! {
    /// This worker's clock; `None` on threads that are not `Loom` workers.
    static CLOCK: RefCell<Option<Arc<Clock>>> = const { RefCell::new(None) };
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    base().elapsed().as_nanos() as u64 + 1
}

impl Watch {
    /// Registers the calling worker thread (from the worker wrapper, before it runs).
    /// `ident` is its `threading.get_ident()`.
    pub(crate) fn register(&self, ident: u64) {
        let clock = Arc::new(Clock {
            ident,
            since: AtomicU64::new(0),
        });
        self.clocks.lock().unwrap().push(clock.clone());
        CLOCK.with(|c| *c.borrow_mut() = Some(clock));
    }

    /// Unregisters the calling worker thread (as it stops).
    pub(crate) fn unregister(&self) {
        if let Some(clock) = CLOCK.with(|c| c.borrow_mut().take()) {
            self.clocks
                .lock()
                .unwrap()
                .retain(|other| !Arc::ptr_eq(other, &clock));
        }
    }

    /// `(thread ident, episode stamp, seconds held)` of each worker running a virtual
    /// thread now. The stamp is the same for the whole of one switch into a greenlet,
    /// and differs from any other switch's on that worker.
    pub(crate) fn holding(&self) -> Vec<(u64, u64, f64)> {
        let now = now_ns();
        self.clocks
            .lock()
            .unwrap()
            .iter()
            .filter_map(|clock| {
                let since = clock.since.load(Ordering::Relaxed);
                (since != 0).then(|| {
                    let held = now.saturating_sub(since) as f64 / 1e9;
                    (clock.ident, since, held)
                })
            })
            .collect()
    }
}

/// Marks the calling worker as running a virtual thread from now (`true`) or no longer
/// (`false`). Nothing on a thread that is not a `Loom` worker.
pub(crate) fn mark(running: bool) {
    CLOCK.with(|c| {
        if let Some(clock) = c.borrow().as_ref() {
            let stamp = if running { now_ns() } else { 0 };
            clock.since.store(stamp, Ordering::Relaxed);
        }
    });
}
