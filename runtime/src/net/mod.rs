//! Sockets: TCP, UDP and Unix streams whose reads and writes are ring operations.
//!
//! Every read and write takes its buffer by value and hands it back with the result
//! ([`BufResult`](crate::BufResult)), because the kernel may still be using the buffer
//! after the caller's future is gone; see [`crate::buf`].
//!
//! Sockets that this module creates with plain syscalls (listeners, UDP sockets,
//! [`UnixStream::pair`]) and sockets adopted with `from_std` are made non-blocking: the
//! fallback driver needs that to wait for readiness, and io_uring does not mind, so a
//! socket built outside the runtime works under either driver.
//!
//! Dropping a socket closes it once no operation holds it any longer: one whose future
//! was dropped keeps the descriptor open until it completes (see [`crate::op::OpFd`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::op::RawAddr;

mod slice;
mod socket_fd;
mod stream;
mod tcp;
mod udp;
mod unix;

pub use slice::Slice;
use socket_fd::SocketFd;
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixListener, UnixStream};

/// Connections the kernel queues for a listener before `accept` takes them; generous, so
/// bursts of connects are not dropped (and retried a second later) by the kernel.
const BACKLOG: i32 = 1024;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A socket made synchronously, for listeners and datagram sockets: creating one never
/// blocks, so there is nothing to gain from a ring submission, and `bind` must work
/// outside the runtime too.
fn socket(domain: i32, socket_type: i32) -> io::Result<OwnedFd> {
    let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: no pointers; the result is checked.
    let fd = cvt(unsafe { libc::socket(domain, socket_type | flags, 0) })?;
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int_option(fd: RawFd, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes one live c_int and its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn int_option(fd: RawFd, level: i32, name: i32) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into the live c_int.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

fn bind(fd: &OwnedFd, addr: &RawAddr) -> io::Result<()> {
    // SAFETY: the address is live and `len` bytes long.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr(), addr.len()) }).map(drop)
}

fn listen(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) }).map(drop)
}

/// The address the socket is bound to.
fn local_addr(fd: RawFd) -> io::Result<RawAddr> {
    let mut addr = RawAddr::empty();
    // SAFETY: the kernel writes at most `addr.len` bytes into the storage and updates
    // `len` to the address's real size.
    cvt(unsafe { libc::getsockname(fd, addr.as_mut_ptr(), &mut addr.len) })?;
    Ok(addr)
}

/// The address the socket is connected to.
fn peer_addr(fd: RawFd) -> io::Result<RawAddr> {
    let mut addr = RawAddr::empty();
    // SAFETY: as in `local_addr`.
    cvt(unsafe { libc::getpeername(fd, addr.as_mut_ptr(), &mut addr.len) })?;
    Ok(addr)
}

/// Makes an adopted socket usable by the fallback driver, which never blocks a worker.
fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL takes no pointer.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL takes an int, no pointer.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// What `connect`/`bind` report when name resolution produced nothing to try.
fn no_addresses() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "could not resolve to any addresses",
    )
}
