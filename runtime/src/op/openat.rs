//! OPENAT: opens a path; the completion is the new fd. An fd opened for a future that was
//! dropped is closed, never leaked.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{cvt, raw_dir, Fallback, Op, OpCode, OpFd, Syscall};
use crate::buf::SendPtr;

pub struct OpenAt {
    dir: Option<OpFd>,
    /// The kernel reads the path; a CString's storage does not move with the op.
    path: CString,
    flags: i32,
    mode: u32,
}

impl OpenAt {
    /// `O_CLOEXEC` is always added. Relative paths resolve against `dir`, or the working
    /// directory (`AT_FDCWD`) for `None`.
    pub fn submit(dir: Option<OpFd>, path: CString, flags: i32, mode: u32) -> Op<OpenAt> {
        Op::submit(OpenAt {
            dir,
            path,
            flags: flags | libc::O_CLOEXEC,
            mode,
        })
    }
}

// SAFETY: the entry points at `path`, heap memory owned by the op, and names `dir`,
// which the op holds open.
unsafe impl OpCode for OpenAt {
    type Output = io::Result<OwnedFd>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::OpenAt::new(types::Fd(raw_dir(self.dir.as_ref())), self.path.as_ptr())
            .flags(self.flags)
            .mode(self.mode)
            .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (dirfd, flags, mode) = (raw_dir(self.dir.as_ref()), self.flags, self.mode);
        let path = SendPtr::new(self.path.as_ptr());
        Fallback::Blocking(Syscall::new(move || {
            let path = path;
            // SAFETY: the path and dirfd belong to the op, alive until this call reports
            // back.
            cvt(unsafe { libc::openat(dirfd, path.0, flags, mode) } as isize)
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<OwnedFd> {
        // SAFETY: a successful open returns a new fd that nothing else owns.
        result.map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    fn discard(self, result: io::Result<u32>) {
        drop(self.complete(result, 0));
    }
}
