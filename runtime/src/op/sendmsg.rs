//! SENDMSG: sends one datagram to an address (UDP `send_to`).

use std::io;

use io_uring::{opcode, squeue, types};

use super::{cvt, Fallback, Interest, Op, OpCode, OpFd, RawAddr, Syscall};
use crate::buf::{IoBuf, SendPtr};
use crate::BufResult;

/// The message header, its one iovec and the address, in one allocation that does not
/// move: the header points at the other two.
pub(crate) struct MsgParts {
    pub(crate) msg: libc::msghdr,
    pub(crate) iov: libc::iovec,
    pub(crate) addr: RawAddr,
}

// SAFETY: the raw pointers inside point into the same allocation or into the op's
// buffer, both owned by the op that owns this.
unsafe impl std::marker::Send for MsgParts {}

impl MsgParts {
    pub(crate) fn new(ptr: *mut u8, len: usize, addr: RawAddr) -> Box<MsgParts> {
        let mut parts = Box::new(MsgParts {
            // SAFETY: msghdr is plain data; all-zero is a valid (empty) header.
            msg: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: ptr.cast(),
                iov_len: len,
            },
            addr,
        });
        parts.msg.msg_name = parts.addr.as_mut_ptr().cast();
        parts.msg.msg_namelen = parts.addr.len();
        parts.msg.msg_iov = &mut parts.iov;
        parts.msg.msg_iovlen = 1;
        parts
    }
}

pub struct SendMsg<B> {
    fd: OpFd,
    buf: B,
    parts: Box<MsgParts>,
}

impl<B: IoBuf> SendMsg<B> {
    pub fn submit(fd: OpFd, buf: B, addr: RawAddr) -> Op<SendMsg<B>> {
        let parts = MsgParts::new(buf.stable_ptr() as *mut u8, buf.bytes_init(), addr);
        Op::submit(SendMsg { fd, buf, parts })
    }
}

// SAFETY: the entry points at `parts` (heap, owned) which points into `buf` (stable,
// owned) and into itself, and names `fd`, which the op holds open.
unsafe impl<B: IoBuf> OpCode for SendMsg<B> {
    type Output = BufResult<usize, B>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::SendMsg::new(types::Fd(self.fd.as_raw_fd()), &self.parts.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    }

    fn fallback(&mut self) -> Fallback {
        let fd = self.fd.as_raw_fd();
        let msg = SendPtr::new(&self.parts.msg as *const libc::msghdr);
        Fallback::Readiness {
            fd,
            interest: Interest::Writable,
            call: Syscall::new(move || {
                let msg = msg;
                // SAFETY: the header, what it points at and fd belong to the op.
                cvt(unsafe { libc::sendmsg(fd, msg.0, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
            }),
        }
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> BufResult<usize, B> {
        (result.map(|n| n as usize), self.buf)
    }
}
