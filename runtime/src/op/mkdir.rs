//! MKDIRAT: creates a directory.

use std::ffi::CString;
use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, raw_dir, Fallback, Op, OpCode, OpFd, Syscall};
use crate::buf::SendPtr;

pub struct MkDirAt {
    dir: Option<OpFd>,
    path: CString,
    mode: u32,
}

impl MkDirAt {
    /// Relative paths resolve against `dir`, or the working directory (`AT_FDCWD`) for
    /// `None`.
    pub fn submit(dir: Option<OpFd>, path: CString, mode: u32) -> Op<MkDirAt> {
        Op::submit(MkDirAt { dir, path, mode })
    }
}

// SAFETY: the entry points at `path`, heap memory owned by the op, and names `dir`,
// which the op holds open.
unsafe impl OpCode for MkDirAt {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::MkDirAt::new(types::Fd(raw_dir(self.dir.as_ref())), self.path.as_ptr())
            .mode(self.mode)
            .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (dirfd, mode) = (raw_dir(self.dir.as_ref()), self.mode);
        let path = SendPtr::new(self.path.as_ptr());
        Fallback::Blocking(Syscall::new(move || {
            let path = path;
            // SAFETY: the path and dirfd belong to the op, alive until this call reports
            // back.
            cvt(unsafe { libc::mkdirat(dirfd, path.0, mode as libc::mode_t) } as isize)
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
