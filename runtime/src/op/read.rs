//! READ: reads into an owned buffer at an offset (`u64::MAX`: the file position).

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, io_len, Fallback, Op, OpCode, OpFd, Syscall};
use crate::buf::{IoBufMut, SendPtr};
use crate::BufResult;

pub struct Read<B> {
    fd: OpFd,
    buf: B,
    offset: u64,
}

impl<B: IoBufMut> Read<B> {
    /// Reads up to `buf.bytes_total()` bytes from `fd` at `offset`; the buffer's
    /// initialised length becomes the number of bytes read.
    pub fn submit(fd: OpFd, buf: B, offset: u64) -> Op<Read<B>> {
        Op::submit(Read { fd, buf, offset })
    }
}

// SAFETY: the entry points into `buf`, whose storage is stable (IoBufMut) and owned by
// the op, and names `fd`, which the op holds open.
unsafe impl<B: IoBufMut> OpCode for Read<B> {
    type Output = BufResult<usize, B>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Read::new(
            types::Fd(self.fd.as_raw_fd()),
            self.buf.stable_mut_ptr(),
            io_len(self.buf.bytes_total()),
        )
        .offset(self.offset)
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (fd, offset) = (self.fd.as_raw_fd(), self.offset);
        let ptr = SendPtr(self.buf.stable_mut_ptr());
        let len = io_len(self.buf.bytes_total()) as usize;
        Fallback::Blocking(Syscall::new(move || {
            let ptr = ptr;
            // SAFETY: ptr/len describe the op's buffer and fd is the op's descriptor, both
            // alive until this call reports back.
            cvt(unsafe {
                if offset == u64::MAX {
                    libc::read(fd, ptr.0.cast(), len)
                } else {
                    libc::pread(fd, ptr.0.cast(), len, offset as libc::off_t)
                }
            })
        }))
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
