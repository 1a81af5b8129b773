//! The descriptor an op works on, which the op keeps open until its completion arrives.
//!
//! An fd is a number, resolved whenever it is used. A dropped [`Op`](super::Op) still
//! runs: an SQE queued but not yet submitted resolves its fd at submission (work the
//! kernel punts to io-wq, later still), and under the fallback driver a blocking-pool call
//! or an epoll readiness retry uses the number whenever it runs. If the owner could close
//! the fd meanwhile, a new file or socket could be given the same number, and the
//! abandoned read, write, fallocate or recv would act on that one instead. So an op holds
//! its fd the way it holds its buffers: for as long as the driver holds the op.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// A file descriptor as an op holds it: open until the op's completion arrives, whatever
/// happens to the op's future.
///
/// Usually shared: the op keeps a reference, so the descriptor closes when its owner
/// *and* every op using it have let go. [`OpFd::borrowed`] is for layers that own their
/// descriptors elsewhere and can promise the same themselves.
#[derive(Clone, Debug)]
pub struct OpFd(Form);

#[derive(Clone, Debug)]
enum Form {
    Shared(Arc<OwnedFd>),
    Borrowed(RawFd),
}

impl OpFd {
    /// Holds a reference on `fd`: dropping the owner's `Arc` while an op is in flight
    /// leaves the descriptor open until that op completes.
    pub fn shared(fd: Arc<OwnedFd>) -> OpFd {
        OpFd(Form::Shared(fd))
    }

    /// A descriptor the caller owns and keeps open itself, for layers (such as the
    /// Python bindings) whose descriptors belong to objects ringloom cannot hold.
    ///
    /// # Safety
    /// `fd` must stay open, and must not be closed and reopened as something else, until
    /// every op given this `OpFd` (or a clone of it) has *completed*: until its future
    /// returned, or, for an op whose future was dropped, until the driver has reaped its
    /// completion (`ops_completed` has caught up with `ops_submitted`). Dropping the
    /// futures is not enough: a dropped op still runs, or is cancelled, later.
    ///
    /// What the contract protects is the file the number names when the op acts. Under
    /// io_uring the kernel resolves the number once, when it takes the entry, and holds
    /// the file from then on: a caller that submits at once (`driver::submit_now`), or
    /// whose op acts on no memory and whose result is only a hint (a POLL_ADD, whose
    /// readiness callers re-check with their own syscall), may keep the number open only
    /// until the submission; the Python bindings rely on this, and say so where they
    /// lend. The fallback driver uses the number for as long as the op waits.
    pub unsafe fn borrowed(fd: RawFd) -> OpFd {
        OpFd(Form::Borrowed(fd))
    }

    pub fn as_raw_fd(&self) -> RawFd {
        match &self.0 {
            Form::Shared(fd) => fd.as_raw_fd(),
            Form::Borrowed(fd) => *fd,
        }
    }
}

impl AsRawFd for OpFd {
    fn as_raw_fd(&self) -> RawFd {
        OpFd::as_raw_fd(self)
    }
}

impl From<Arc<OwnedFd>> for OpFd {
    fn from(fd: Arc<OwnedFd>) -> OpFd {
        OpFd::shared(fd)
    }
}

/// The op becomes the descriptor's only owner: it is closed once the op has completed.
impl From<OwnedFd> for OpFd {
    fn from(fd: OwnedFd) -> OpFd {
        OpFd::shared(Arc::new(fd))
    }
}

/// The dirfd for a `*at` call: the directory's descriptor, or `AT_FDCWD` (relative paths
/// resolve against the working directory) for `None`.
pub(crate) fn raw_dir(dir: Option<&OpFd>) -> RawFd {
    dir.map_or(libc::AT_FDCWD, OpFd::as_raw_fd)
}
