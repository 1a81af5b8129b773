//! More completions at once than the completion queue holds: none is lost.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use common::hang_guard;
use ringloom::op::{OpFd, PollAdd};

const PAIRS: usize = 500;
const POLLS_PER_SOCKET: usize = 200;

fn socketpair() -> (OwnedFd, OwnedFd) {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    (OwnedFd::from(a), OwnedFd::from(b))
}

#[test]
fn a_hundred_thousand_polls_ready_at_once_on_a_tiny_ring_all_complete() {
    hang_guard(Duration::from_secs(120), || {
        // 8 submission entries: the completion queue holds 16 unless the driver sizes it.
        let rt = ringloom::Runtime::builder()
            .workers(1)
            .ring_entries(8)
            .build()
            .unwrap();
        let pairs: Vec<(Arc<OwnedFd>, OwnedFd)> = (0..PAIRS)
            .map(|_| {
                let (a, b) = socketpair();
                (Arc::new(a), b)
            })
            .collect();
        let readers: Vec<Arc<OwnedFd>> = pairs.iter().map(|(a, _)| a.clone()).collect();
        let done = rt.block_on(async move {
            let mut handles = Vec::with_capacity(PAIRS * POLLS_PER_SOCKET);
            for reader in &readers {
                for _ in 0..POLLS_PER_SOCKET {
                    let fd = OpFd::shared(reader.clone());
                    handles.push(ringloom::spawn(async move {
                        PollAdd::submit(fd, libc::POLLIN as u32).await
                    }));
                }
            }
            // Let every poll reach the ring before any becomes ready.
            for _ in 0..10 {
                ringloom::yield_now().await;
            }
            for (_, writer) in &pairs {
                // SAFETY: writes one byte from a live buffer to an open socket.
                let n = unsafe { libc::write(writer.as_raw_fd(), b"x".as_ptr().cast(), 1) };
                assert_eq!(n, 1);
            }
            let mut ready = 0;
            for handle in handles {
                let mask = handle.await.unwrap().unwrap();
                assert!(mask & libc::POLLIN as u32 != 0);
                ready += 1;
            }
            ready
        });
        assert_eq!(done, PAIRS * POLLS_PER_SOCKET);
    });
}
