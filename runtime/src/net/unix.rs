//! Unix domain stream sockets.

use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{stream, SocketFd};
use crate::buf::{IoBuf, IoBufMut};
use crate::op::{self, RawAddr};
use crate::BufResult;

/// Runs `f` on a `std` view of `fd`, to reuse std's decoding of Unix addresses (which can
/// be unnamed or abstract, and which `std` alone can represent).
fn with_std<R>(fd: &OwnedFd, f: impl FnOnce(&std::os::unix::net::UnixStream) -> R) -> R {
    // SAFETY: `fd` is open for the whole call (borrowed), and ManuallyDrop keeps the view
    // from closing it; the view is only lent to `f`, so it cannot outlive the borrow.
    let view =
        ManuallyDrop::new(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd.as_raw_fd()) });
    f(&view)
}

/// A listening Unix stream socket. Dropping it does not remove its path, as with `std`.
pub struct UnixListener {
    fd: SocketFd,
}

impl UnixListener {
    /// Synchronous, like [`TcpListener::bind`](super::TcpListener::bind).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let addr = RawAddr::from_unix(path.as_ref())?;
        let fd = super::socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
        super::bind(&fd, &addr)?;
        super::listen(&fd)?;
        Ok(UnixListener {
            fd: SocketFd::new(fd),
        })
    }

    /// Adopts a `std` listener (made non-blocking, see the [module docs](super)).
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        let fd = OwnedFd::from(listener);
        super::set_nonblocking(&fd)?;
        Ok(UnixListener {
            fd: SocketFd::new(fd),
        })
    }

    /// Waits for a connection; as with TCP, a failed accept leaves the connection queued.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (fd, _) = op::Accept::submit(self.fd.op()).await?;
        let stream = UnixStream {
            fd: SocketFd::new(fd),
        };
        let addr = stream.peer_addr()?;
        Ok((stream, addr))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        with_std(&self.fd, |view| view.local_addr())
    }

    /// As [`TcpListener::into_std`](super::TcpListener::into_std).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        Ok(self.fd.into_owned()?.into())
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Fallible for the reason [`UnixListener::into_std`] is.
impl TryFrom<UnixListener> for OwnedFd {
    type Error = io::Error;

    fn try_from(listener: UnixListener) -> io::Result<OwnedFd> {
        listener.fd.into_owned()
    }
}

/// A Unix stream connection; see [`TcpStream`](super::TcpStream) for how its methods
/// behave.
pub struct UnixStream {
    fd: SocketFd,
}

impl UnixStream {
    /// Waits while the listener's backlog is full, as a blocking connect would.
    pub fn connect(
        path: impl AsRef<Path>,
    ) -> impl Future<Output = io::Result<UnixStream>> + Send + 'static {
        let addr = RawAddr::from_unix(path.as_ref());
        async move {
            let addr = addr?;
            let fd = stream::connect([addr.clone()], libc::SOCK_STREAM).await?;
            // With a full backlog a non-blocking Unix connect fails with EAGAIN, and the
            // fallback driver's connect then reports success for a socket that never
            // connected (it reads SO_ERROR, which is 0). Until the op handles that, check
            // and try again; an unconnected Unix socket is always "writable", so back off
            // on a timer rather than spin.
            while let Err(err) = super::peer_addr(fd.as_raw_fd()) {
                if err.raw_os_error() != Some(libc::ENOTCONN) {
                    return Err(err);
                }
                crate::time::sleep(Duration::from_millis(1)).await;
                op::Connect::submit(fd.op(), addr.clone()).await?;
            }
            Ok(UnixStream { fd })
        }
    }

    /// Two connected streams, e.g. to talk to a child process or between tasks.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let mut fds = [-1; 2];
        let socket_type = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: the kernel writes two fds into the live two-element array.
        super::cvt(unsafe { libc::socketpair(libc::AF_UNIX, socket_type, 0, fds.as_mut_ptr()) })?;
        // SAFETY: socketpair succeeded, so both are fresh fds that nothing else owns.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (a, b) = (SocketFd::new(a), SocketFd::new(b));
        Ok((UnixStream { fd: a }, UnixStream { fd: b }))
    }

    /// Adopts a connected `std` stream (made non-blocking, see the [module
    /// docs](super)).
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        let fd = OwnedFd::from(stream);
        super::set_nonblocking(&fd)?;
        Ok(UnixStream {
            fd: SocketFd::new(fd),
        })
    }

    pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        stream::read(&self.fd, buf).await
    }

    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        stream::write(&self.fd, buf).await
    }

    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        stream::write_all(&self.fd, buf).await
    }

    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        stream::shutdown(&self.fd, how).await
    }

    /// As [`TcpStream::close`](super::TcpStream::close).
    pub async fn close(self) -> io::Result<()> {
        self.fd.close().await
    }

    /// As [`TcpStream::into_std`](super::TcpStream::into_std).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        Ok(self.fd.into_owned()?.into())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        with_std(&self.fd, |view| view.local_addr())
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        with_std(&self.fd, |view| view.peer_addr())
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Fallible for the reason [`UnixStream::into_std`] is.
impl TryFrom<UnixStream> for OwnedFd {
    type Error = io::Error;

    fn try_from(stream: UnixStream) -> io::Result<OwnedFd> {
        stream.fd.into_owned()
    }
}
