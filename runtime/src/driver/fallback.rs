//! The fallback backend, for where io_uring cannot be used: epoll for socket readiness,
//! the blocking pool for file and metadata calls, the timer heap for timeouts.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::faults::Faults;
use super::op::{Fallback, Interest, Submitted, Syscall};
use super::{Completion, DriverRef, DriverShared, Lifecycle, Remote};
use crate::blocking::BlockingPool;

struct Waiter {
    fd: RawFd,
    interest: Interest,
    /// `None` for a bare poll: it completes with the readiness mask.
    call: Option<Syscall>,
}

#[derive(Default)]
struct FdWaiters {
    readers: Vec<u64>,
    writers: Vec<u64>,
}

pub(crate) struct FallbackBackend {
    epoll: OwnedFd,
    wake_fd: RawFd,
    pool: BlockingPool,
    fds: HashMap<RawFd, FdWaiters>,
    waiters: HashMap<u64, Waiter>,
    /// Completions produced outside a wait (immediate cancels), delivered next turn.
    ready: Vec<(u64, Completion)>,
    events: Vec<libc::epoll_event>,
    faults: Faults,
}

fn would_block(result: &io::Result<u32>) -> bool {
    matches!(result, Err(err) if matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINPROGRESS) | Some(libc::EALREADY)))
}

fn completion_of(result: io::Result<u32>) -> Completion {
    Completion {
        result: match result {
            Ok(n) => n as i32,
            Err(err) => -err.raw_os_error().unwrap_or(libc::EIO),
        },
        flags: 0,
    }
}

fn cancelled() -> Completion {
    Completion {
        result: -libc::ECANCELED,
        flags: 0,
    }
}

