//! What the kernel offers, and what the driver chose.

use std::fmt;

/// The setup flags and features a ring was created with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingFeatures {
    pub single_issuer: bool,
    pub defer_taskrun: bool,
    pub coop_taskrun: bool,
    pub ext_arg: bool,
    pub nodrop: bool,
    /// The ring's descriptor is registered with its thread (see `enter.rs`): enters
    /// skip the kernel's descriptor lookup.
    pub registered_ring: bool,
    /// Opcodes the kernel lacks that ringloom would have used (their ops then fail
    /// with `EINVAL`, as the kernel reports).
    pub missing_opcodes: u32,
}

impl fmt::Display for RingFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut flags = Vec::new();
        if self.single_issuer {
            flags.push("SINGLE_ISSUER");
        }
        if self.defer_taskrun {
            flags.push("DEFER_TASKRUN");
        }
        if self.coop_taskrun {
            flags.push("COOP_TASKRUN");
        }
        if self.ext_arg {
            flags.push("EXT_ARG");
        }
        if self.nodrop {
            flags.push("NODROP");
        }
        if self.registered_ring {
            flags.push("REGISTERED_RING");
        }
        if flags.is_empty() {
            write!(f, "no optional flags")?;
        } else {
            write!(f, "{}", flags.join("|"))?;
        }
        if self.missing_opcodes > 0 {
            write!(f, ", {} opcodes unsupported", self.missing_opcodes)?;
        }
        Ok(())
    }
}

/// Which driver a thread runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    Uring(RingFeatures),
    /// epoll for sockets, the blocking pool for files, a timer heap for timeouts.
    Fallback,
}

impl DriverKind {
    pub fn name(&self) -> &'static str {
        match self {
            DriverKind::Uring(_) => "io_uring",
            DriverKind::Fallback => "fallback",
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverKind::Uring(features) => write!(f, "io_uring ({features})"),
            DriverKind::Fallback => write!(f, "fallback (epoll + blocking pool)"),
        }
    }
}
