//! Task cells go back to the system whichever thread frees them, even after the thread
//! that carved them is gone. One test only: it reads a process-wide count.

mod common;

use std::time::Duration;

use common::{hang_guard, runtime};
use ringloom::stats::task_cell_memory;

#[test]
fn task_cells_come_back_wherever_and_whenever_their_tasks_end() {
    if std::env::var("RINGLOOM_TASK_SLAB").is_ok_and(|v| v == "0" || v == "off") {
        eprintln!("RINGLOOM_TASK_SLAB is off: no slab to check");
        return;
    }
    let before = task_cell_memory();
    // On the guard's own thread, so that its block_on caller's cache exits with it.
    hang_guard(Duration::from_secs(120), move || {
        let rt = runtime(2);
        // A burst carved on a worker, joined (and so freed) on this thread.
        let handles = rt
            .block_on(rt.spawn(async {
                (0..200_000usize)
                    .map(|i| ringloom::spawn(async move { i }))
                    .collect::<Vec<_>>()
            }))
            .unwrap();
        assert!(
            task_cell_memory() > before,
            "a worker's burst of spawns comes from its slab"
        );
        let sum = rt.block_on(async {
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, (0..200_000usize).sum::<usize>());
        // Tasks whose cells outlive the workers: their handles are dropped after
        // the runtime, by which time the chunks' owner threads have exited.
        let waiting = rt
            .block_on(rt.spawn(async {
                (0..5_000)
                    .map(|_| ringloom::spawn(std::future::pending::<()>()))
                    .collect::<Vec<_>>()
            }))
            .unwrap();
        drop(rt);
        let cancelled = waiting
            .into_iter()
            .map(poll_cancelled)
            .filter(Result::is_err)
            .count();
        assert_eq!(cancelled, 5_000);
    });
    assert_eq!(
        task_cell_memory(),
        before,
        "every chunk was unmapped once its last cell came back"
    );
}

/// Polls the handle of a task whose runtime is gone, once, and drops it (with the last
/// reference to the task's cell).
fn poll_cancelled<T>(handle: ringloom::JoinHandle<T>) -> Result<T, ringloom::JoinError> {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Nobody;
    impl Wake for Nobody {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Nobody));
    let mut handle = std::pin::pin!(handle);
    match handle.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("a task of a dropped runtime is still pending"),
    }
}
