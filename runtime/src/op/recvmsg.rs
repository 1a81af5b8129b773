//! RECVMSG: receives one datagram and its sender's address (UDP `recv_from`).

use std::io;

use io_uring::{opcode, squeue, types};

use super::sendmsg::MsgParts;
use super::{cvt, Fallback, Interest, Op, OpCode, OpFd, RawAddr, Syscall};
use crate::buf::{IoBufMut, SendPtr};
use crate::BufResult;

pub struct RecvMsg<B> {
    fd: OpFd,
    buf: B,
    parts: Box<MsgParts>,
}

impl<B: IoBufMut> RecvMsg<B> {
    pub fn submit(fd: OpFd, mut buf: B) -> Op<RecvMsg<B>> {
        let parts = MsgParts::new(buf.stable_mut_ptr(), buf.bytes_total(), RawAddr::empty());
        Op::submit(RecvMsg { fd, buf, parts })
    }
}

// SAFETY: the entry points at `parts` (heap, owned) which points into `buf` (stable,
// owned) and into itself, and names `fd`, which the op holds open.
unsafe impl<B: IoBufMut> OpCode for RecvMsg<B> {
    type Output = BufResult<(usize, RawAddr), B>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::RecvMsg::new(types::Fd(self.fd.as_raw_fd()), &mut self.parts.msg).build()
    }

    fn fallback(&mut self) -> Fallback {
        let fd = self.fd.as_raw_fd();
        let msg = SendPtr(&mut self.parts.msg as *mut libc::msghdr);
        Fallback::Readiness {
            fd,
            interest: Interest::Readable,
            call: Syscall::new(move || {
                let msg = msg;
                // SAFETY: the header, what it points at and fd belong to the op.
                cvt(unsafe { libc::recvmsg(fd, msg.0, libc::MSG_DONTWAIT) })
            }),
        }
    }

    fn complete(mut self, result: io::Result<u32>, _flags: u32) -> BufResult<(usize, RawAddr), B> {
        match result {
            Ok(n) => {
                // SAFETY: the kernel wrote n bytes at the start of the buffer.
                unsafe { self.buf.set_init(n as usize) };
                let mut addr = self.parts.addr.clone();
                addr.len = self.parts.msg.msg_namelen;
                (Ok((n as usize, addr)), self.buf)
            }
            Err(err) => (Err(err), self.buf),
        }
    }
}
