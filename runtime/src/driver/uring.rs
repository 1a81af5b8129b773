//! The io_uring backend: one ring, one submitter (its owning thread).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use io_uring::{opcode, squeue, types, EnterFlags, IoUring, Probe};

use super::enter::RingEnter;
use super::faults::Faults;
use super::inflight::RESERVED_USER_DATA;
use super::{Completion, RingFeatures};

/// user_data of the always-armed read on the wake-up eventfd.
const WAKE_TOKEN: u64 = u64::MAX;
/// user_data of the park timeout (kernels without EXT_ARG).
const TIMEOUT_TOKEN: u64 = u64::MAX - 1;
/// user_data of ASYNC_CANCEL requests; their completions carry no news.
const CANCEL_TOKEN: u64 = u64::MAX - 2;
/// Completion queue entries per submission queue entry.
const CQ_PER_SQ_ENTRY: u32 = 16;

pub(crate) struct UringBackend {
    /// Declared before `ring`, so that it unregisters while the ring's fd is open.
    enter: RingEnter,
    ring: IoUring,
    features: RingFeatures,
    wake_fd: RawFd,
    /// Where the kernel writes the eventfd counter; boxed so it never moves.
    wake_buf: Box<u64>,
    wake_armed: bool,
    /// The park timeout for kernels without EXT_ARG; boxed so it never moves.
    park_timeout: Box<types::Timespec>,
    /// SQEs pushed since the last enter.
    queued: u32,
    /// Submitted entries (ops, cancels, timeouts) whose CQE has not been reaped, not
    /// counting the wake-up read.
    outstanding: usize,
    /// Completions reaped early (to make room in a full queue), delivered next turn.
    backlog: Vec<(u64, Completion)>,
    /// Entries that found the submission queue full while the kernel would not take
    /// what was in it (EAGAIN, EBUSY): they go in, in order, as room appears.
    waiting: VecDeque<squeue::Entry>,
    faults: Faults,
}

/// Opcodes ringloom submits; probed so the driver can say what is missing.
const USED_OPCODES: &[u8] = &[
    opcode::Nop::CODE,
    opcode::Read::CODE,
    opcode::Write::CODE,
    opcode::Readv::CODE,
    opcode::Writev::CODE,
    opcode::OpenAt::CODE,
    opcode::Close::CODE,
    opcode::Statx::CODE,
    opcode::Fsync::CODE,
    opcode::Fallocate::CODE,
    opcode::UnlinkAt::CODE,
    opcode::RenameAt::CODE,
    opcode::MkDirAt::CODE,
    opcode::Socket::CODE,
    opcode::Connect::CODE,
    opcode::Accept::CODE,
    opcode::Send::CODE,
    opcode::Recv::CODE,
    opcode::SendMsg::CODE,
    opcode::RecvMsg::CODE,
    opcode::Shutdown::CODE,
    opcode::PollAdd::CODE,
    opcode::AsyncCancel::CODE,
    opcode::Timeout::CODE,
];

