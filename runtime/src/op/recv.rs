//! RECV: receives into an owned buffer from a connected socket.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, io_len, Fallback, Interest, Op, OpCode, OpFd, Syscall};
use crate::buf::{IoBufMut, SendPtr};
use crate::BufResult;

pub struct Recv<B> {
    fd: OpFd,
    buf: B,
    flags: i32,
}

impl<B: IoBufMut> Recv<B> {
    pub fn submit(fd: OpFd, buf: B, flags: i32) -> Op<Recv<B>> {
        Op::submit(Recv { fd, buf, flags })
    }
}

// SAFETY: the entry points into `buf`, stable storage owned by the op, and names `fd`,
// which the op holds open.
unsafe impl<B: IoBufMut> OpCode for Recv<B> {
    type Output = BufResult<usize, B>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Recv::new(
            types::Fd(self.fd.as_raw_fd()),
            self.buf.stable_mut_ptr(),
            io_len(self.buf.bytes_total()),
        )
        .flags(self.flags)
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (fd, flags) = (self.fd.as_raw_fd(), self.flags | libc::MSG_DONTWAIT);
        let ptr = SendPtr(self.buf.stable_mut_ptr());
        let len = io_len(self.buf.bytes_total()) as usize;
        Fallback::Readiness {
            fd,
            interest: Interest::Readable,
            call: Syscall::new(move || {
                let ptr = ptr;
                // SAFETY: the buffer and fd belong to the op, alive until this call returns.
                cvt(unsafe { libc::recv(fd, ptr.0.cast(), len, flags) })
            }),
        }
    }

    fn complete(mut self, result: io::Result<u32>, _flags: u32) -> BufResult<usize, B> {
        let result = result.map(|n| n as usize);
        if let Ok(n) = result {
            // SAFETY: the kernel wrote n bytes at the start of the buffer.
            unsafe { self.buf.set_init(n) };
        }
        (result, self.buf)
    }
}
