//! CLOSE: closes an fd through the ring.

use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode};

pub struct Close {
    fd: RawFd,
    /// A driver took the op (the kernel or the fallback closes `fd`); until then, a
    /// failed or dropped op closes it itself.
    taken: bool,
}

impl Close {
    /// Takes ownership of `fd`: it is closed whatever happens to the future, also when
    /// the op cannot be submitted (no runtime on this thread).
    pub fn submit(fd: OwnedFd) -> Op<Close> {
        Op::submit(Close {
            fd: fd.into_raw_fd(),
            taken: false,
        })
    }

    /// Closes `fd` here if no driver took the op.
    fn close_untaken(&self) -> io::Result<()> {
        if self.taken {
            return Ok(());
        }
        // SAFETY: the op owns fd, and no driver was handed it.
        cvt(unsafe { libc::close(self.fd) } as isize).map(drop)
    }
}

// SAFETY: no pointers.
unsafe impl OpCode for Close {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        self.taken = true;
        opcode::Close::new(types::Fd(self.fd)).build()
    }

    fn fallback(&mut self) -> Fallback {
        self.taken = true;
        let fd = self.fd;
        // SAFETY: the op owns fd and closes it exactly once.
        Fallback::Immediate(cvt(unsafe { libc::close(fd) } as isize))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        // Never submitted: the op's own error, after closing the fd it owns.
        self.close_untaken()?;
        result.map(drop)
    }

    fn discard(self, _result: io::Result<u32>) {
        let _ = self.close_untaken();
    }
}