/// A named way to configure a ring builder.
type Setup = (&'static str, fn(&mut io_uring::Builder));

fn build_ring(entries: u32) -> io::Result<(IoUring, RingFeatures)> {
    // Best first. SINGLE_ISSUER+DEFER_TASKRUN runs completion work only when the owner
    // asks for events, which is when it wants them; COOP_TASKRUN stops the kernel from
    // interrupting the worker to run it.
    let attempts: [Setup; 3] = [
        ("defer", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("coop", |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        ("plain", |_| {}),
    ];
    let mut last_err = None;
    for (name, configure) in attempts {
        let mut builder = IoUring::builder();
        configure(&mut builder);
        // In-flight ops are not bounded by the submission queue (a parked socket is one
        // POLL_ADD each), so the completion queue gets room for bursts: past it, the
        // kernel keeps completions on its overflow list, which costs more.
        builder.setup_cqsize(entries.saturating_mul(CQ_PER_SQ_ENTRY));
        match builder.build(entries) {
            Ok(ring) if !ring.params().is_feature_nodrop() => {
                // Without NODROP a full completion queue loses completions: their ops
                // would wait for ever. The fallback driver is taken instead.
                last_err = Some(io::Error::other(
                    "io_uring without IORING_FEAT_NODROP (kernel older than 5.5)",
                ));
                break;
            }
            Ok(ring) => {
                let params = ring.params();
                let features = RingFeatures {
                    single_issuer: name == "defer",
                    defer_taskrun: name == "defer",
                    coop_taskrun: name == "coop",
                    ext_arg: params.is_feature_ext_arg(),
                    nodrop: params.is_feature_nodrop(),
                    registered_ring: false,
                    missing_opcodes: 0,
                };
                return Ok((ring, features));
            }
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
}

/// A box the ring writes into for its own use, leaked when the ring is dropped (see the
/// `Drop` below). Never inlined, so that a leak checker can be told about exactly these
/// allocations (`runtime/lsan.supp`).
#[inline(never)]
fn kernel_owned<T>(value: T) -> Box<T> {
    Box::new(value)
}

impl Drop for UringBackend {
    /// The ring's teardown in the kernel is asynchronous, and the read armed on the
    /// wake-up eventfd (or a park timeout) may still complete into these two after the
    /// ring's fd is closed: they are leaked, not freed (a few bytes per ring).
    fn drop(&mut self) {
        Box::leak(std::mem::replace(&mut self.wake_buf, Box::new(0)));
        Box::leak(std::mem::replace(
            &mut self.park_timeout,
            Box::new(types::Timespec::new()),
        ));
    }
}

impl UringBackend {
    pub(crate) fn new(entries: u32, wake_fd: RawFd, faults: Faults) -> io::Result<UringBackend> {
        let (ring, mut features) = build_ring(entries)?;
        let mut probe = Probe::new();
        if ring.submitter().register_probe(&mut probe).is_ok() {
            features.missing_opcodes = USED_OPCODES
                .iter()
                .filter(|code| !probe.is_supported(**code))
                .count() as u32;
        }
        let enter = RingEnter::new(ring.as_raw_fd());
        features.registered_ring = enter.is_registered();
        Ok(UringBackend {
            enter,
            ring,
            features,
            wake_fd,
            wake_buf: kernel_owned(0),
            wake_armed: false,
            park_timeout: kernel_owned(types::Timespec::new()),
            queued: 0,
            outstanding: 0,
            backlog: Vec::new(),
            waiting: VecDeque::new(),
            faults,
        })
    }

    pub(crate) fn features(&self) -> RingFeatures {
        self.features
    }

    /// Queues an entry, making room first if the submission queue is full. It never
    /// fails for want of room: what the kernel will not take yet waits in `waiting`.
    pub(crate) fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        debug_assert!(
            entry.get_user_data() < RESERVED_USER_DATA || entry.get_user_data() >= CANCEL_TOKEN
        );
        // Behind entries already waiting, never ahead of them: the ring keeps order.
        if !(self.waiting.is_empty() && self.try_push(&entry)) {
            if self.waiting.is_empty() {
                // An error here leaves the entry out and uncounted: its op fails.
                self.flush()?;
            }
            if !(self.waiting.is_empty() && self.try_push(&entry)) {
                self.waiting.push_back(entry);
            }
        }
        self.outstanding += 1;
        Ok(())
    }

    fn try_push(&mut self, entry: &squeue::Entry) -> bool {
        // SAFETY: every entry ringloom builds points only into memory owned by the
        // op (kept alive by the in-flight table until its completion) or by this
        // backend (wake_buf, park_timeout), per OpCode's contract.
        let pushed = unsafe { self.ring.submission().push(entry) }.is_ok();
        if pushed {
            self.queued += 1;
        }
        pushed
    }

    /// Moves waiting entries into the submission queue while it has room.
    fn refill(&mut self) {
        while let Some(entry) = self.waiting.pop_front() {
            if !self.try_push(&entry) {
                self.waiting.push_front(entry);
                return;
            }
        }
    }

    /// Submits what is queued now, rather than at the next turn. Returns whether it
    /// entered the kernel (nothing queued: no enter).
    pub(crate) fn submit_now(&mut self) -> io::Result<bool> {
        if self.queued == 0 {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// Submits what is queued, to make room in a full submission queue. A refusal the
    /// kernel means as "later" (EBUSY: its completion queue is full; EAGAIN: no memory
    /// for requests just now; EINTR) leaves the entries queued for the next enter.
    fn flush(&mut self) -> io::Result<()> {
        let submitted = match self.faults.refuse_enter() {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => self.enter(0, None, false),
        };
        match submitted {
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                // Take completions off the full queue so the next enter can go on.
                self.reap_into_backlog();
            }
            Err(err) if matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) => {}
            Err(err) => return Err(err),
        }
        self.queued = self.ring.submission().len() as u32;
        self.refill();
        Ok(())
    }

    fn reap_into_backlog(&mut self) {
        let mut reaped = std::mem::take(&mut self.backlog);
        self.reap(&mut reaped);
        self.backlog = reaped;
    }

    pub(crate) fn cancel(&mut self, user_data: u64) {
        let entry = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(CANCEL_TOKEN);
        // If the queue cannot take it even after a flush the op will still complete on
        // its own; its data stays in the table until then.
        let _ = self.push(entry);
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        if self.wake_armed {
            return Ok(());
        }
        let entry = opcode::Read::new(
            types::Fd(self.wake_fd),
            (&mut *self.wake_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(WAKE_TOKEN);
        self.push(entry)?;
        // The wake-up read is not an op anyone waits for.
        self.outstanding -= 1;
        self.wake_armed = true;
        Ok(())
    }

    /// Submits queued entries and collects completions; with `wait`, blocks until one
    /// arrives or the timeout passes. Returns whether it entered the kernel.
    pub(crate) fn submit_and_reap(
        &mut self,
        wait: Option<Option<Duration>>,
        completions: &mut Vec<(u64, Completion)>,
    ) -> io::Result<bool> {
        completions.append(&mut self.backlog);
        let mut wait = match wait {
            Some(Some(timeout)) if timeout.is_zero() => None,
            other => other,
        };
        if wait.is_some() {
            self.arm_wake()?;
        }
        if wait.is_none() && self.queued == 0 && self.outstanding == 0 {
            self.reap(completions);
            return Ok(false);
        }
        let timeout = match wait {
            Some(Some(timeout)) => Some(
                types::Timespec::new()
                    .sec(timeout.as_secs())
                    .nsec(timeout.subsec_nanos()),
            ),
            _ => None,
        };
        if let (Some(ts), false) = (timeout, self.features.ext_arg) {
            *self.park_timeout = ts;
            let entry = opcode::Timeout::new(&*self.park_timeout)
                .build()
                .user_data(TIMEOUT_TOKEN);
            self.push(entry)?;
        }
        // Entries beyond the submission queue reach the kernel before any wait: a wait
        // on what is queued alone could be one for ops that never finish.
        while !self.waiting.is_empty() {
            let before = self.waiting.len();
            self.flush()?;
            if self.waiting.len() == before {
                // Refused: come back at once rather than sleep with entries unsent.
                wait = None;
                break;
            }
        }
        let result = match (self.faults.refuse_enter(), wait, timeout) {
            (Some(errno), _, _) => Err(io::Error::from_raw_os_error(errno)),
            (None, None, _) => self.enter(0, None, true),
            (None, Some(_), Some(ts)) if self.features.ext_arg => {
                let args = types::SubmitArgs::new().timespec(&ts);
                self.enter(1, Some(&args), false)
            }
            // Without a timeout, or with the TIMEOUT entry pushed above.
            (None, Some(_), _) => self.enter(1, None, false),
        };
        match result {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                ) => {}
            Err(err) if err.raw_os_error() == Some(libc::EBADR) => {
                // The completion queue overflowed and the kernel could not keep the
                // overflow (its allocation failed): those completions are gone, and
                // their ops will not finish. Reap what is there; say so loudly.
                log::error!(
                    "ringloom: io_uring dropped completions (EBADR: the overflow list could \
                     not grow); some operations will never complete"
                );
            }
            Err(err) => return Err(err),
        }
        // What the kernel did not take (an enter refused with EBUSY or EAGAIN submits
        // nothing) stays queued for the next enter to pass on.
        self.queued = self.ring.submission().len() as u32;
        self.refill();
        self.reap(completions);
        Ok(true)
    }

    /// Submits what is queued and waits for `want` completions (with `args`: until its
    /// timeout). GETEVENTS as the io-uring crate's `submit_with_args` sets it: to wait,
    /// when asked, and when the kernel has overflowed completions to flush or deferred
    /// task work to run.
    fn enter(
        &mut self,
        want: u32,
        args: Option<&types::SubmitArgs<'_, '_>>,
        getevents: bool,
    ) -> io::Result<usize> {
        let sq = self.ring.submission();
        let to_submit = sq.len() as u32;
        let mut flags = EnterFlags::empty();
        if want > 0 || getevents || sq.cq_overflow() || sq.taskrun() {
            flags |= EnterFlags::GETEVENTS;
        }
        drop(sq);
        if args.is_some() {
            flags |= EnterFlags::EXT_ARG;
        }
        // SAFETY: every queued entry points only into memory the in-flight table or
        // this backend keeps alive until its completion (see `try_push`).
        unsafe { self.enter.enter(to_submit, want, flags, args) }
    }

    fn reap(&mut self, completions: &mut Vec<(u64, Completion)>) {
        for cqe in self.ring.completion() {
            match cqe.user_data() {
                WAKE_TOKEN => self.wake_armed = false,
                TIMEOUT_TOKEN | CANCEL_TOKEN => self.outstanding -= 1,
                user_data => {
                    self.outstanding -= 1;
                    completions.push((
                        user_data,
                        Completion {
                            result: cqe.result(),
                            flags: cqe.flags(),
                        },
                    ));
                }
            }
        }
    }
}
