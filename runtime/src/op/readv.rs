//! READV: scatters a read over several owned buffers.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode, OpFd, Syscall};
use crate::buf::{IoBufMut, IoVecs, SendPtr};
use crate::BufResult;

pub struct Readv<B> {
    fd: OpFd,
    bufs: Vec<B>,
    /// The kernel reads this array; a Vec's storage does not move with the op.
    iovecs: IoVecs,
    offset: u64,
}

impl<B: IoBufMut> Readv<B> {
    pub fn submit(fd: OpFd, mut bufs: Vec<B>, offset: u64) -> Op<Readv<B>> {
        let iovecs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|buf| libc::iovec {
                iov_base: buf.stable_mut_ptr().cast(),
                iov_len: buf.bytes_total(),
            })
            .collect();
        let iovecs = IoVecs(iovecs);
        Op::submit(Readv {
            fd,
            bufs,
            iovecs,
            offset,
        })
    }
}

// SAFETY: the entry points at `iovecs` (heap, owned) which point into `bufs` (stable,
// owned).
unsafe impl<B: IoBufMut> OpCode for Readv<B> {
    type Output = BufResult<usize, Vec<B>>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Readv::new(
            types::Fd(self.fd.as_raw_fd()),
            self.iovecs.0.as_ptr(),
            self.iovecs.0.len() as u32,
        )
        .offset(self.offset)
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (fd, offset) = (self.fd.as_raw_fd(), self.offset);
        let iov = SendPtr::new(self.iovecs.0.as_ptr());
        let count = self.iovecs.0.len() as i32;
        Fallback::Blocking(Syscall::new(move || {
            let iov = iov;
            // SAFETY: the iovec array, the buffers it names and fd belong to the op,
            // alive until this call reports back.
            cvt(unsafe {
                if offset == u64::MAX {
                    libc::readv(fd, iov.0, count)
                } else {
                    libc::preadv(fd, iov.0, count, offset as libc::off_t)
                }
            })
        }))
    }

    fn complete(mut self, result: io::Result<u32>, _flags: u32) -> BufResult<usize, Vec<B>> {
        let result = result.map(|n| n as usize);
        if let Ok(mut left) = result {
            for buf in &mut self.bufs {
                let filled = left.min(buf.bytes_total());
                // SAFETY: the kernel filled the buffers in order; this one got `filled`.
                unsafe { buf.set_init(filled) };
                left -= filled;
            }
        }
        (result, self.bufs)
    }
}
