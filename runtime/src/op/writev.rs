//! WRITEV: gathers a write from several owned buffers.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode, OpFd, Syscall};
use crate::buf::{IoBuf, IoVecs, SendPtr};
use crate::BufResult;

pub struct Writev<B> {
    fd: OpFd,
    bufs: Vec<B>,
    iovecs: IoVecs,
    offset: u64,
}

impl<B: IoBuf> Writev<B> {
    pub fn submit(fd: OpFd, bufs: Vec<B>, offset: u64) -> Op<Writev<B>> {
        let iovecs: Vec<libc::iovec> = bufs
            .iter()
            .map(|buf| libc::iovec {
                iov_base: buf.stable_ptr() as *mut libc::c_void,
                iov_len: buf.bytes_init(),
            })
            .collect();
        let iovecs = IoVecs(iovecs);
        Op::submit(Writev {
            fd,
            bufs,
            iovecs,
            offset,
        })
    }
}

// SAFETY: the entry points at `iovecs` (heap, owned) which point into `bufs` (stable,
// owned).
unsafe impl<B: IoBuf> OpCode for Writev<B> {
    type Output = BufResult<usize, Vec<B>>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Writev::new(
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
            // SAFETY: the iovec array, its buffers and fd belong to the op, alive until
            // this call reports back.
            cvt(unsafe {
                if offset == u64::MAX {
                    libc::writev(fd, iov.0, count)
                } else {
                    libc::pwritev(fd, iov.0, count, offset as libc::off_t)
                }
            })
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> BufResult<usize, Vec<B>> {
        (result.map(|n| n as usize), self.bufs)
    }
}
