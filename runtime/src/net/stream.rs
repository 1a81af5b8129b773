//! What TCP and Unix streams have in common: a connected socket read and written through
//! ring operations.

use std::io;
use std::net::Shutdown;

use super::{Slice, SocketFd};
use crate::buf::{IoBuf, IoBufMut};
use crate::op::{self, RawAddr};
use crate::BufResult;

/// Creates a socket and connects it through the ring, trying each address in turn as
/// `std` does, so a name with an unreachable address still gets to the others.
pub(super) async fn connect(
    addrs: impl IntoIterator<Item = RawAddr>,
    socket_type: i32,
) -> io::Result<SocketFd> {
    let mut last_err = None;
    for addr in addrs {
        let fd = SocketFd::new(op::Socket::submit(addr.family(), socket_type, 0).await?);
        match op::Connect::submit(fd.op(), addr).await {
            Ok(()) => return Ok(fd),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(super::no_addresses))
}

pub(super) async fn read<B: IoBufMut>(fd: &SocketFd, buf: B) -> BufResult<usize, B> {
    op::Recv::submit(fd.op(), buf, 0).await
}

pub(super) async fn write<B: IoBuf>(fd: &SocketFd, buf: B) -> BufResult<usize, B> {
    op::Send::submit(fd.op(), buf, 0).await
}

pub(super) async fn write_all<B: IoBuf>(fd: &SocketFd, buf: B) -> BufResult<(), B> {
    let len = buf.bytes_init();
    let mut sent = 0;
    let mut buf = buf;
    while sent < len {
        let (result, slice) = write(fd, Slice::new(buf, sent..len)).await;
        buf = slice.into_inner();
        match result {
            // A stream socket accepting nothing would loop forever; std reports the same.
            Ok(0) => {
                let err = io::Error::new(io::ErrorKind::WriteZero, "failed to write whole buffer");
                return (Err(err), buf);
            }
            Ok(n) => sent += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return (Err(err), buf),
        }
    }
    (Ok(()), buf)
}

pub(super) async fn shutdown(fd: &SocketFd, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    op::Shutdown::submit(fd.op(), how).await
}
