//! MKDIRAT: creates a directory.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode, Syscall};
use crate::buf::SendPtr;

pub struct MkDirAt {
    dirfd: RawFd,
    path: CString,
    mode: u32,
}

impl MkDirAt {
    pub fn submit(dirfd: RawFd, path: CString, mode: u32) -> Op<MkDirAt> {
        Op::submit(MkDirAt { dirfd, path, mode })
    }
}

// SAFETY: the entry points at `path`, heap memory owned by the op.
unsafe impl OpCode for MkDirAt {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::MkDirAt::new(types::Fd(self.dirfd), self.path.as_ptr())
            .mode(self.mode)
            .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (dirfd, mode) = (self.dirfd, self.mode);
        let path = SendPtr::new(self.path.as_ptr());
        Fallback::Blocking(Syscall::new(move || {
            let path = path;
            // SAFETY: the path belongs to the op, alive until this call reports back.
            cvt(unsafe { libc::mkdirat(dirfd, path.0, mode as libc::mode_t) } as isize)
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
