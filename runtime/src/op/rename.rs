//! RENAMEAT: renames a path.

use std::ffi::CString;
use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, raw_dir, Fallback, Op, OpCode, OpFd, Syscall};
use crate::buf::SendPtr;

pub struct RenameAt {
    from_dir: Option<OpFd>,
    from: CString,
    to_dir: Option<OpFd>,
    to: CString,
}

impl RenameAt {
    /// Each path resolves against its directory, or the working directory (`AT_FDCWD`)
    /// for `None`.
    pub fn submit(
        from_dir: Option<OpFd>,
        from: CString,
        to_dir: Option<OpFd>,
        to: CString,
    ) -> Op<RenameAt> {
        Op::submit(RenameAt {
            from_dir,
            from,
            to_dir,
            to,
        })
    }
}

// SAFETY: the entry points at `from` and `to`, heap memory owned by the op, and names
// `from_dir` and `to_dir`, which the op holds open.
unsafe impl OpCode for RenameAt {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::RenameAt::new(
            types::Fd(raw_dir(self.from_dir.as_ref())),
            self.from.as_ptr(),
            types::Fd(raw_dir(self.to_dir.as_ref())),
            self.to.as_ptr(),
        )
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let from_dir = raw_dir(self.from_dir.as_ref());
        let to_dir = raw_dir(self.to_dir.as_ref());
        let from = SendPtr::new(self.from.as_ptr());
        let to = SendPtr::new(self.to.as_ptr());
        Fallback::Blocking(Syscall::new(move || {
            let (from, to) = (from, to);
            // SAFETY: both paths and both dirfds belong to the op, alive until this call
            // reports back.
            cvt(unsafe { libc::renameat(from_dir, from.0, to_dir, to.0) } as isize)
        }))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
