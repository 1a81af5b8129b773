//! Sockets over loopback, under whichever driver the environment selects
//! (`RINGLOOM_DRIVER=fallback` for epoll).

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::task::Poll;

use ringloom::net::{Slice, TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use ringloom::Runtime;

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().unwrap()
}

/// The echo test holds two descriptors per connection; the default soft limit (often
/// 1024) would run out before the hard limit does.
fn raise_nofile_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the live local.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one live rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    }
}

/// Rust programs ignore SIGPIPE by default, which would hide a write that raises it:
/// restore the default (death) so such a write fails the whole run. Every socket write
/// ringloom makes passes MSG_NOSIGNAL, so nothing else in this binary is affected.
fn sigpipe_kills() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: installs the default disposition; no handler code runs.
    ONCE.call_once(|| unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    });
}

/// splitmix64: a deterministic pattern, so the receiver can check every byte.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

const CONNECTIONS: usize = 1000;
const MESSAGES: usize = 8;
const MESSAGE_LEN: usize = 1024;

/// Connection id and message index up front, then a pattern seeded by both: no two
/// messages of the run are alike, so a byte delivered to the wrong connection or out of
/// order cannot go unnoticed.
fn message(conn: usize, index: usize) -> Vec<u8> {
    let mut msg = Vec::with_capacity(MESSAGE_LEN);
    msg.extend_from_slice(&(conn as u32).to_le_bytes());
    msg.extend_from_slice(&(index as u32).to_le_bytes());
    let seed = ((conn as u64) << 32) | index as u64;
    msg.extend_from_slice(&pattern(seed, MESSAGE_LEN - msg.len()));
    msg
}

async fn echo<S: Stream>(stream: S) -> io::Result<usize> {
    let mut buf = Vec::with_capacity(4096);
    let mut total = 0;
    loop {
        buf.clear();
        let (result, read) = stream.read(buf).await;
        let n = result?;
        if n == 0 {
            return Ok(total);
        }
        assert_eq!(read.len(), n);
        let (result, written) = stream.write_all(read).await;
        result?;
        buf = written;
        total += n;
    }
}

/// Reads exactly `len` bytes.
async fn read_exact<S: Stream>(stream: &S, len: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::with_capacity(len);
    let mut buf = Vec::with_capacity(len);
    while got.len() < len {
        buf.clear();
        let (result, read) = stream.read(buf).await;
        buf = read;
        match result? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    Ok(got)
}

/// Enough of a stream for the shared helpers, so TCP and Unix run the same code.
trait Stream: Send + Sync + 'static {
    fn read(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> + Send;
    fn write_all(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)> + Send;
}

impl Stream for TcpStream {
    fn read(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> + Send {
        TcpStream::read(self, buf)
    }
    fn write_all(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)> + Send {
        TcpStream::write_all(self, buf)
    }
}

impl Stream for UnixStream {
    fn read(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> + Send {
        UnixStream::read(self, buf)
    }
    fn write_all(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)> + Send {
        UnixStream::write_all(self, buf)
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))
}

async fn echo_client(addr: SocketAddr, conn: usize) -> io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    assert_eq!(stream.peer_addr()?, addr);
    stream.set_nodelay(true)?;
    assert!(stream.nodelay()?);
    for index in 0..MESSAGES {
        let (result, sent) = stream.write_all(message(conn, index)).await;
        result?;
        let got = read_exact(&stream, MESSAGE_LEN).await?;
        if let Some(at) = first_difference(&got, &sent) {
            panic!("connection {conn}, message {index}: echo differs at byte {at}");
        }
    }
    // Half-close: the server sees the end, finishes, and closes its side.
    stream.shutdown(Shutdown::Write).await?;
    let (result, _) = stream.read(Vec::with_capacity(16)).await;
    assert_eq!(
        result?, 0,
        "connection {conn}: server sent more than the echo"
    );
    Ok(())
}

#[test]
fn tcp_echo_1000_connections() {
    raise_nofile_limit();
    let rt = runtime();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let echoed = rt.block_on(async move {
        let server = ringloom::spawn(async move {
            let mut handlers = Vec::with_capacity(CONNECTIONS);
            for _ in 0..CONNECTIONS {
                let (stream, peer) = listener.accept().await.expect("accept");
                assert!(peer.ip().is_loopback());
                assert_eq!(stream.peer_addr().unwrap(), peer);
                handlers.push(ringloom::spawn(echo(stream)));
            }
            let mut total = 0;
            for handler in handlers {
                total += handler.await.unwrap().expect("echo");
            }
            total
        });
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|conn| ringloom::spawn(echo_client(addr, conn)))
            .collect();
        for (conn, client) in clients.into_iter().enumerate() {
            if let Err(err) = client.await.unwrap() {
                panic!("connection {conn}: {err}");
            }
        }
        server.await.unwrap()
    });
    assert_eq!(echoed, CONNECTIONS * MESSAGES * MESSAGE_LEN);
}

