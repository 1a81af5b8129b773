//! `io_uring_enter` through the ring's registered descriptor.
//!
//! Every enter that names the ring by its file descriptor makes the kernel look the
//! descriptor up and take a reference to its file (`fget`/`fput`), about 6% of a NOP
//! round trip here. Registering the ring (IORING_REGISTER_RING_FDS, Linux 5.18) gives
//! an index into the registering thread's own table instead; an enter that passes it
//! with IORING_ENTER_REGISTERED_RING skips the lookup. The table is per thread and is
//! not inherited across `fork`, so the index is used only on the thread that made it
//! and in the process that made it; anywhere else, and on kernels without it, the
//! descriptor is named as before.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use io_uring::{types, EnterFlags};

/// From the kernel's uapi `io_uring.h`: register and unregister ring descriptors.
const IORING_REGISTER_RING_FDS: libc::c_uint = 20;
const IORING_UNREGISTER_RING_FDS: libc::c_uint = 21;

/// The uapi's `struct io_uring_rsrc_update`.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// Forks this process has made, counted in the child: an index registered before the
/// current count belongs to a parent's thread table, not this process's.
static FORKS: AtomicU64 = AtomicU64::new(0);
static COUNT_FORKS: Once = Once::new();

extern "C" fn forked_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    /// Its address tells threads apart without the reference count `thread::current`
    /// takes.
    static THREAD_MARK: u8 = const { 0 };
}

fn thread_mark() -> usize {
    THREAD_MARK.with(|mark| mark as *const u8 as usize)
}

struct Registered {
    index: u32,
    thread: usize,
    forks: u64,
}

pub(crate) struct RingEnter {
    fd: RawFd,
    registered: Option<Registered>,
}

impl RingEnter {
    /// Registers the ring `fd` in the calling thread's table if the kernel allows (it
    /// refuses before 5.18 and past 16 rings a thread); unregistered otherwise.
    pub(crate) fn new(fd: RawFd) -> RingEnter {
        COUNT_FORKS.call_once(|| {
            // SAFETY: the handler only increments an atomic, which is async-signal-safe
            // and so fine in a child between fork and exec.
            unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
        });
        let mut update = RsrcUpdate {
            offset: u32::MAX,
            resv: 0,
            data: fd as u64,
        };
        // SAFETY: the argument is one `io_uring_rsrc_update`, as the opcode expects;
        // `offset` u32::MAX asks the kernel to pick a free index and write it back.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                fd,
                IORING_REGISTER_RING_FDS,
                &mut update as *mut RsrcUpdate,
                1,
            )
        };
        let registered = (ret == 1).then(|| Registered {
            index: update.offset,
            thread: thread_mark(),
            forks: FORKS.load(Ordering::Relaxed),
        });
        RingEnter { fd, registered }
    }

    /// Whether enters name the ring by its registered index (on this thread, now).
    pub(crate) fn is_registered(&self) -> bool {
        self.usable().is_some()
    }

    fn usable(&self) -> Option<u32> {
        let registered = self.registered.as_ref()?;
        (registered.thread == thread_mark() && registered.forks == FORKS.load(Ordering::Relaxed))
            .then_some(registered.index)
    }

    /// One `io_uring_enter`: submits `to_submit` queued entries and waits for
    /// `min_complete` completions under `flags` (`args`, with EXT_ARG: a timeout).
    ///
    /// # Safety
    /// The queued entries must satisfy the ring's push contract (what they point to
    /// lives until their completions), as for `Submitter::enter`.
    pub(crate) unsafe fn enter(
        &self,
        to_submit: u32,
        min_complete: u32,
        flags: EnterFlags,
        args: Option<&types::SubmitArgs<'_, '_>>,
    ) -> io::Result<usize> {
        let (fd, flags) = match self.usable() {
            Some(index) => (index as RawFd, flags | EnterFlags::REGISTERED_RING),
            None => (self.fd, flags),
        };
        let (arg, size) = match args {
            Some(args) => (
                args as *const types::SubmitArgs<'_, '_> as *const libc::c_void,
                std::mem::size_of::<types::SubmitArgs<'_, '_>>(),
            ),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `fd` names this ring (its descriptor, or its index in this thread's
        // table in this process); `arg` is null or a live `SubmitArgs`, the layout of
        // the kernel's `io_uring_getevents_arg`, whose timespec outlives the call; the
        // caller upholds the entries' contract.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                to_submit,
                min_complete,
                flags.bits(),
                arg,
                size,
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret as usize)
        }
    }
}

