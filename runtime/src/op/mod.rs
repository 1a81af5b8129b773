//! Operations: one file per kind of submission.
//!
//! Each op type says three things: how to prepare its SQE ([`OpCode::uring_entry`]), how
//! the fallback driver performs it without io_uring ([`OpCode::fallback`]), and what its
//! completion means ([`OpCode::complete`]). The op's value owns everything the kernel
//! reads or writes (buffers, paths, addresses) in heap memory that does not move, and the
//! descriptors it names ([`OpFd`]), and [`Op`] guarantees that value outlives the kernel's
//! use of it: a dropped `Op` hands its data to the driver, which keeps it until the
//! completion arrives.

mod accept;
mod close;
mod connect;
mod fallocate;
mod fd;
mod fsync;
mod mkdir;
mod nop;
mod openat;
mod poll_add;
mod read;
mod readv;
mod recv;
mod recvmsg;
mod rename;
mod send;
mod sendmsg;
mod shutdown;
mod socket;
mod statx;
mod timeout;
mod unlink;
mod write;
mod writev;

pub use accept::Accept;
pub use close::Close;
pub use connect::Connect;
pub use fallocate::Fallocate;
pub(crate) use fd::raw_dir;
pub use fd::OpFd;
pub use fsync::Fsync;
pub use mkdir::MkDirAt;
pub use nop::Nop;
pub use openat::OpenAt;
pub use poll_add::PollAdd;
pub use read::Read;
pub use readv::Readv;
pub use recv::Recv;
pub use recvmsg::RecvMsg;
pub use rename::RenameAt;
pub use send::Send;
pub use sendmsg::SendMsg;
pub use shutdown::Shutdown;
pub use socket::Socket;
pub use statx::Statx;
pub use timeout::Timeout;
pub use unlink::UnlinkAt;
pub use write::Write;
pub use writev::Writev;

mod sockaddr;

pub(crate) use crate::driver::op::{cvt, fallback_active, io_len};
pub use crate::driver::op::{Fallback, Interest, Op, OpCode, Syscall};
pub use sockaddr::RawAddr;