/// A port that was just in use and is now closed.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn tcp_connect_to_closed_port_is_refused() {
    let rt = runtime();
    let addr = closed_port();
    let err = rt
        .block_on(TcpStream::connect(addr))
        .err()
        .expect("connected to a closed port");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn tcp_connect_tries_every_address() {
    let rt = runtime();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let good = listener.local_addr().unwrap();
    let addrs = [closed_port(), good];
    rt.block_on(async move {
        let accept = ringloom::spawn(async move { listener.accept().await.map(drop) });
        let stream = TcpStream::connect(&addrs[..]).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);
        accept.await.unwrap().unwrap();

        let nothing: &[SocketAddr] = &[];
        let err = TcpStream::connect(nothing).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn tcp_peer_close_reads_zero_and_writes_fail() {
    sigpipe_kills();
    let rt = runtime();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    rt.block_on(async move {
        let server = ringloom::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            // Dropping closes: the client sees FIN, and RST for anything it sends later.
            drop(stream);
        });
        let client = TcpStream::connect(addr).await.unwrap();
        server.await.unwrap();

        let (result, _) = client.read(Vec::with_capacity(64)).await;
        assert_eq!(result.unwrap(), 0);

        // The first write may still be accepted locally; the peer's RST then fails a
        // later one. No SIGPIPE may kill the process on the way.
        let mut buf = vec![7u8; 1024];
        let mut error = None;
        for _ in 0..100_000 {
            let (result, returned) = client.write(buf).await;
            buf = returned;
            if let Err(err) = result {
                error = Some(err);
                break;
            }
            ringloom::yield_now().await;
        }
        let err = error.expect("writes to a closed peer kept succeeding");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );
        assert_eq!(buf.len(), 1024, "the buffer comes back with the error");
    });
}

