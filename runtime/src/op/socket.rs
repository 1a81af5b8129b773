//! SOCKET: creates a socket. Under the fallback driver the socket is non-blocking, since
//! that driver waits for readiness rather than submitting.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue};

use super::{cvt, Fallback, Op, OpCode};

pub struct Socket {
    domain: i32,
    socket_type: i32,
    protocol: i32,
}

impl Socket {
    /// `SOCK_CLOEXEC` is always added.
    pub fn submit(domain: i32, socket_type: i32, protocol: i32) -> Op<Socket> {
        Op::submit(Socket {
            domain,
            socket_type: socket_type | libc::SOCK_CLOEXEC,
            protocol,
        })
    }
}

// SAFETY: no pointers.
unsafe impl OpCode for Socket {
    type Output = io::Result<OwnedFd>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Socket::new(self.domain, self.socket_type, self.protocol).build()
    }

    fn fallback(&mut self) -> Fallback {
        let socket_type = self.socket_type | libc::SOCK_NONBLOCK;
        // SAFETY: no pointers.
        Fallback::Immediate(cvt(
            unsafe { libc::socket(self.domain, socket_type, self.protocol) } as isize,
        ))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<OwnedFd> {
        // SAFETY: a successful socket() returns a new fd that nothing else owns.
        result.map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    fn discard(self, result: io::Result<u32>) {
        drop(self.complete(result, 0));
    }
}
