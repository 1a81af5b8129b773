//! SHUTDOWN: shuts down one or both directions of a connection.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode};

pub struct Shutdown {
    fd: RawFd,
    how: i32,
}

impl Shutdown {
    /// `how` is `libc::SHUT_RD`, `SHUT_WR` or `SHUT_RDWR`.
    pub fn submit(fd: RawFd, how: i32) -> Op<Shutdown> {
        Op::submit(Shutdown { fd, how })
    }
}

// SAFETY: no pointers.
unsafe impl OpCode for Shutdown {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Shutdown::new(types::Fd(self.fd), self.how).build()
    }

    fn fallback(&mut self) -> Fallback {
        // SAFETY: no pointers; shutdown does not block.
        Fallback::Immediate(cvt(unsafe { libc::shutdown(self.fd, self.how) } as isize))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
