//! TIMEOUT: completes after a relative time. (`time::sleep` uses the driver's timer heap
//! instead; this op is for layers that want the ring to do the timing.)

use std::io;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types};

use super::{Fallback, Op, OpCode};

pub struct Timeout {
    duration: Duration,
    /// Read by the kernel when the SQE is submitted; boxed so it does not move.
    timespec: Box<types::Timespec>,
}

impl Timeout {
    pub fn submit(duration: Duration) -> Op<Timeout> {
        let timespec = Box::new(
            types::Timespec::new()
                .sec(duration.as_secs())
                .nsec(duration.subsec_nanos()),
        );
        Op::submit(Timeout { duration, timespec })
    }
}

// SAFETY: the entry points only at `timespec`, a heap allocation owned by the op.
unsafe impl OpCode for Timeout {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Timeout::new(&*self.timespec).build()
    }

    fn fallback(&mut self) -> Fallback {
        Fallback::Timer(Instant::now() + self.duration)
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        match result {
            Err(err) if err.raw_os_error() == Some(libc::ETIME) => Ok(()),
            other => other.map(drop),
        }
    }
}
