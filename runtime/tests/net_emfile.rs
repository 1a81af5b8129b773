//! Running out of descriptors while accepting. In its own test binary: the descriptor
//! limit is per process, and lowering it would break any test running alongside.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use ringloom::net::{TcpListener, TcpStream};
use ringloom::op::{Connect, OpFd, RawAddr, Socket};

fn nofile_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the live local.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

fn set_nofile_limit(limit: &libc::rlimit) {
    // SAFETY: setrlimit reads one live rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) }, 0);
}

/// Puts the limit back however the test ends, so a failure cannot cascade.
struct RestoreLimit(libc::rlimit);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        set_nofile_limit(&self.0);
    }
}

/// Lowers the soft limit to just above the highest descriptor in use and fills every
/// free slot below it, so the next descriptor anyone asks for fails with `EMFILE`.
fn exhaust_descriptors() -> Vec<OwnedFd> {
    let template = std::fs::File::open("/dev/null").unwrap();
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let mut limit = nofile_limit();
    limit.rlim_cur = highest + 1 + 8;
    set_nofile_limit(&limit);
    let template = OwnedFd::from(template);
    let mut fillers = Vec::new();
    loop {
        // SAFETY: dup takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::dup(template.as_raw_fd()) };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
            break;
        }
        // SAFETY: dup succeeded, so fd is fresh and ours alone.
        fillers.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    // Dropping the template would free its slot.
    fillers.push(template);
    fillers
}

#[test]
fn accept_reports_emfile_and_keeps_working() {
    let _restore = RestoreLimit(nofile_limit());
    let rt = ringloom::Runtime::builder().workers(2).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    rt.block_on(async move {
        // The client's socket must exist before the table is full.
        let client_fd = Arc::new(
            Socket::submit(libc::AF_INET, libc::SOCK_STREAM, 0)
                .await
                .unwrap(),
        );
        let mut fillers = exhaust_descriptors();

        // The client connects (the kernel completes the handshake from the backlog)
        // while the server has no descriptor for it.
        let connecting = ringloom::spawn(async move {
            Connect::submit(OpFd::shared(client_fd.clone()), RawAddr::from_inet(&addr))
                .await
                .map(|()| client_fd)
        });
        let err = listener.accept().await.err().expect("accept without fds");
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
        let client_fd = connecting.await.unwrap().unwrap();
        // Still nothing free: a second attempt fails the same way.
        let err = listener.accept().await.err().expect("accept without fds");
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");

        // One free slot is all the queued connection needs.
        drop(fillers.pop());
        let (server, peer) = listener.accept().await.unwrap();
        // The connect has completed, so its reference is gone.
        let client_fd = Arc::try_unwrap(client_fd).expect("no op holds the client");
        let client = TcpStream::from_std(std::net::TcpStream::from(client_fd)).unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let (result, _) = client.write_all(b"still here".as_slice()).await;
        result.unwrap();
        let (result, buf) = server.read(Vec::with_capacity(32)).await;
        assert_eq!(&buf[..result.unwrap()], b"still here");

        // With the limit back, the listener serves new connections as before.
        drop(fillers);
        set_nofile_limit(&_restore.0);
        let accept = ringloom::spawn(async move {
            let (stream, peer) = listener.accept().await.unwrap();
            let (result, buf) = stream.read(Vec::with_capacity(8)).await;
            assert_eq!(&buf[..result.unwrap()], b"again");
            peer
        });
        let second = TcpStream::connect(addr).await.unwrap();
        let (result, _) = second.write_all(b"again".as_slice()).await;
        result.unwrap();
        let peer: SocketAddr = accept.await.unwrap();
        assert_eq!(peer, second.local_addr().unwrap());
    });
}
