//! FALLOCATE: reserves (or, with mode flags, punches) file space.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode, OpFd, Syscall};

pub struct Fallocate {
    fd: OpFd,
    offset: u64,
    len: u64,
    mode: i32,
}

impl Fallocate {
    pub fn submit(fd: OpFd, offset: u64, len: u64, mode: i32) -> Op<Fallocate> {
        Op::submit(Fallocate {
            fd,
            offset,
            len,
            mode,
        })
    }
}

// SAFETY: no pointers; the entry names `fd`, which the op holds open.
unsafe impl OpCode for Fallocate {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Fallocate::new(types::Fd(self.fd.as_raw_fd()), self.len)
            .offset(self.offset)
            .mode(self.mode)
            .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (fd, offset, len, mode) = (self.fd.as_raw_fd(), self.offset, self.len, self.mode);
        Fallback::Blocking(Syscall::new(move || {
            // SAFETY: no pointers; fd is the op's, open until this call reports back.
            cvt(
                unsafe { libc::fallocate(fd, mode, offset as libc::off_t, len as libc::off_t) }
                    as isize,
            )
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
