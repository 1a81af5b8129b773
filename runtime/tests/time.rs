//! Timers: many concurrent sleeps in deadline order, timeouts, intervals.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{hang_guard, runtime, XorShift};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn hundred_thousand_sleeps_complete_in_deadline_order() {
    hang_guard(LIMIT, || {
        const N: usize = 100_000;
        // Ordering is checked between sleeps whose deadlines are further apart than this;
        // closer ones may finish in either order. Each worker fires its own timers, so a
        // worker the OS deschedules (seen: 70-190 ms on this 2-core VM under a parallel
        // build) delays its sleeps while the other worker's go on. A wrong heap order or
        // a lost timer misorders by up to the whole 2 s spread and still fails this. Seen:
        // 228 ms once with builds running beside the test.
        const TOLERANCE: Duration = Duration::from_millis(500);
        let rt = runtime(2);
        let sequence = Arc::new(AtomicU64::new(0));
        let registered = Arc::new(AtomicU64::new(0));
        let finished: Arc<Mutex<Vec<(Instant, u64, Instant)>>> =
            Arc::new(Mutex::new(Vec::with_capacity(N)));
        let all_registered = rt.block_on({
            let (sequence, finished, registered) =
                (sequence.clone(), finished.clone(), registered.clone());
            async move {
                // Registering 100,000 tasks takes ~0.3 s in a debug build on an idle machine and
                // several times that under load; sleeps that expire before registration ends
                // are left out of the order check, and at least half must remain.
                let start = Instant::now() + Duration::from_millis(1500);
                let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
                let handles: Vec<_> = (0..N)
                    .map(|_| {
                        let deadline = start + Duration::from_micros(rng.next() % 2_000_000);
                        let (sequence, finished, registered) =
                            (sequence.clone(), finished.clone(), registered.clone());
                        ringloom::spawn(async move {
                            let mut sleep = std::pin::pin!(ringloom::time::sleep_until(deadline));
                            // Poll once so the sleep is registered before it is counted.
                            std::future::poll_fn(|cx| {
                                let _ = sleep.as_mut().poll(cx);
                                std::task::Poll::Ready(())
                            })
                            .await;
                            registered.fetch_add(1, Ordering::SeqCst);
                            sleep.await;
                            let woke = Instant::now();
                            let order = sequence.fetch_add(1, Ordering::SeqCst);
                            finished.lock().unwrap().push((deadline, order, woke));
                        })
                    })
                    .collect();
                while registered.load(Ordering::SeqCst) < N as u64 {
                    ringloom::time::sleep(Duration::from_millis(1)).await;
                }
                let all_registered = Instant::now();
                for handle in handles {
                    handle.await.unwrap();
                }
                all_registered
            }
        });
        let mut finished = finished.lock().unwrap().clone();
        assert_eq!(finished.len(), N);
        for (deadline, _, woke) in &finished {
            assert!(woke >= deadline, "a sleep woke before its deadline");
        }
        // A sleep whose deadline passed before it was registered finishes whenever it is
        // first polled; order is only meaningful for the others.
        finished.sort_by_key(|(deadline, _, _)| *deadline);
        let first_checked =
            finished.partition_point(|(deadline, _, _)| *deadline <= all_registered);
        assert!(
            first_checked < N / 2,
            "registering {N} sleeps took longer than half of their spread; nothing to check"
        );
        let finished = &finished[first_checked..];
        // Sorted by deadline, each sleep must have finished after every sleep whose
        // deadline is more than TOLERANCE earlier.
        let mut earlier = 0;
        let mut max_order_earlier = None::<u64>;
        for i in 0..finished.len() {
            let (deadline, order, _) = finished[i];
            while earlier < i && finished[earlier].0 + TOLERANCE < deadline {
                let o = finished[earlier].1;
                max_order_earlier = Some(max_order_earlier.map_or(o, |m| m.max(o)));
                earlier += 1;
            }
            if let Some(max) = max_order_earlier {
                if max >= order {
                    let culprit = finished.iter().find(|f| f.1 == max).unwrap();
                    panic!(
                        "sleep #{i} (woke {:?} late) finished before one whose deadline was {:?} earlier (woke {:?} late)",
                        finished[i].2 - deadline,
                        deadline - culprit.0,
                        culprit.2 - culprit.0,
                    );
                }
            }
        }
    });
}

