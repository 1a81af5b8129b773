//! An op whose future outlives the driver it was submitted on (moved out of `block_on`):
//! collecting or dropping it after the driver is gone must touch only memory that is
//! still there (this binary runs under valgrind and AddressSanitizer too).

mod common;

use std::future::Future;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{hang_guard, runtime};
use ringloom::op::PollAdd;

/// A socket to poll for input, with `ready` bytes already waiting, and its peer.
fn socket_with_input(ready: usize) -> (OwnedFd, UnixStream) {
    let (reader, mut writer) = UnixStream::pair().expect("socketpair");
    std::io::Write::write_all(&mut writer, &vec![b'x'; ready]).expect("write");
    (OwnedFd::from(reader), writer)
}

const POLLIN: u32 = libc::POLLIN as u32;

#[test]
// The futures returned out of `block_on` are the point: ops that outlive their driver.
#[allow(clippy::async_yields_async)]
fn ops_outliving_their_driver_are_collected_and_dropped_safely() {
    hang_guard(Duration::from_secs(60), || {
        let rt = runtime(1);
        // Ready at once: its completion (its mask, or ECANCELED if the drain's cancel
        // came first, as in the fallback driver) is reaped while `block_on` drains.
        let (ready, _peer) = socket_with_input(1);
        let collected = rt.block_on(async { PollAdd::submit(ready.into(), POLLIN) });
        // Never ready: the drain cancels it.
        let (idle, _idle_peer) = socket_with_input(0);
        let dropped = rt.block_on(async { PollAdd::submit(idle.into(), POLLIN) });
        // Both drivers are gone; their in-flight tables are not.
        let mut collected = collected;
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut collected).poll(&mut cx) {
            Poll::Ready(Ok(mask)) => assert_ne!(mask & POLLIN, 0),
            Poll::Ready(Err(err)) => assert_eq!(err.raw_os_error(), Some(libc::ECANCELED)),
            Poll::Pending => panic!("the poll completed during the drain"),
        }
        drop(collected);
        drop(dropped);
    });
}
