//! STATX: metadata of a path, or of an fd itself (the fd as `dir`, an empty path and
//! `AT_EMPTY_PATH`).

use std::ffi::CString;
use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, raw_dir, Fallback, Op, OpCode, OpFd, Syscall};
use crate::buf::SendPtr;

pub struct Statx {
    dir: Option<OpFd>,
    path: CString,
    flags: i32,
    mask: u32,
    /// Written by the kernel; boxed so it does not move.
    buf: Box<libc::statx>,
}

impl Statx {
    /// Relative paths resolve against `dir`, or the working directory (`AT_FDCWD`) for
    /// `None`.
    pub fn submit(dir: Option<OpFd>, path: CString, flags: i32, mask: u32) -> Op<Statx> {
        Op::submit(Statx {
            dir,
            path,
            flags,
            mask,
            // SAFETY: statx is plain data; zero is a valid value.
            buf: Box::new(unsafe { std::mem::zeroed() }),
        })
    }
}

// SAFETY: the entry points at `path` and `buf`, heap memory owned by the op, and names
// `dir`, which the op holds open.
unsafe impl OpCode for Statx {
    type Output = io::Result<libc::statx>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Statx::new(
            types::Fd(raw_dir(self.dir.as_ref())),
            self.path.as_ptr(),
            (&mut *self.buf as *mut libc::statx).cast::<types::statx>(),
        )
        .flags(self.flags)
        .mask(self.mask)
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (dirfd, flags, mask) = (raw_dir(self.dir.as_ref()), self.flags, self.mask);
        let path = SendPtr::new(self.path.as_ptr());
        let buf = SendPtr(&mut *self.buf as *mut libc::statx);
        Fallback::Blocking(Syscall::new(move || {
            let (path, buf) = (path, buf);
            // SAFETY: path, buf and dirfd belong to the op, alive until this call reports
            // back.
            cvt(unsafe { libc::statx(dirfd, path.0, flags, mask, buf.0) } as isize)
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<libc::statx> {
        result.map(|_| *self.buf)
    }
}