impl Drop for RingEnter {
    /// Frees the index on the thread that holds it; elsewhere the kernel frees it when
    /// that thread exits (the entry keeps the ring's file open until then).
    fn drop(&mut self) {
        let Some(index) = self.usable() else {
            return;
        };
        let update = RsrcUpdate {
            offset: index,
            resv: 0,
            data: 0,
        };
        // SAFETY: one `io_uring_rsrc_update` naming an index this thread registered.
        unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.fd,
                IORING_UNREGISTER_RING_FDS,
                &update as *const RsrcUpdate,
                1,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{opcode, IoUring};
    use std::os::fd::AsRawFd;

    /// Pushes a NOP, enters through `enter` and waits for its completion.
    fn nop_round_trip(ring: &mut IoUring, enter: &RingEnter) {
        let nop = opcode::Nop::new().build().user_data(7);
        // SAFETY: a NOP points at no memory.
        unsafe { ring.submission().push(&nop) }.unwrap();
        // SAFETY: the one queued entry is the NOP above.
        let entered = unsafe { enter.enter(1, 1, EnterFlags::GETEVENTS, None) }.unwrap();
        assert_eq!(entered, 1);
        let cqe = ring.completion().next().expect("the NOP completed");
        assert_eq!((cqe.user_data(), cqe.result()), (7, 0));
    }

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        // SAFETY: `uname` fills the zeroed struct; its release is NUL-terminated.
        let release = unsafe {
            let mut name: libc::utsname = std::mem::zeroed();
            assert_eq!(libc::uname(&mut name), 0);
            std::ffi::CStr::from_ptr(name.release.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        let mut parts = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
    }

    #[test]
    fn the_registering_thread_enters_by_index_and_others_by_descriptor() {
        let mut ring = IoUring::new(8).unwrap();
        let enter = RingEnter::new(ring.as_raw_fd());
        // Kernels before 5.18 refuse the registration; the descriptor is used then.
        let registered = enter.is_registered();
        assert!(
            registered || !kernel_at_least(5, 18),
            "5.18 registers ring fds"
        );
        nop_round_trip(&mut ring, &enter);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert!(
                    !enter.is_registered(),
                    "an index is only good on its thread"
                );
                nop_round_trip(&mut ring, &enter);
            });
        });
        assert_eq!(enter.is_registered(), registered);
        nop_round_trip(&mut ring, &enter);
    }

    #[test]
    fn a_forked_child_enters_by_descriptor() {
        let mut ring = IoUring::new(8).unwrap();
        let enter = RingEnter::new(ring.as_raw_fd());
        // SAFETY: the child only makes system calls and touches memory it owns (the
        // ring is mapped shared; the parent does not use it until the child exits),
        // then leaves with `_exit`, running nothing of the parent's.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // The parent's index names nothing in the child's table (or, once the
            // child registers rings of its own, another ring).
            let code = if enter.is_registered() {
                2
            } else {
                let nop = opcode::Nop::new().build().user_data(9);
                // SAFETY: a NOP points at no memory; the one queued entry is it.
                let entered = unsafe { ring.submission().push(&nop) }.is_ok()
                    && unsafe { enter.enter(1, 1, EnterFlags::GETEVENTS, None) }.is_ok();
                let completed = ring.completion().next().map(|cqe| cqe.user_data());
                if entered && completed == Some(9) {
                    0
                } else {
                    3
                }
            };
            // SAFETY: ends the child without unwinding into the parent's test harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0, "2: index used; 3: NOP failed");
        nop_round_trip(&mut ring, &enter);
    }
}
