//! SHUTDOWN: shuts down one or both directions of a connection.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode, OpFd};

pub struct Shutdown {
    fd: OpFd,
    how: i32,
}

impl Shutdown {
    /// `how` is `libc::SHUT_RD`, `SHUT_WR` or `SHUT_RDWR`.
    pub fn submit(fd: OpFd, how: i32) -> Op<Shutdown> {
        Op::submit(Shutdown { fd, how })
    }
}

// SAFETY: no pointers; the entry names `fd`, which the op holds open.
unsafe impl OpCode for Shutdown {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Shutdown::new(types::Fd(self.fd.as_raw_fd()), self.how).build()
    }

    fn fallback(&mut self) -> Fallback {
        // SAFETY: no pointers; the op holds fd open; shutdown does not block.
        Fallback::Immediate(cvt(
            unsafe { libc::shutdown(self.fd.as_raw_fd(), self.how) } as isize,
        ))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
