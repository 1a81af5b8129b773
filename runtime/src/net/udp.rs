//! UDP sockets.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::SocketFd;
use crate::buf::{IoBuf, IoBufMut};
use crate::op::{self, RawAddr};
use crate::BufResult;

/// A UDP socket. Each send is one datagram and each receive takes one; a datagram longer
/// than the receive buffer's capacity is truncated, as with any UDP socket.
///
/// Dropping it closes it once no operation holds it, as with
/// [`TcpStream`](super::TcpStream).
pub struct UdpSocket {
    fd: SocketFd,
}

impl UdpSocket {
    /// Binds to the first of `addr`'s addresses that works. Synchronous: binding never
    /// waits on the network.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let mut last_err = None;
        for addr in addr.to_socket_addrs()? {
            let domain = match addr {
                SocketAddr::V4(_) => libc::AF_INET,
                SocketAddr::V6(_) => libc::AF_INET6,
            };
            let bound = super::socket(domain, libc::SOCK_DGRAM).and_then(|fd| {
                super::bind(&fd, &RawAddr::from_inet(&addr))?;
                Ok(SocketFd::new(fd))
            });
            match bound {
                Ok(fd) => return Ok(UdpSocket { fd }),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(super::no_addresses))
    }

    /// Adopts a `std` socket (made non-blocking, see the [module docs](super)).
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        let fd = OwnedFd::from(socket);
        super::set_nonblocking(&fd)?;
        Ok(UdpSocket {
            fd: SocketFd::new(fd),
        })
    }

    /// Sets the default peer for [`send`](Self::send) and filters what
    /// [`recv`](Self::recv) sees to datagrams from it.
    ///
    /// A UDP connect only records the address, it never waits on the network, so it is a
    /// plain syscall; it is `async` to match the stream types. Resolution happens when
    /// it is called.
    pub fn connect(
        &self,
        addr: impl ToSocketAddrs,
    ) -> impl Future<Output = io::Result<()>> + Send + '_ {
        let addrs = addr
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>());
        async move {
            let mut last_err = None;
            for addr in addrs? {
                let raw = RawAddr::from_inet(&addr);
                // SAFETY: the address is live and `len` bytes long.
                let rc = unsafe { libc::connect(self.fd.as_raw_fd(), raw.as_ptr(), raw.len()) };
                match super::cvt(rc) {
                    Ok(_) => return Ok(()),
                    Err(err) => last_err = Some(err),
                }
            }
            Err(last_err.unwrap_or_else(super::no_addresses))
        }
    }

    /// Sends `buf`'s bytes as one datagram to `addr`.
    pub async fn send_to<B: IoBuf>(&self, buf: B, addr: SocketAddr) -> BufResult<usize, B> {
        op::SendMsg::submit(self.fd.op(), buf, RawAddr::from_inet(&addr)).await
    }

    /// Receives one datagram into `buf`'s start, with its sender's address.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (result, buf) = op::RecvMsg::submit(self.fd.op(), buf).await;
        let result = result.and_then(|(n, addr)| Ok((n, addr.to_inet()?)));
        (result, buf)
    }

    /// Sends one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        op::Send::submit(self.fd.op(), buf, 0).await
    }

    /// Receives one datagram from the connected peer into `buf`'s start.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        op::Recv::submit(self.fd.op(), buf, 0).await
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        super::local_addr(self.fd.as_raw_fd())?.to_inet()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        super::peer_addr(self.fd.as_raw_fd())?.to_inet()
    }

    /// Converts into a `std` socket for blocking code. It may be non-blocking (see the
    /// [module docs](super)); `set_nonblocking(false)` makes receives wait. If a dropped
    /// operation is still using the descriptor, the result is a duplicate, which can fail.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        Ok(self.fd.into_owned()?.into())
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Fallible for the reason [`UdpSocket::into_std`] is.
impl TryFrom<UdpSocket> for OwnedFd {
    type Error = io::Error;

    fn try_from(socket: UdpSocket) -> io::Result<OwnedFd> {
        socket.fd.into_owned()
    }
}