#[test]
fn sleep_in_the_past_or_zero_completes() {
    let rt = runtime(1);
    rt.block_on(async {
        ringloom::time::sleep(Duration::ZERO).await;
        ringloom::time::sleep_until(Instant::now() - Duration::from_secs(5)).await;
    });
}

#[test]
fn timeout_of_zero_or_in_the_past() {
    let rt = runtime(1);
    rt.block_on(async {
        // A ready future wins even against a zero timeout: it is polled first.
        assert_eq!(
            ringloom::time::timeout(Duration::ZERO, async { 3 }).await,
            Ok(3)
        );
        // A pending one times out at once.
        let elapsed = ringloom::time::timeout(Duration::ZERO, std::future::pending::<()>()).await;
        assert!(elapsed.is_err());
        let past = Instant::now() - Duration::from_secs(1);
        let elapsed = ringloom::time::timeout_at(past, std::future::pending::<()>()).await;
        assert!(elapsed.is_err());
        let err: std::io::Error = elapsed.unwrap_err().into();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    });
}

#[test]
fn timeout_lets_a_fast_future_through_and_cuts_a_slow_one() {
    let rt = runtime(2);
    rt.block_on(async {
        let fast = ringloom::time::timeout(Duration::from_secs(60), async {
            ringloom::time::sleep(Duration::from_millis(1)).await;
            1
        })
        .await;
        assert_eq!(fast, Ok(1));
        let slow = ringloom::time::timeout(
            Duration::from_millis(5),
            ringloom::time::sleep(Duration::from_secs(3600)),
        )
        .await;
        assert!(slow.is_err());
    });
}

#[test]
fn interval_ticks_at_its_period() {
    let rt = runtime(1);
    rt.block_on(async {
        let period = Duration::from_millis(5);
        let mut interval = ringloom::time::interval(period);
        let first = interval.tick().await;
        let mut previous = first;
        for _ in 0..5 {
            let tick = interval.tick().await;
            assert_eq!(tick - previous, period);
            assert!(Instant::now() >= tick);
            previous = tick;
        }
    });
}

#[test]
#[should_panic(expected = "period must be non-zero")]
fn interval_of_zero_is_refused() {
    let _ = ringloom::time::interval(Duration::ZERO);
}

#[test]
fn timeout_op_completes_and_can_be_cancelled() {
    hang_guard(LIMIT, || {
        let rt = runtime(1);
        rt.block_on(async {
            let started = Instant::now();
            ringloom::op::Timeout::submit(Duration::from_millis(2))
                .await
                .unwrap();
            assert!(started.elapsed() >= Duration::from_millis(2));
            let long = ringloom::op::Timeout::submit(Duration::from_secs(3600));
            long.cancel();
            let err = long.await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ECANCELED));
            // Dropped in flight: the ring must still get it back.
            drop(ringloom::op::Timeout::submit(Duration::from_secs(3600)));
        });
    });
}

#[test]
fn a_stolen_sleep_still_wakes() {
    hang_guard(LIMIT, || {
        let rt = runtime(2);
        rt.block_on(async {
            let handles: Vec<_> = (0..2_000u64)
                .map(|i| {
                    ringloom::spawn(async move {
                        ringloom::time::sleep(Duration::from_micros(i % 500)).await;
                        ringloom::yield_now().await;
                        ringloom::time::sleep(Duration::from_micros(i % 300)).await;
                        i
                    })
                })
                .collect();
            for (i, handle) in handles.into_iter().enumerate() {
                assert_eq!(handle.await.unwrap(), i as u64);
            }
        });
    });
}