impl FallbackBackend {
    pub(crate) fn new(
        wake_fd: RawFd,
        pool: BlockingPool,
        faults: Faults,
    ) -> io::Result<FallbackBackend> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: wake_fd as u64,
        };
        // SAFETY: both fds are open; `event` is a live epoll_event.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, wake_fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FallbackBackend {
            epoll,
            wake_fd,
            pool,
            fds: HashMap::new(),
            waiters: HashMap::new(),
            ready: Vec::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
            faults,
        })
    }

    pub(crate) fn submit(
        &mut self,
        shared: &Arc<DriverShared>,
        how: Fallback,
    ) -> io::Result<Submitted> {
        let in_flight = |shared: &Arc<DriverShared>| {
            let user_data = shared.ops.lock().insert(Lifecycle::Submitted);
            (
                user_data,
                Submitted::InFlight {
                    driver: DriverRef::new(shared),
                    user_data,
                },
            )
        };
        match how {
            Fallback::Immediate(result) => Ok(Submitted::Done(completion_of(result))),
            Fallback::Blocking(mut call) => {
                let (user_data, submitted) = in_flight(shared);
                let owner = shared.clone();
                let job = Box::new(move || {
                    let completion = completion_of(call.call());
                    owner.remote.push(Remote::Complete(user_data, completion));
                    owner.unpark.unpark();
                });
                if let Err(err) = self.pool.spawn(job) {
                    shared.ops.lock().remove(user_data);
                    return Err(err);
                }
                Ok(submitted)
            }
            Fallback::Readiness {
                fd,
                interest,
                mut call,
            } => {
                let first = call.call();
                if !would_block(&first) {
                    return Ok(Submitted::Done(completion_of(first)));
                }
                let (user_data, submitted) = in_flight(shared);
                self.wait_for(
                    user_data,
                    Waiter {
                        fd,
                        interest,
                        call: Some(call),
                    },
                )?;
                Ok(submitted)
            }
            Fallback::Poll { fd, interest } => {
                let (user_data, submitted) = in_flight(shared);
                self.wait_for(
                    user_data,
                    Waiter {
                        fd,
                        interest,
                        call: None,
                    },
                )?;
                Ok(submitted)
            }
            Fallback::Timer(deadline) => {
                let (user_data, submitted) = in_flight(shared);
                shared.timers.lock().insert_op(deadline, user_data);
                Ok(submitted)
            }
        }
    }

    fn wait_for(&mut self, user_data: u64, waiter: Waiter) -> io::Result<()> {
        let fd = waiter.fd;
        let entry = self.fds.entry(fd).or_default();
        match waiter.interest {
            Interest::Readable => entry.readers.push(user_data),
            Interest::Writable => entry.writers.push(user_data),
        }
        self.waiters.insert(user_data, waiter);
        self.arm(fd)
    }

    /// (Re-)registers `fd` for what its waiters want, one-shot.
    fn arm(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(waiters) = self.fds.get(&fd) else {
            return Ok(());
        };
        let mut mask = libc::EPOLLONESHOT as u32;
        if !waiters.readers.is_empty() {
            mask |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if !waiters.writers.is_empty() {
            mask |= libc::EPOLLOUT as u32;
        }
        if mask == libc::EPOLLONESHOT as u32 {
            // Nobody waits on it any more: take it out of epoll now, while the number
            // still names the waiters' file (closing a duplicate later would not remove
            // the item, and a reused number would get its readiness).
            self.fds.remove(&fd);
            // SAFETY: epfd is ours; DEL takes no event. ENOENT (a fired one-shot that
            // was never re-armed is still registered, so it is rare) is harmless.
            unsafe {
                libc::epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    fd,
                    std::ptr::null_mut(),
                )
            };
            return Ok(());
        }
        let mut event = libc::epoll_event {
            events: mask,
            u64: fd as u64,
        };
        let epfd = self.epoll.as_raw_fd();
        // SAFETY: `event` is a live epoll_event; epfd is ours; fd is the caller's.
        let mut rc = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, fd, &mut event) };
        if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
            // SAFETY: as above.
            rc = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut event) };
        }
        if rc < 0 {
            let err = io::Error::last_os_error();
            // Fail every waiter on this fd rather than leave them hanging.
            if let Some(waiters) = self.fds.remove(&fd) {
                for user_data in waiters.readers.into_iter().chain(waiters.writers) {
                    self.waiters.remove(&user_data);
                    self.ready.push((
                        user_data,
                        completion_of(Err(io::Error::from_raw_os_error(
                            err.raw_os_error().unwrap_or(libc::EBADF),
                        ))),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn cancel(&mut self, shared: &Arc<DriverShared>, user_data: u64) {
        if let Some(waiter) = self.waiters.remove(&user_data) {
            if let Some(fd_waiters) = self.fds.get_mut(&waiter.fd) {
                fd_waiters.readers.retain(|&ud| ud != user_data);
                fd_waiters.writers.retain(|&ud| ud != user_data);
            }
            // Registered for what is left, or removed: the op still holds its
            // descriptor, so the number still names its file here.
            let _ = self.arm(waiter.fd);
            self.ready.push((user_data, cancelled()));
            return;
        }
        if shared.timers.lock().remove_op(user_data) {
            self.ready.push((user_data, cancelled()));
        }
        // A call running on the blocking pool cannot be interrupted; it reports back
        // when it returns, and its data is kept until then.
    }

    pub(crate) fn wait_and_reap(
        &mut self,
        wait: Option<Option<Duration>>,
        completions: &mut Vec<(u64, Completion)>,
    ) -> io::Result<bool> {
        let had_ready = !self.ready.is_empty();
        completions.append(&mut self.ready);
        let timeout_ms: i32 = match wait {
            _ if had_ready => 0,
            None if self.fds.is_empty() => return Ok(false),
            None => 0,
            Some(None) => -1,
            Some(Some(timeout)) => {
                // Round up: waking before a timer is due would only spin.
                let ms = timeout.as_nanos().div_ceil(1_000_000);
                ms.min(i32::MAX as u128) as i32
            }
        };
        if self.faults.refuse_enter().is_some() {
            // As an interrupted epoll_wait: nothing ready this time.
            return Ok(true);
        }
        // SAFETY: `events` is a live buffer of `len` epoll_events.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                return Ok(true);
            }
            return Err(err);
        }
        for i in 0..n as usize {
            let event = self.events[i];
            let fd = event.u64 as RawFd;
            if fd == self.wake_fd {
                let mut counter: u64 = 0;
                // SAFETY: reads 8 bytes into a live u64 from our eventfd, which is
                // readable (epoll said so), so this does not block.
                unsafe { libc::read(fd, (&mut counter as *mut u64).cast(), 8) };
                continue;
            }
            self.on_ready(fd, event.events, completions);
        }
        Ok(true)
    }

    fn on_ready(&mut self, fd: RawFd, mask: u32, completions: &mut Vec<(u64, Completion)>) {
        let Some(fd_waiters) = self.fds.get_mut(&fd) else {
            return;
        };
        let failed = mask & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
        let readable = failed || mask & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0;
        let writable = failed || mask & libc::EPOLLOUT as u32 != 0;
        let mut woken = Vec::new();
        if readable {
            woken.append(&mut fd_waiters.readers);
        }
        if writable {
            woken.append(&mut fd_waiters.writers);
        }
        for user_data in woken {
            let Some(mut waiter) = self.waiters.remove(&user_data) else {
                continue;
            };
            let result = match waiter.call.as_mut() {
                Some(call) => call.call(),
                None => Ok(poll_mask(mask)),
            };
            if would_block(&result) {
                let fd_waiters = self.fds.entry(fd).or_default();
                match waiter.interest {
                    Interest::Readable => fd_waiters.readers.push(user_data),
                    Interest::Writable => fd_waiters.writers.push(user_data),
                }
                self.waiters.insert(user_data, waiter);
            } else {
                completions.push((user_data, completion_of(result)));
            }
        }
        let _ = self.arm(fd);
    }
}

/// epoll's mask in poll(2) terms (the values POLL_ADD completes with).
fn poll_mask(epoll_mask: u32) -> u32 {
    let mut mask = 0;
    if epoll_mask & libc::EPOLLIN as u32 != 0 {
        mask |= libc::POLLIN as u32;
    }
    if epoll_mask & libc::EPOLLOUT as u32 != 0 {
        mask |= libc::POLLOUT as u32;
    }
    if epoll_mask & libc::EPOLLERR as u32 != 0 {
        mask |= libc::POLLERR as u32;
    }
    if epoll_mask & libc::EPOLLHUP as u32 != 0 {
        mask |= libc::POLLHUP as u32;
    }
    if epoll_mask & libc::EPOLLRDHUP as u32 != 0 {
        mask |= libc::POLLRDHUP as u32;
    }
    mask
}
