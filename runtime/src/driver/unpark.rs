//! Waking a parked driver from another thread.
//!
//! A driver about to park sets `parked`; a waker that finds it set writes the eventfd,
//! whose read (io_uring) or registration (epoll) is always armed in the driver. A waker
//! that finds it clear does nothing: no syscall to wake a thread that is awake.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct Unpark {
    eventfd: OwnedFd,
    parked: AtomicBool,
}

impl Unpark {
    pub(crate) fn new() -> io::Result<Unpark> {
        // SAFETY: eventfd has no pointer arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Unpark {
            // SAFETY: fd is a fresh descriptor that nothing else owns.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            parked: AtomicBool::new(false),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Announces that the owner is about to park. The owner must check for work once
    /// more after this and before it blocks.
    pub(crate) fn prepare_park(&self) {
        self.parked.store(true, Ordering::SeqCst);
    }

    /// The owner is awake again.
    pub(crate) fn unparked(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    pub(crate) fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    /// Wakes the owner if it is parked (or about to); returns whether it was.
    pub(crate) fn unpark(&self) -> bool {
        let parked = self.parked.swap(false, Ordering::SeqCst);
        if parked {
            self.force();
        }
        parked
    }

    fn force(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let _ = unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}
