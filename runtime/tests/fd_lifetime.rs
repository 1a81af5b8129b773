//! The fd rule: a descriptor handed to an op stays open until the op's completion
//! arrives, whatever happens to its future and to the descriptor's owner. Each round
//! abandons ops and drops their owner in one task poll, then at once opens new fds (which
//! take the lowest free number, the old one were it free) and checks, once the runtime
//! has settled, that the abandoned ops did nothing to them.
//!
//! Two kinds of check: the old fd is still open and the new ones got other numbers (the
//! rule itself), and the new fds are untouched (what breaking it costs). Which abandoned
//! op would actually misfire without the rule depends on the driver: under io_uring the
//! queued recv and accept (file ops are punted to io-wq and cancelled before they run);
//! under the fallback driver the blocking-pool read and file write (readiness waiters are
//! removed at once on cancel).
//!
//! In a binary of its own, its tests one at a time: they count the process's open fds and
//! rely on which number the next fd gets.

mod common;

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use common::{hang_guard, open_fds, runtime, settle};
use ringloom::fs::File;
use ringloom::net::{UnixListener, UnixStream};
use ringloom::op::{OpFd, Read};

const ROUNDS: usize = 20;
const MIB: usize = 1024 * 1024;
const MESSAGE: &[u8] = b"for the newer socket only";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; any number is a valid argument.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Polls once, so the op inside is submitted, and returns at once either way.
async fn poll_once<F: Future>(fut: &mut Pin<Box<F>>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// A directory of its own, removed even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let name = format!("ringloom-fd-lifetime-{}-{test}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// After the old descriptor's owner and op are gone: it must still be open, so a new
/// pair of sockets gets other numbers. Its peer end already holds `MESSAGE`.
fn newer_pair(old: i32, what: &str) -> (StdStream, StdStream) {
    assert!(
        fd_is_open(old),
        "{what}: fd {old} closed under an op in flight"
    );
    let (newer, mut peer) = StdStream::pair().unwrap();
    assert_ne!(newer.as_raw_fd(), old, "{what}: fd reused");
    assert_ne!(peer.as_raw_fd(), old, "{what}: fd reused");
    peer.write_all(MESSAGE).unwrap();
    (newer, peer)
}

fn assert_message_untouched(mut newer: StdStream, what: &str) {
    newer.set_nonblocking(true).unwrap();
    let mut got = [0u8; 64];
    let n = newer
        .read(&mut got)
        .unwrap_or_else(|err| panic!("{what}: an abandoned op took the message: {err}"));
    assert_eq!(&got[..n], MESSAGE, "{what}");
}

#[test]
fn abandoned_socket_ops_never_reach_a_newer_socket() {
    let _serial = serial();
    hang_guard(Duration::from_secs(120), || {
        let rt = runtime(2);
        let dir = TempDir::new("sockets");
        let baseline = open_fds();
        for round in 0..ROUNDS {
            let listen_path = dir.0.join(format!("old-{round}"));
            let newer_path = dir.0.join(format!("new-{round}"));
            let witnesses = rt.block_on(rt.spawn(async move {
                // A recv through a stream: the future and the stream go in the same poll,
                // and the peer never writes, so only the cancel completes the op.
                let (ours, silent_peer) = UnixStream::pair().unwrap();
                let fd = ours.as_raw_fd();
                let mut recv = Box::pin(ours.read(vec![0u8; 64]));
                assert!(poll_once(&mut recv).await.is_pending());
                drop(recv);
                drop(ours);
                let recv_pair = newer_pair(fd, "recv");

                // A raw READ that owns its fd alone (under the fallback driver, a
                // blocking-pool call that may run whenever a pool thread is free).
                let (ours, closing_peer) = StdStream::pair().unwrap();
                let fd = ours.as_raw_fd();
                let mut read = Box::pin(Read::submit(
                    OpFd::from(OwnedFd::from(ours)),
                    vec![0u8; 64],
                    u64::MAX,
                ));
                assert!(poll_once(&mut read).await.is_pending());
                drop(read);
                let read_pair = newer_pair(fd, "read");
                // A blocking read cannot be cancelled; end of file completes it.
                drop(closing_peer);

                // An accept: taken by a newer listener's number, it would steal (and,
                // abandoned, close) that listener's connection.
                let listener = UnixListener::bind(&listen_path).unwrap();
                let fd = listener.as_raw_fd();
                let mut accept = Box::pin(listener.accept());
                assert!(poll_once(&mut accept).await.is_pending());
                drop(accept);
                drop(listener);
                assert!(
                    fd_is_open(fd),
                    "accept: fd {fd} closed under an op in flight"
                );
                let newer = StdListener::bind(&newer_path).unwrap();
                assert_ne!(newer.as_raw_fd(), fd, "accept: fd reused");
                let client = StdStream::connect(&newer_path).unwrap();

                (recv_pair, silent_peer, read_pair, newer, client)
            }));
            let (recv_pair, silent_peer, read_pair, newer, client) = witnesses.unwrap();
            settle(&rt);
            assert_message_untouched(recv_pair.0, &format!("round {round}: recv"));
            assert_message_untouched(read_pair.0, &format!("round {round}: read"));
            newer.set_nonblocking(true).unwrap();
            newer
                .accept()
                .unwrap_or_else(|err| panic!("round {round}: connection stolen: {err}"));
            drop((recv_pair.1, silent_peer, read_pair.1, newer, client));
        }
        settle(&rt);
        common::assert_fds_return_to(baseline);
        drop(rt);
    });
}

#[test]
fn abandoned_file_ops_never_reach_a_newer_file() {
    let _serial = serial();
    hang_guard(Duration::from_secs(120), || {
        let rt = runtime(2);
        let dir = TempDir::new("files");
        let (first, second) = (dir.0.join("first"), dir.0.join("second"));
        let baseline = open_fds();
        for round in 0..ROUNDS {
            let (first_path, second_path) = (first.clone(), second.clone());
            let other = rt.block_on(rt.spawn(async move {
                let file = File::create(&first_path).await.unwrap();
                let fd = file.as_raw_fd();
                let mut allocate = Box::pin(file.allocate(0, MIB as u64));
                assert!(poll_once(&mut allocate).await.is_pending());
                let mut write = Box::pin(file.write_at(vec![1u8; MIB], 0));
                assert!(poll_once(&mut write).await.is_pending());
                let mut sync = Box::pin(file.sync_data());
                assert!(poll_once(&mut sync).await.is_pending());
                let mut metadata = Box::pin(file.metadata());
                assert!(poll_once(&mut metadata).await.is_pending());
                drop((allocate, write, sync, metadata));
                drop(file);
                assert!(fd_is_open(fd), "fd {fd} closed under ops in flight");
                let mut other = std::fs::File::create(&second_path).unwrap();
                assert_ne!(other.as_raw_fd(), fd, "fd reused");
                other.write_all(b"x").unwrap();
                // Kept open until the runtime has settled, so a misdirected op would
                // find it under its number.
                other
            }));
            let other = other.unwrap();
            settle(&rt);
            let newer = std::fs::read(&second).unwrap();
            assert!(
                newer == b"x",
                "round {round}: an abandoned op wrote to (or grew) the newer file: {} bytes, \
                 starting {:?}",
                newer.len(),
                &newer[..newer.len().min(8)]
            );
            let len = std::fs::metadata(&first).unwrap().len();
            assert!(len == 0 || len == MIB as u64, "round {round}: {len}");
            drop(other);
        }
        settle(&rt);
        common::assert_fds_return_to(baseline);
        drop(rt);
    });
}
