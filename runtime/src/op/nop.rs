//! NOP: completes at once; measures the submission path itself.

use std::io;

use io_uring::{opcode, squeue};

use super::{Fallback, Op, OpCode};

pub struct Nop;

impl Nop {
    pub fn submit() -> Op<Nop> {
        Op::submit(Nop)
    }
}

// SAFETY: the entry carries no pointers.
unsafe impl OpCode for Nop {
    type Output = io::Result<()>;

    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Nop::new().build()
    }

    fn fallback(&mut self) -> Fallback {
        Fallback::Immediate(Ok(0))
    }

    fn complete(self, result: io::Result<u32>, _flags: u32) -> io::Result<()> {
        result.map(drop)
    }
}
