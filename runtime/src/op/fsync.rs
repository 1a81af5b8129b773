//! FSYNC: flushes a file's data (and metadata, unless `datasync`).

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode, Syscall};

pub struct Fsync {
    fd: RawFd,
    datasync: bool,
}

impl Fsync {
    pub fn submit(fd: RawFd, datasync: bool) -> Op<Fsync> {
        Op::submit(Fsync { fd, datasync })
    }
}

// SAFETY: no pointers.
unsafe impl OpCode for Fsync {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        let mut fsync = opcode::Fsync::new(types::Fd(self.fd));
        if self.datasync {
            fsync = fsync.flags(types::FsyncFlags::DATASYNC);
        }
        fsync.build()
    }

    fn fallback(&mut self) -> Fallback {
        let (fd, datasync) = (self.fd, self.datasync);
        Fallback::Blocking(Syscall::new(move || {
            // SAFETY: no pointers.
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
