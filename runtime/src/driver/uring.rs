//! The io_uring backend: one ring, one submitter (its owning thread).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring, Probe};

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
    pub(crate) fn new(entries: u32, wake_fd: RawFd) -> io::Result<UringBackend> {
        let (ring, mut features) = build_ring(entries)?;
        let mut probe = Probe::new();
        if ring.submitter().register_probe(&mut probe).is_ok() {
            features.missing_opcodes = USED_OPCODES
                .iter()
                .filter(|code| !probe.is_supported(**code))
                .count() as u32;
        }
        Ok(UringBackend {
            ring,
            features,
            wake_fd,
            wake_buf: kernel_owned(0),
            wake_armed: false,
            park_timeout: kernel_owned(types::Timespec::new()),
            queued: 0,
            outstanding: 0,
            backlog: Vec::new(),
        })
    }

    pub(crate) fn features(&self) -> RingFeatures {
        self.features
    }

    /// Queues an entry, making room first if the submission queue is full.
    pub(crate) fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        debug_assert!(
            entry.get_user_data() < RESERVED_USER_DATA || entry.get_user_data() >= CANCEL_TOKEN
        );
        loop {
            // SAFETY: every entry ringloom builds points only into memory owned by the
            // op (kept alive by the in-flight table until its completion) or by this
            // backend (wake_buf, park_timeout), per OpCode's contract.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            match pushed {
                Ok(()) => {
                    self.queued += 1;
                    self.outstanding += 1;
                    return Ok(());
                }
                Err(_) => self.flush()?,
            }
        }
    }

    /// Submits what is queued now, rather than at the next turn.
    pub(crate) fn submit_now(&mut self) -> io::Result<()> {
        if self.queued == 0 {
            return Ok(());
        }
        self.flush()
    }

    /// Submits what is queued, to make room in a full submission queue.
    fn flush(&mut self) -> io::Result<()> {
        match self.ring.submit() {
            Ok(_) => {
                self.queued = self.ring.submission().len() as u32;
                Ok(())
            }
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                // The completion queue is full: take completions off it and try again.
                self.reap_into_backlog();
                Ok(())
            }
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(err) => Err(err),
        }
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
        let wait = match wait {
            Some(Some(timeout)) if timeout.is_zero() => None,
            other => other,
        };
        if wait.is_some() {
            self.arm_wake()?;
        }
        let result = match wait {
            None if self.queued == 0 && self.outstanding == 0 => {
                self.reap(completions);
                return Ok(false);
            }
            None => {
                // SAFETY: no extra argument is passed; the queued entries satisfy the
                // push contract above.
                unsafe {
                    self.ring.submitter().enter::<libc::sigset_t>(
                        self.queued,
                        0,
                        io_uring::EnterFlags::GETEVENTS.bits(),
                        None,
                    )
                }
            }
            Some(None) => self.ring.submit_and_wait(1),
            Some(Some(timeout)) => {
                let ts = types::Timespec::new()
                    .sec(timeout.as_secs())
                    .nsec(timeout.subsec_nanos());
                if self.features.ext_arg {
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                } else {
                    *self.park_timeout = ts;
                    let entry = opcode::Timeout::new(&*self.park_timeout)
                        .build()
                        .user_data(TIMEOUT_TOKEN);
                    self.push(entry)?;
                    self.ring.submit_and_wait(1)
                }
            }
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
        self.reap(completions);
        Ok(true)
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
