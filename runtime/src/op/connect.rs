//! CONNECT: connects a socket to an address.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{Fallback, Interest, Op, OpCode, OpFd, RawAddr, Syscall};
use crate::buf::SendPtr;

pub struct Connect {
    fd: OpFd,
    /// Read by the kernel; boxed so it does not move.
    addr: Box<RawAddr>,
}

impl Connect {
    pub fn submit(fd: OpFd, addr: RawAddr) -> Op<Connect> {
        Op::submit(Connect {
            fd,
            addr: Box::new(addr),
        })
    }
}

fn socket_error(fd: RawFd) -> io::Result<u32> {
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: writes one c_int and its length into live locals.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    match error {
        0 => Ok(0),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

// SAFETY: the entry points at `addr`, heap memory owned by the op, and names `fd`, which
// the op holds open.
unsafe impl OpCode for Connect {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Connect::new(
            types::Fd(self.fd.as_raw_fd()),
            self.addr.as_ptr(),
            self.addr.len(),
        )
        .build()
    }

    fn fallback(&mut self) -> Fallback {
        let fd = self.fd.as_raw_fd();
        let addr = SendPtr::new(&*self.addr as *const RawAddr);
        // Set once connect() said EINPROGRESS: the attempt then runs in the kernel and
        // its outcome is the socket's pending error once it is writable. After EAGAIN
        // (a unix listener's full backlog) nothing is in progress: connect again.
        let mut in_progress = false;
        Fallback::Readiness {
            fd,
            interest: Interest::Writable,
            call: Syscall::new(move || {
                let addr = addr;
                if in_progress {
                    return socket_error(fd);
                }
                // SAFETY: the address and fd belong to the op, alive until this call returns.
                let rc = unsafe { libc::connect(fd, (*addr.0).as_ptr(), (*addr.0).len()) };
                if rc == 0 {
                    return Ok(0);
                }
                let err = io::Error::last_os_error();
                in_progress = err.raw_os_error() == Some(libc::EINPROGRESS);
                Err(err)
            }),
        }
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
