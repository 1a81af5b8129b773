//! UNLINKAT: removes a file, or an empty directory with `AT_REMOVEDIR`.

use std::ffi::CString;
use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, raw_dir, Fallback, Op, OpCode, OpFd, Syscall};
use crate::buf::SendPtr;

pub struct UnlinkAt {
    dir: Option<OpFd>,
    path: CString,
    flags: i32,
}

impl UnlinkAt {
    /// Relative paths resolve against `dir`, or the working directory (`AT_FDCWD`) for
    /// `None`.
    pub fn submit(dir: Option<OpFd>, path: CString, flags: i32) -> Op<UnlinkAt> {
        Op::submit(UnlinkAt { dir, path, flags })
    }
}

// SAFETY: the entry points at `path`, heap memory owned by the op, and names `dir`,
// which the op holds open.
unsafe impl OpCode for UnlinkAt {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::UnlinkAt::new(types::Fd(raw_dir(self.dir.as_ref())), self.path.as_ptr())
            .flags(self.flags)
            .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (dirfd, flags) = (raw_dir(self.dir.as_ref()), self.flags);
        let path = SendPtr::new(self.path.as_ptr());
        Fallback::Blocking(Syscall::new(move || {
            let path = path;
            // SAFETY: the path and dirfd belong to the op, alive until this call reports
            // back.
            cvt(unsafe { libc::unlinkat(dirfd, path.0, flags) } as isize)
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
