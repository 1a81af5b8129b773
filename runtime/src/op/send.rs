//! SEND: sends an owned buffer's initialised bytes on a connected socket. `MSG_NOSIGNAL`
//! is always set: a closed peer is an `EPIPE` error, not a signal.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, io_len, Fallback, Interest, Op, OpCode, OpFd, Syscall};
use crate::buf::{IoBuf, SendPtr};
use crate::BufResult;

pub struct Send<B> {
    fd: OpFd,
    buf: B,
    flags: i32,
}

impl<B: IoBuf> Send<B> {
    pub fn submit(fd: OpFd, buf: B, flags: i32) -> Op<Send<B>> {
        Op::submit(Send {
            fd,
            buf,
            flags: flags | libc::MSG_NOSIGNAL,
        })
    }
}

// SAFETY: the entry points into `buf`, stable storage owned by the op, and names `fd`,
// which the op holds open.
unsafe impl<B: IoBuf> OpCode for Send<B> {
    type Output = BufResult<usize, B>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Send::new(
            types::Fd(self.fd.as_raw_fd()),
            self.buf.stable_ptr(),
            io_len(self.buf.bytes_init()),
        )
        .flags(self.flags)
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (fd, flags) = (self.fd.as_raw_fd(), self.flags | libc::MSG_DONTWAIT);
        let ptr = SendPtr::new(self.buf.stable_ptr());
        let len = io_len(self.buf.bytes_init()) as usize;
        Fallback::Readiness {
            fd,
            interest: Interest::Writable,
            call: Syscall::new(move || {
                let ptr = ptr;
                // SAFETY: the buffer and fd belong to the op, alive until this call returns.
                cvt(unsafe { libc::send(fd, ptr.0.cast(), len, flags) })
            }),
        }
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> BufResult<usize, B> {
        (result.map(|n| n as usize), self.buf)
    }
}
