//! A socket's descriptor, shared with the operations using it.

use std::io;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::op::{self, OpFd};

/// Every op on a socket holds a reference ([`OpFd`]), so dropping the socket while an op
/// whose future was dropped is still in flight leaves the descriptor open until that op
/// completes: a recv or accept can never land on a newer socket that reused the number.
pub(super) struct SocketFd(Arc<OwnedFd>);

impl SocketFd {
    pub(super) fn new(fd: OwnedFd) -> SocketFd {
        SocketFd(Arc::new(fd))
    }

    /// A reference for one op to hold until its completion.
    pub(super) fn op(&self) -> OpFd {
        OpFd::shared(self.0.clone())
    }

    /// The descriptor alone, for `into_std` and the like. If a dropped op still holds
    /// it, the result is a duplicate (which can fail), as with `fs::File::into_std`.
    pub(super) fn into_owned(self) -> io::Result<OwnedFd> {
        match Arc::try_unwrap(self.0) {
            Ok(fd) => Ok(fd),
            Err(shared) => shared.try_clone(),
        }
    }

    /// Closes through the ring, reporting errors a plain drop would ignore. If a dropped
    /// op still holds the descriptor, it is closed when that op completes instead, and
    /// this returns `Ok`, as with `fs::File::close`.
    pub(super) async fn close(self) -> io::Result<()> {
        match Arc::try_unwrap(self.0) {
            Ok(fd) => op::Close::submit(fd).await,
            Err(_shared) => Ok(()),
        }
    }
}

/// Lets the synchronous helpers (`bind`, socket options, addresses) borrow it as the
/// plain descriptor it is.
impl Deref for SocketFd {
    type Target = OwnedFd;

    fn deref(&self) -> &OwnedFd {
        &self.0
    }
}
