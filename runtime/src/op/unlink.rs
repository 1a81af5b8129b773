//! UNLINKAT: removes a file, or an empty directory with `AT_REMOVEDIR`.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode, Syscall};
use crate::buf::SendPtr;

pub struct UnlinkAt {
    dirfd: RawFd,
    path: CString,
    flags: i32,
}

impl UnlinkAt {
    pub fn submit(dirfd: RawFd, path: CString, flags: i32) -> Op<UnlinkAt> {
        Op::submit(UnlinkAt { dirfd, path, flags })
    }
}

// SAFETY: the entry points at `path`, heap memory owned by the op.
unsafe impl OpCode for UnlinkAt {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::UnlinkAt::new(types::Fd(self.dirfd), self.path.as_ptr())
            .flags(self.flags)
            .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (dirfd, flags) = (self.dirfd, self.flags);
        let path = SendPtr::new(self.path.as_ptr());
        Fallback::Blocking(Syscall::new(move || {
            let path = path;
            // SAFETY: the path belongs to the op, alive until this call reports back.
            cvt(unsafe { libc::unlinkat(dirfd, path.0, flags) } as isize)
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
