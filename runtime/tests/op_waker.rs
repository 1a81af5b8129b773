//! An op's waker handling: a foreign waker that panics when cloned must not leave the
//! ring's in-flight table poisoned (every op of the ring goes through it).

mod common;

use std::future::Future;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{hang_guard, runtime};

/// A waker whose `clone` panics, as a foreign executor's might.
fn panicking_clone_waker() -> std::task::Waker {
    use std::task::{RawWaker, RawWakerVTable, Waker};
    fn clone(_: *const ()) -> RawWaker {
        panic!("this waker cannot be cloned");
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: the vtable's functions ignore the data pointer, which is never read.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}

#[test]
fn a_waker_clone_that_panics_leaves_the_ring_usable() {
    hang_guard(Duration::from_secs(60), || {
        let rt = runtime(1);
        rt.block_on(async {
            // A poll on a socket with nothing to read stays in flight in both drivers.
            let (reader, mut writer) = UnixStream::pair().expect("socketpair");
            let mut poll =
                ringloom::op::PollAdd::submit(OwnedFd::from(reader).into(), libc::POLLIN as u32);
            let waker = panicking_clone_waker();
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                std::pin::Pin::new(&mut poll).poll(&mut std::task::Context::from_waker(&waker))
            }));
            assert!(polled.is_err(), "the clone's panic reaches the poller");
            // The table is not poisoned: this op and new ones complete.
            std::io::Write::write_all(&mut writer, b"x").expect("write");
            let ready = poll.await.expect("the poll completes");
            assert_ne!(ready & libc::POLLIN as u32, 0);
            ringloom::op::Nop::submit()
                .await
                .expect("a later nop completes");
        });
    });
}
