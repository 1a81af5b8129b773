//! WRITE: writes an owned buffer's initialised bytes at an offset (`u64::MAX`: the file
//! position).

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, io_len, Fallback, Op, OpCode, OpFd, Syscall};
use crate::buf::{IoBuf, SendPtr};
use crate::BufResult;

pub struct Write<B> {
    fd: OpFd,
    buf: B,
    offset: u64,
}

impl<B: IoBuf> Write<B> {
    pub fn submit(fd: OpFd, buf: B, offset: u64) -> Op<Write<B>> {
        Op::submit(Write { fd, buf, offset })
    }
}

// SAFETY: the entry points into `buf`, whose storage is stable and owned by the op, and
// names `fd`, which the op holds open.
unsafe impl<B: IoBuf> OpCode for Write<B> {
    type Output = BufResult<usize, B>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Write::new(
            types::Fd(self.fd.as_raw_fd()),
            self.buf.stable_ptr(),
            io_len(self.buf.bytes_init()),
        )
        .offset(self.offset)
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (fd, offset) = (self.fd.as_raw_fd(), self.offset);
        let ptr = SendPtr::new(self.buf.stable_ptr());
        let len = io_len(self.buf.bytes_init()) as usize;
        Fallback::Blocking(Syscall::new(move || {
            let ptr = ptr;
            // SAFETY: ptr/len describe the op's buffer and fd is the op's descriptor, both
            // alive until this call reports back.
            cvt(unsafe {
                if offset == u64::MAX {
                    libc::write(fd, ptr.0.cast(), len)
                } else {
                    libc::pwrite(fd, ptr.0.cast(), len, offset as libc::off_t)
                }
            })
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> BufResult<usize, B> {
        (result.map(|n| n as usize), self.buf)
    }
}
