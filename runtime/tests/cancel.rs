//! Cancellation safety: dropping futures with ops in flight never frees memory the kernel
//! may still write, and never leaks an fd an op created for nobody.
//!
//! One test function, in a binary of its own, because it counts the process's open fds.

mod common;

use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{hang_guard, open_fds, runtime, settle};
use ringloom::op::{Accept, OpFd, OpenAt, Recv};

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads and writes one live rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[test]
fn dropped_ops_release_buffers_and_fds() {
    hang_guard(Duration::from_secs(300), || {
        raise_fd_limit();
        let rt = runtime(2);
        let baseline = open_fds();

        // 10,000 receives in flight on 100 socket pairs, then dropped while half of the
        // peers are writing: some complete before the cancel lands, into buffers the
        // driver must still be holding.
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..100).map(|_| UnixStream::pair().unwrap()).collect();
        let fds: Vec<i32> = pairs.iter().map(|(a, _)| a.as_raw_fd()).collect();
        let writers: Vec<UnixStream> = pairs
            .iter()
            .step_by(2)
            .map(|(_, b)| b.try_clone().unwrap())
            .collect();
        rt.block_on(async move {
            let handles: Vec<_> = fds
                .chunks(50)
                .map(|chunk| {
                    let chunk = chunk.to_vec();
                    ringloom::spawn(async move {
                        let mut ops = Vec::new();
                        for &fd in &chunk {
                            for _ in 0..100 {
                                // SAFETY: `pairs` owns fd and is dropped only after
                                // `settle`, once every one of these receives has
                                // completed.
                                let fd = unsafe { OpFd::borrowed(fd) };
                                ops.push(Recv::submit(fd, vec![0u8; 4096], 0));
                            }
                        }
                        // Let the ring take them all before they are dropped.
                        ringloom::op::Nop::submit().await.unwrap();
                        ringloom::time::sleep(Duration::from_millis(1)).await;
                        ops
                    })
                })
                .collect();
            let mut all = Vec::new();
            for handle in handles {
                all.extend(handle.await.unwrap());
            }
            assert_eq!(all.len(), 10_000);
            let writer = std::thread::spawn(move || {
                use std::io::Write;
                for mut w in writers {
                    for _ in 0..50 {
                        let _ = w.write_all(&[0x5a; 1024]);
                    }
                }
            });
            drop(all);
            writer.join().unwrap();
        });
        settle(&rt);
        drop(pairs);

        // 1,000 accepts in flight, dropped while clients connect: an accepted connection
        // nobody awaits must be closed by the driver.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        // Shared with the accepts: each holds the listener open until it completes.
        let listener = OpFd::from(OwnedFd::from(listener));
        let listen_fd = listener.clone();
        rt.block_on(async move {
            let accepts: Vec<_> = (0..1_000)
                .map(|_| Accept::submit(listen_fd.clone()))
                .collect();
            ringloom::op::Nop::submit().await.unwrap();
            // Clients connect from a plain thread: this thread must keep turning its ring
            // (with DEFER_TASKRUN the accepts progress only when it does). Fewer than the
            // listen backlog (128), so no connect waits on an accept that was dropped.
            let clients = ringloom::spawn_blocking(move || {
                (0..100)
                    .map(|_| std::net::TcpStream::connect(address).unwrap())
                    .collect::<Vec<_>>()
            });
            ringloom::time::sleep(Duration::from_millis(5)).await;
            drop(accepts);
            drop(clients.await.unwrap());
        });
        settle(&rt);
        drop(listener);

        // 1,000 opens in flight, dropped: every fd they produced must be closed.
        let path = std::ffi::CString::new("/proc/self/status").unwrap();
        rt.block_on(async move {
            let opens: Vec<_> = (0..1_000)
                .map(|_| OpenAt::submit(None, path.clone(), libc::O_RDONLY, 0))
                .collect();
            ringloom::op::Nop::submit().await.unwrap();
            drop(opens);
            // And opens that complete and are dropped before anyone polls them.
            let completed: Vec<_> = (0..100)
                .map(|_| OpenAt::submit(None, path.clone(), libc::O_RDONLY, 0))
                .collect();
            ringloom::time::sleep(Duration::from_millis(20)).await;
            drop(completed);
            // One collected normally, to show the fd is real.
            let fd: OwnedFd = OpenAt::submit(None, path.clone(), libc::O_RDONLY, 0)
                .await
                .unwrap();
            // SAFETY: fd is a fresh descriptor we own; File takes it over.
            let file =
                unsafe { std::fs::File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)) };
            assert!(file.metadata().is_ok());
        });
        settle(&rt);

        common::assert_fds_return_to(baseline);
        // The receives ran on the workers (the accepts and opens on block_on's own ring,
        // which block_on drains before it returns).
        let total = rt.stats().total();
        assert!(total.ops_submitted >= 10_000);
        drop(rt);
    });
}
