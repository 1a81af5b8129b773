//! TCP listeners and streams.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::{stream, SocketFd};
use crate::buf::{IoBuf, IoBufMut};
use crate::op::{self, RawAddr};
use crate::BufResult;

fn domain(addr: &SocketAddr) -> i32 {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// A listening TCP socket.
///
/// Binding is synchronous (it never waits on the network), so a listener can be made
/// before the runtime starts and handed to it.
pub struct TcpListener {
    fd: SocketFd,
}

impl TcpListener {
    /// Binds to the first of `addr`'s addresses that works, with `SO_REUSEADDR` so a
    /// restarted server can take its port back while old connections sit in TIME_WAIT.
    ///
    /// Name resolution, if `addr` needs any, blocks the calling thread.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let mut last_err = None;
        for addr in addr.to_socket_addrs()? {
            match Self::bind_one(&addr) {
                Ok(listener) => return Ok(listener),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(super::no_addresses))
    }

    fn bind_one(addr: &SocketAddr) -> io::Result<TcpListener> {
        let fd = super::socket(domain(addr), libc::SOCK_STREAM)?;
        super::set_int_option(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        super::bind(&fd, &RawAddr::from_inet(addr))?;
        super::listen(&fd)?;
        Ok(TcpListener {
            fd: SocketFd::new(fd),
        })
    }

    /// Adopts a listener made with `std` (made non-blocking, see the [module
    /// docs](super)).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        let fd = OwnedFd::from(listener);
        super::set_nonblocking(&fd)?;
        Ok(TcpListener {
            fd: SocketFd::new(fd),
        })
    }

    /// Waits for a connection.
    ///
    /// Errors such as `EMFILE` (out of descriptors) leave the connection queued in the
    /// kernel, so the listener stays usable: a later `accept` takes the connection once
    /// descriptors are free again.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = op::Accept::submit(self.fd.op()).await?;
        let stream = TcpStream {
            fd: SocketFd::new(fd),
        };
        Ok((stream, addr.to_inet()?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        super::local_addr(self.fd.as_raw_fd())?.to_inet()
    }

    /// Converts into a `std` listener for blocking code. It may be non-blocking (see the
    /// [module docs](super)); `set_nonblocking(false)` makes `accept` wait. If a dropped
    /// accept is still using the descriptor, the result is a duplicate, which can fail.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        Ok(self.fd.into_owned()?.into())
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Fallible for the reason [`TcpListener::into_std`] is.
impl TryFrom<TcpListener> for OwnedFd {
    type Error = io::Error;

    fn try_from(listener: TcpListener) -> io::Result<OwnedFd> {
        listener.fd.into_owned()
    }
}

/// A TCP connection.
///
/// Methods take `&self`, so one task may read while another writes (share it with an
/// `Arc`). Dropping the stream closes it once no operation holds it: one whose future was
/// dropped keeps the descriptor open until it completes, so it cannot act on a newer
/// socket that reuses the number.
pub struct TcpStream {
    fd: SocketFd,
}

impl TcpStream {
    /// Connects to the first of `addr`'s addresses that accepts, returning the last
    /// error if none does.
    ///
    /// Name resolution happens when `connect` is called, blocking the calling thread if
    /// `addr` is a host name; the returned future is `Send` whatever `addr` is.
    pub fn connect(
        addr: impl ToSocketAddrs,
    ) -> impl Future<Output = io::Result<TcpStream>> + Send + 'static {
        let addrs = addr.to_socket_addrs().map(|addrs| {
            addrs
                .map(|addr| RawAddr::from_inet(&addr))
                .collect::<Vec<_>>()
        });
        async move {
            let fd = stream::connect(addrs?, libc::SOCK_STREAM).await?;
            Ok(TcpStream { fd })
        }
    }

    /// Adopts a connected `std` stream (made non-blocking, see the [module
    /// docs](super)).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        let fd = OwnedFd::from(stream);
        super::set_nonblocking(&fd)?;
        Ok(TcpStream {
            fd: SocketFd::new(fd),
        })
    }

    /// Receives up to `buf`'s capacity into its start (overwriting what it held), so the
    /// first `n` bytes are the data. `Ok(0)` means the peer will send no more (or `buf`
    /// has no capacity).
    pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        stream::read(&self.fd, buf).await
    }

    /// Sends some of `buf`'s bytes; see [`write_all`](Self::write_all) to send them all.
    /// A closed peer is an error (`EPIPE`/`ECONNRESET`), never a `SIGPIPE`.
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        stream::write(&self.fd, buf).await
    }

    /// Sends all of `buf`'s bytes, resubmitting after short writes. On error some prefix
    /// may have been sent.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        stream::write_all(&self.fd, buf).await
    }

    /// `Shutdown::Write` sends FIN, so the peer reads `Ok(0)` while this side can still
    /// read the peer's reply.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        stream::shutdown(&self.fd, how).await
    }

    /// Closes through the ring, reporting errors a plain drop would ignore. If a dropped
    /// operation is still using the socket, it is closed when that operation completes
    /// instead, and this returns `Ok`.
    pub async fn close(self) -> io::Result<()> {
        self.fd.close().await
    }

    /// Converts into a `std` stream for blocking code. It may be non-blocking (see the
    /// [module docs](super)); `set_nonblocking(false)` makes reads wait. If a dropped
    /// operation is still using the descriptor, the result is a duplicate, which can fail.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        Ok(self.fd.into_owned()?.into())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        super::local_addr(self.fd.as_raw_fd())?.to_inet()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        super::peer_addr(self.fd.as_raw_fd())?.to_inet()
    }

    /// Disables Nagle's algorithm, for request/response traffic where small writes must
    /// not wait for the previous one's acknowledgement.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        super::set_int_option(
            self.fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            nodelay as libc::c_int,
        )
    }

    pub fn nodelay(&self) -> io::Result<bool> {
        super::int_option(self.fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY)
            .map(|value| value != 0)
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Fallible for the reason [`TcpStream::into_std`] is.
impl TryFrom<TcpStream> for OwnedFd {
    type Error = io::Error;

    fn try_from(stream: TcpStream) -> io::Result<OwnedFd> {
        stream.fd.into_owned()
    }
}
