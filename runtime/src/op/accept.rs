//! ACCEPT: takes a connection from a listening socket. A connection accepted for a future
//! that was dropped is closed, never leaked.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Interest, Op, OpCode, OpFd, RawAddr, Syscall};
use crate::buf::SendPtr;

pub struct Accept {
    fd: OpFd,
    flags: i32,
    /// Written by the kernel (the peer's address and its length); boxed so it does not
    /// move.
    addr: Box<RawAddr>,
}

impl Accept {
    /// `SOCK_CLOEXEC` is always added (and `SOCK_NONBLOCK` under the fallback driver).
    pub fn submit(fd: OpFd) -> Op<Accept> {
        let flags = libc::SOCK_CLOEXEC
            | if super::fallback_active() {
                libc::SOCK_NONBLOCK
            } else {
                0
            };
        Op::submit(Accept {
            fd,
            flags,
            addr: Box::new(RawAddr::empty()),
        })
    }
}

// SAFETY: the entry points into `addr`, heap memory owned by the op, and names `fd`,
// which the op holds open.
unsafe impl OpCode for Accept {
    type Output = io::Result<(OwnedFd, RawAddr)>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Accept::new(
            types::Fd(self.fd.as_raw_fd()),
            self.addr.as_mut_ptr(),
            &mut self.addr.len,
        )
        .flags(self.flags)
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (fd, flags) = (self.fd.as_raw_fd(), self.flags);
        let addr = SendPtr(&mut *self.addr as *mut RawAddr);
        Fallback::Readiness {
            fd,
            interest: Interest::Readable,
            call: Syscall::new(move || {
                let addr = addr;
                // The listener may be a caller's blocking socket: accept only once it is
                // readable, so the worker never blocks in accept4.
                let mut pollfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one live pollfd naming the op's open fd, zero timeout.
                if unsafe { libc::poll(&mut pollfd, 1, 0) } == 0 {
                    return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                }
                // SAFETY: the address buffer and fd belong to the op, alive until this returns.
                unsafe {
                    let raw = &mut *addr.0;
                    raw.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                    cvt(libc::accept4(fd, raw.as_mut_ptr(), &mut raw.len, flags) as isize)
                }
            }),
        }
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<(OwnedFd, RawAddr)> {
        // SAFETY: a successful accept returns a new fd that nothing else owns.
        result.map(|fd| (unsafe { OwnedFd::from_raw_fd(fd as RawFd) }, *self.addr))
    }

    fn discard(self, result: io::Result<u32>) {
        drop(self.complete(result, 0));
    }
}
