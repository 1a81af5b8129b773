//! A count of threads still to reach a point, with a bounded wait for the rest: a
//! barrier that cannot hang on a worker stuck in a synchronous loop.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub(crate) struct Countdown {
    left: Mutex<usize>,
    reached: Condvar,
}

impl Countdown {
    pub(crate) fn new(count: usize) -> Countdown {
        Countdown {
            left: Mutex::new(count),
            reached: Condvar::new(),
        }
    }

    pub(crate) fn arrive(&self) {
        let mut left = self.left.lock().unwrap();
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.reached.notify_all();
        }
    }

    /// Waits until everyone has arrived or `deadline` passes; true if everyone did.
    pub(crate) fn wait_until(&self, deadline: Instant) -> bool {
        let mut left = self.left.lock().unwrap();
        while *left > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            left = self
                .reached
                .wait_timeout(left, (deadline - now).min(Duration::from_secs(3600)))
                .unwrap()
                .0;
        }
        true
    }
}
