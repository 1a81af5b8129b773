//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

pub fn runtime(workers: usize) -> ringloom::Runtime {
    ringloom::Runtime::builder()
        .workers(workers)
        .build()
        .expect("runtime builds")
}

/// Runs `f` on a thread and fails the test if it has not returned after `limit`: a hang
/// (a lost wake-up) becomes a failure instead of a stuck CI run. The limit is generous;
/// it is not a performance assertion.
pub fn hang_guard<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            worker.join().unwrap();
            value
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: surface its panic.
            match worker.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!(),
            }
        }
        Err(_) => panic!("test did not finish within {limit:?}: hang"),
    }
}

/// A one-value channel whose sender may be any thread: enough to test cross-thread wakes.
pub struct Slot<T> {
    inner: Arc<Mutex<(Option<T>, Option<Waker>)>>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Slot<T> {
    pub fn new() -> Slot<T> {
        Slot {
            inner: Arc::new(Mutex::new((None, None))),
        }
    }

    pub fn put(&self, value: T) {
        let waker = {
            let mut inner = self.inner.lock().unwrap();
            inner.0 = Some(value);
            inner.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub fn take(&self) -> impl Future<Output = T> + '_ {
        SlotTake { slot: self }
    }
}

struct SlotTake<'a, T> {
    slot: &'a Slot<T>,
}

impl<T> Future for SlotTake<'_, T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut inner = self.slot.inner.lock().unwrap();
        match inner.0.take() {
            Some(value) => Poll::Ready(value),
            None => {
                inner.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What each open descriptor is (for failure messages).
pub fn describe_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some(format!(
                "{} -> {}",
                entry.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    fds.sort();
    fds
}

/// A tiny deterministic PRNG for test data.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Waits until every op submitted on every worker has completed (cancelled ones too).
pub fn settle(rt: &ringloom::Runtime) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = rt.stats();
        if stats
            .workers
            .iter()
            .all(|w| w.ops_submitted == w.ops_completed)
        {
            return;
        }
        assert!(Instant::now() < deadline, "ops never came back: {stats}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the process has `expected` open descriptors again, or fails after a
/// generous bound. A leaked descriptor never comes back; a blocking-pool thread may still
/// hold its handle to a finished driver (and that driver's eventfd) for an instant after
/// it reported its last completion, so an exact count right away would be a race.
pub fn assert_fds_return_to(expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds() != expected {
        assert!(
            Instant::now() < deadline,
            "fds leaked: {} open, {expected} expected: {:?}",
            open_fds(),
            describe_fds()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
