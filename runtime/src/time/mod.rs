//! Timers: `sleep`, `sleep_until`, `timeout`, `interval`.
//!
//! A sleep is an entry in its driver's timer heap, not a submission: the driver bounds
//! its park by the earliest deadline. A million sleeps cost a million heap entries and
//! one wait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::driver::{current_ref, DriverRef, TimerKey};

/// Waits until `duration` has passed.
///
/// The first poll registers the sleep without reading the clock again (the deadline
/// was in the future a moment ago): a sleep first polled after its deadline completes
/// at its worker's next turn rather than at once. A zero duration completes at the
/// first poll.
///
/// # Panics
/// When polled outside a ringloom runtime.
pub fn sleep(duration: Duration) -> Sleep {
    let mut sleep = sleep_until(
        Instant::now()
            .checked_add(duration)
            .unwrap_or_else(far_future),
    );
    // No clock read per sleep: it showed up in the cost of a million of them.
    sleep.state = State::Idle {
        check_clock: duration.is_zero(),
    };
    sleep
}

/// Waits until `deadline`. A deadline in the past completes at the first poll.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        state: State::Idle { check_clock: true },
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// The future of [`sleep`].
pub struct Sleep {
    deadline: Instant,
    state: State,
}

enum State {
    /// Not in a timer queue. `check_clock`: whether a poll checks the clock for a
    /// deadline already past before registering (false only for a `sleep(duration)`
    /// whose deadline was ahead when it was made and that has not completed yet).
    Idle { check_clock: bool },
    /// In this driver's timer queue.
    Registered(DriverRef, TimerKey),
}

// A sleep lives in its task's cell: every byte here is a megabyte in a million sleeps.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Sleep>() == 32);

impl Sleep {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline (the sleep registers again at its next poll).
    pub fn reset(&mut self, deadline: Instant) {
        self.unregister();
        self.deadline = deadline;
    }

    /// Leaves the timer queue; a later poll checks the clock first.
    fn unregister(&mut self) {
        let idle = State::Idle { check_clock: true };
        if let State::Registered(driver, key) = std::mem::replace(&mut self.state, idle) {
            driver.timers.lock().remove(key);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let check_clock = match &self.state {
            State::Registered(driver, key) => {
                if driver.timers.lock().poll(*key, cx.waker()) {
                    self.state = State::Idle { check_clock: true };
                    return Poll::Ready(());
                }
                return Poll::Pending;
            }
            State::Idle { check_clock } => *check_clock,
        };
        if check_clock && Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let driver =
            current_ref().expect("ringloom::time::sleep polled outside a ringloom runtime");
        let key = driver
            .timers
            .lock()
            .insert_waker(self.deadline, cx.waker().clone());
        self.state = State::Registered(driver, key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The error of a [`timeout`] whose time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::ErrorKind::TimedOut.into()
    }
}

/// Runs `future` for at most `duration`. The future is polled at least once, so a
/// future that is ready at once wins even against a zero timeout.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

/// Like [`timeout`], with a deadline.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep_until(deadline),
    }
}

/// The future of [`timeout`].
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned (never moved out while pinned);
        // `sleep` is Unpin and not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Ticks every `period`, the first tick at once. A late tick is followed by the ticks
/// it missed, at once, as tokio's default does (`Burst`).
///
/// # Panics
/// If `period` is zero.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Like [`interval`], with the first tick at `start`.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "ringloom::time::interval: period must be non-zero"
    );
    Interval {
        next: start,
        period,
        sleep: sleep_until(start),
    }
}

/// Ticks at a fixed period; see [`interval`].
pub struct Interval {
    next: Instant,
    period: Duration,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled time.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if self.sleep.deadline() != self.next {
            self.sleep.reset(self.next);
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => {
                let tick = self.next;
                self.next = tick.checked_add(self.period).unwrap_or_else(far_future);
                Poll::Ready(tick)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }
}
