//! RENAMEAT: renames a path.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Op, OpCode, Syscall};
use crate::buf::SendPtr;

pub struct RenameAt {
    from_dir: RawFd,
    from: CString,
    to_dir: RawFd,
    to: CString,
}

impl RenameAt {
    pub fn submit(from_dir: RawFd, from: CString, to_dir: RawFd, to: CString) -> Op<RenameAt> {
        Op::submit(RenameAt {
            from_dir,
            from,
            to_dir,
            to,
        })
    }
}

// SAFETY: the entry points at `from` and `to`, heap memory owned by the op.
unsafe impl OpCode for RenameAt {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::RenameAt::new(
            types::Fd(self.from_dir),
            self.from.as_ptr(),
            types::Fd(self.to_dir),
            self.to.as_ptr(),
        )
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let (from_dir, to_dir) = (self.from_dir, self.to_dir);
        let from = SendPtr::new(self.from.as_ptr());
        let to = SendPtr::new(self.to.as_ptr());
        Fallback::Blocking(Syscall::new(move || {
            let (from, to) = (from, to);
            // SAFETY: both paths belong to the op, alive until this call reports back.
            cvt(unsafe { libc::renameat(from_dir, from.0, to_dir, to.0) } as isize)
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
