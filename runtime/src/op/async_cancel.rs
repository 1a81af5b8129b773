//! ASYNC_CANCEL: asks the ring to cancel another op, named by its user_data.
//!
//! The driver submits it when an op's future is dropped, and [`Op::cancel`] submits it on
//! request; its own completion carries no news (the cancelled op completes by itself,
//! with `ECANCELED` or with its result if it finished first).
//!
//! [`Op::cancel`]: super::Op::cancel

use io_uring::{opcode, squeue};

pub struct AsyncCancel;

impl AsyncCancel {
    /// The entry that cancels the op submitted with `target` as user_data.
    pub(crate) fn entry(target: u64) -> squeue::Entry {
        opcode::AsyncCancel::new(target).build()
    }
}
