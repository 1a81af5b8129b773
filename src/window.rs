//! A bounded pool's `map`: at most `limit` calls of one batch run at once.
//!
//! The first `limit` calls go out as an unbounded batch's do; the rest wait here in input
//! order. Each worker has a starter task ([`StartWindow`]) that hands the next waiting
//! call to its worker's hub whenever one of the batch's calls ends, so the calls keep
//! the bound without a `concurrent.futures.Future` per call, and a call that ends on a
//! worker is replaced on that worker.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::hub;
use crate::vthread::Unstarted;

/// Calls a starter hands over in one poll at most before it lets its worker run them.
const START_AHEAD: usize = 128;

pub(crate) struct Window {
    limit: usize,
    /// Calls handed to a hub (or out as the first chunks) and not ended yet.
    running: AtomicUsize,
    /// How many calls `backlog` holds: read without its lock when a call ends.
    waiting: AtomicUsize,
    backlog: Mutex<VecDeque<Unstarted>>,
    /// The starters waiting for room, with the worker each last ran on.
    starters: Mutex<Vec<(Option<usize>, Waker)>>,
}

impl Window {
    /// A window of `limit` whose first `limit` calls are already out, with `backlog`
    /// waiting.
    pub(crate) fn new(limit: usize, backlog: VecDeque<Unstarted>) -> Window {
        Window {
            limit,
            running: AtomicUsize::new(limit),
            waiting: AtomicUsize::new(backlog.len()),
            backlog: Mutex::new(backlog),
            starters: Mutex::new(Vec::new()),
        }
    }

    fn backlog(&self) -> MutexGuard<'_, VecDeque<Unstarted>> {
        self.backlog.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn starters(&self) -> MutexGuard<'_, Vec<(Option<usize>, Waker)>> {
        self.starters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One of the batch's calls ended (or was skipped): its place goes to the next
    /// waiting call, through the starter of this worker if it waits, else any other.
    pub(crate) fn ended(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let waker = {
            let mut starters = self.starters();
            let here = ringloom::current_worker();
            let found = starters
                .iter()
                .position(|(worker, _)| here.is_some() && *worker == here)
                .or_else(|| (!starters.is_empty()).then_some(0));
            found.map(|at| starters.swap_remove(at).1)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The next waiting call, if there is room for it (the room is taken).
    fn next(&self) -> Option<Unstarted> {
        let mut running = self.running.load(Ordering::SeqCst);
        loop {
            if running >= self.limit {
                return None;
            }
            match self.running.compare_exchange_weak(
                running,
                running + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => running = now,
            }
        }
        let call = self.backlog().pop_front();
        match call {
            Some(call) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                Some(call)
            }
            None => {
                self.running.fetch_sub(1, Ordering::SeqCst);
                None
            }
        }
    }
}

/// A worker's starter of a window's waiting calls; ends once none is left.
pub(crate) struct StartWindow {
    window: Arc<Window>,
    done: bool,
}

impl StartWindow {
    pub(crate) fn new(window: Arc<Window>) -> StartWindow {
        StartWindow {
            window,
            done: false,
        }
    }
}

impl Future for StartWindow {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let window = &this.window;
        {
            // Before looking for room: a call that ends after the look wakes us.
            let mut starters = window.starters();
            starters.retain(|(_, waker)| !waker.will_wake(cx.waker()));
            starters.push((ringloom::current_worker(), cx.waker().clone()));
        }
        let mut started = 0;
        while let Some(call) = window.next() {
            hub::adopt(call);
            started += 1;
            if started == START_AHEAD {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        if window.waiting.load(Ordering::SeqCst) > 0 {
            return Poll::Pending;
        }
        // None left: this starter ends, and so do the others once woken (no call's end
        // wakes a starter any more), leaving no task behind.
        this.done = true;
        let others = std::mem::take(&mut *window.starters());
        for (_, waker) in others {
            if !waker.will_wake(cx.waker()) {
                waker.wake();
            }
        }
        Poll::Ready(())
    }
}

impl Drop for StartWindow {
    /// A starter dropped before the calls ran out (its runtime shut down) fails every
    /// waiting call, so that its `map` returns instead of waiting for ever.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let calls = std::mem::take(&mut *self.window.backlog());
        self.window.waiting.fetch_sub(calls.len(), Ordering::SeqCst);
        // Each ends through `Batch::end_one`, which gives back a place it never took.
        self.window.running.fetch_add(calls.len(), Ordering::SeqCst);
        // Outside the lock: each delivers its error with the GIL.
        drop(calls);
    }
}
