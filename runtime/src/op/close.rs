//! CLOSE: closes an fd through the ring.

use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode};

pub struct Close {
    fd: RawFd,
}

impl Close {
    /// Takes ownership of `fd`: it is closed whatever happens to the future.
    pub fn submit(fd: OwnedFd) -> Op<Close> {
        Op::submit(Close {
            fd: fd.into_raw_fd(),
        })
    }
}

// SAFETY: no pointers.
unsafe impl OpCode for Close {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Close::new(types::Fd(self.fd)).build()
    }

    fn fallback(&mut self) -> Fallback {
        let fd = self.fd;
        // SAFETY: the op owns fd and closes it exactly once.
        Fallback::Immediate(cvt(unsafe { libc::close(fd) } as isize))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
