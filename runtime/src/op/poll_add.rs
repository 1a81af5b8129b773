//! POLL_ADD: waits until an fd is ready; completes with the ready mask (`POLLIN`, ...).
//! The Python layer parks a greenlet on this for sockets it does not own.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Fallback, Interest, Op, OpCode, OpFd};

pub struct PollAdd {
    fd: OpFd,
    mask: u32,
}

impl PollAdd {
    /// `mask` is a poll(2) event mask such as `libc::POLLIN as u32`.
    pub fn submit(fd: OpFd, mask: u32) -> Op<PollAdd> {
        Op::submit(PollAdd { fd, mask })
    }
}

// SAFETY: no pointers; the entry (and the fallback's wait) names `fd`, which the op
// holds open.
unsafe impl OpCode for PollAdd {
    type Output = io::Result<u32>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(self.fd.as_raw_fd()), self.mask).build()
    }

    fn fallback(&mut self) -> Fallback {
        let interest = if self.mask & libc::POLLOUT as u32 != 0 {
            Interest::Writable
        } else {
            Interest::Readable
        };
        Fallback::Poll {
            fd: self.fd.as_raw_fd(),
            interest,
        }
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<u32> {
        result
    }
}
