//! FSYNC: flushes a file's data (and metadata, unless `datasync`).

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode, OpFd, Syscall};

pub struct Fsync {
    fd: OpFd,
    datasync: bool,
}

impl Fsync {
    pub fn submit(fd: OpFd, datasync: bool) -> Op<Fsync> {
        Op::submit(Fsync { fd, datasync })
    }
}

// SAFETY: no pointers; the entry names `fd`, which the op holds open.
unsafe impl OpCode for Fsync {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        let mut fsync = opcode::Fsync::new(types::Fd(self.fd.as_raw_fd()));
        if self.datasync {
            fsync = fsync.flags(types::FsyncFlags::DATASYNC);
        }
        fsync.build()
    }

    fn fallback(&mut self) -> Fallback {
        let (fd, datasync) = (self.fd.as_raw_fd(), self.datasync);
        Fallback::Blocking(Syscall::new(move || {
            // SAFETY: no pointers; fd is the op's, open until this call reports back.
            cvt(unsafe {
                if datasync {
                    libc::fdatasync(fd)
                } else {
                    libc::fsync(fd)
                }
            } as isize)
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