/// Megabytes in one `write_all`: more than the socket buffers hold, so the kernel takes
/// it in pieces and the rest is resent through a `Slice`.
#[test]
fn tcp_write_all_large_buffer() {
    const LEN: usize = 8 << 20;
    let rt = runtime();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    rt.block_on(async move {
        let receiver = ringloom::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut got = Vec::with_capacity(LEN);
            let mut buf = Vec::with_capacity(64 << 10);
            loop {
                buf.clear();
                let (result, read) = stream.read(buf).await;
                buf = read;
                match result.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let data = pattern(42, LEN);
        let (result, data) = stream.write_all(data).await;
        result.unwrap();
        stream.close().await.unwrap();
        let got = receiver.await.unwrap();
        assert_eq!(got.len(), LEN);
        assert_eq!(first_difference(&got, &data), None);
    });
}

/// Sockets made with `std`, or bound before the runtime exists, work under either
/// driver (the fallback one needs them non-blocking).
#[test]
fn tcp_from_std() {
    let rt = runtime();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = TcpListener::from_std(std_listener).unwrap();
    // Completes from the kernel's backlog before anyone accepts.
    let std_client = std::net::TcpStream::connect(addr).unwrap();
    let client = TcpStream::from_std(std_client).unwrap();
    rt.block_on(async move {
        let (server, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(server.local_addr().unwrap(), addr);
        let (result, _) = client.write_all(b"ping".as_slice()).await;
        result.unwrap();
        assert_eq!(read_exact(&server, 4).await.unwrap(), b"ping");
        server.shutdown(Shutdown::Both).await.unwrap();
        let (result, _) = client.read(Vec::with_capacity(8)).await;
        assert_eq!(result.unwrap(), 0);
    });
}

#[test]
fn slice_sends_its_window_and_gives_the_buffer_back() {
    let slice = Slice::new(b"hello world".to_vec(), 6..);
    assert_eq!((slice.begin(), slice.end(), slice.len()), (6, 11, 5));
    assert_eq!(slice.as_slice(), b"world");
    assert_eq!(Slice::new(vec![1u8, 2, 3], ..=1).as_slice(), &[1, 2]);
    assert!(Slice::new(Vec::<u8>::new(), ..).is_empty());
    let (a, b) = UnixStream::pair().unwrap();
    let rt = runtime();
    rt.block_on(async move {
        let (result, slice) = a.write_all(slice).await;
        result.unwrap();
        assert_eq!(slice.into_inner(), b"hello world");
        assert_eq!(read_exact(&b, 5).await.unwrap(), b"world");
    });
}

#[test]
#[should_panic(expected = "buffer holds 3 bytes")]
fn slice_cannot_reach_past_the_data() {
    let _ = Slice::new(vec![1u8, 2, 3], 1..4);
}

#[test]
fn udp_send_to_recv_from() {
    let rt = runtime();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    rt.block_on(async move {
        let (result, _) = a.send_to(b"ping".as_slice(), b_addr).await;
        assert_eq!(result.unwrap(), 4);
        let (result, buf) = b.recv_from(Vec::with_capacity(64)).await;
        let (n, from) = result.unwrap();
        assert_eq!((&buf[..n], from), (&b"ping"[..], a_addr));

        let (result, _) = b.send_to(pattern(1, 1200), from).await;
        assert_eq!(result.unwrap(), 1200);
        let (result, buf) = a.recv_from(vec![0u8; 2048]).await;
        let (n, from) = result.unwrap();
        assert_eq!(from, b_addr);
        assert_eq!(&buf[..n], &pattern(1, 1200)[..]);
    });
}

#[test]
fn udp_connected_send_recv() {
    let rt = runtime();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    rt.block_on(async move {
        a.connect(b_addr).await.unwrap();
        b.connect(a_addr).await.unwrap();
        assert_eq!(a.peer_addr().unwrap(), b_addr);
        // Runs on a worker while this thread waits: the sockets move between threads.
        let b = ringloom::spawn(async move {
            let (result, buf) = b.recv(Vec::with_capacity(16)).await;
            let n = result.unwrap();
            let (result, _) = b.send(buf[..n].to_vec()).await;
            result.unwrap();
        });
        let (result, _) = a.send(b"datagram".as_slice()).await;
        assert_eq!(result.unwrap(), 8);
        let (result, buf) = a.recv(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..result.unwrap()], b"datagram");
        b.await.unwrap();
    });
}

/// A socket path unique to this process and test, removed again on drop.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(name: &str) -> SocketPath {
        let path =
            std::env::temp_dir().join(format!("ringloom-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn unix_echo() {
    const CLIENTS: usize = 20;
    let rt = runtime();
    let path = SocketPath::new("echo");
    let listener = UnixListener::bind(&path.0).unwrap();
    assert_eq!(
        listener.local_addr().unwrap().as_pathname(),
        Some(path.0.as_path())
    );
    let target = path.0.clone();
    rt.block_on(async move {
        let server = ringloom::spawn(async move {
            let mut handlers = Vec::new();
            for _ in 0..CLIENTS {
                let (stream, peer) = listener.accept().await.unwrap();
                assert!(peer.is_unnamed());
                handlers.push(ringloom::spawn(echo(stream)));
            }
            let mut total = 0;
            for handler in handlers {
                total += handler.await.unwrap().unwrap();
            }
            total
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|conn| {
                let target = target.clone();
                ringloom::spawn(async move {
                    let stream = UnixStream::connect(&target).await.unwrap();
                    assert_eq!(
                        stream.peer_addr().unwrap().as_pathname(),
                        Some(target.as_path())
                    );
                    for index in 0..MESSAGES {
                        let (result, sent) = stream.write_all(message(conn, index)).await;
                        result.unwrap();
                        let got = read_exact(&stream, MESSAGE_LEN).await.unwrap();
                        assert_eq!(first_difference(&got, &sent), None);
                    }
                    stream.shutdown(Shutdown::Write).await.unwrap();
                    let (result, _) = stream.read(Vec::with_capacity(8)).await;
                    assert_eq!(result.unwrap(), 0);
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
        assert_eq!(server.await.unwrap(), CLIENTS * MESSAGES * MESSAGE_LEN);
    });
}

/// A connect that finds the backlog full must wait for room, not report a connection
/// that never happened.
#[test]
fn unix_connect_waits_for_backlog_room() {
    let rt = runtime();
    let path = SocketPath::new("backlog");
    let std_listener = std::os::unix::net::UnixListener::bind(&path.0).unwrap();
    // Backlog 0: the kernel queues one connection, and refuses the next with EAGAIN.
    // SAFETY: listen takes no pointers; the fd is open.
    assert_eq!(unsafe { libc::listen(std_listener.as_raw_fd(), 0) }, 0);
    let listener = UnixListener::from_std(std_listener).unwrap();
    let target = path.0.clone();
    rt.block_on(async move {
        let first = UnixStream::connect(&target).await.unwrap();
        let mut second = std::pin::pin!(UnixStream::connect(&target));
        // Starts the second connect while the queue is full; under the fallback driver
        // this is where it meets EAGAIN.
        let early = std::future::poll_fn(|cx| Poll::Ready(second.as_mut().poll(cx))).await;
        let (accepted_first, _) = listener.accept().await.unwrap();
        let second = match early {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => second.await.unwrap(),
        };
        // A socket that never connected has no peer.
        assert_eq!(
            second.peer_addr().unwrap().as_pathname(),
            Some(target.as_path())
        );
        let (accepted_second, _) = listener.accept().await.unwrap();
        for (client, server) in [(&first, &accepted_first), (&second, &accepted_second)] {
            let (result, _) = client.write_all(b"hi".as_slice()).await;
            result.unwrap();
            assert_eq!(read_exact(server, 2).await.unwrap(), b"hi");
        }
    });
}

#[test]
fn unix_connect_to_missing_path_fails() {
    let rt = runtime();
    let path = SocketPath::new("missing");
    let err = rt
        .block_on(UnixStream::connect(&path.0))
        .err()
        .expect("connected to nothing");
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
}

#[test]
fn unix_pair() {
    sigpipe_kills();
    let rt = runtime();
    let (a, b) = UnixStream::pair().unwrap();
    rt.block_on(async move {
        let data = pattern(7, 100_000);
        // More than a socket buffer holds: the reader must run alongside.
        let reader = ringloom::spawn(async move {
            let got = read_exact(&b, 100_000).await.unwrap();
            (got, b)
        });
        let (result, data) = a.write_all(data).await;
        result.unwrap();
        let (got, b) = reader.await.unwrap();
        assert_eq!(first_difference(&got, &data), None);

        drop(a);
        let (result, _) = b.read(Vec::with_capacity(8)).await;
        assert_eq!(result.unwrap(), 0);
        let (result, _) = b.write(b"gone".as_slice()).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    });
}
