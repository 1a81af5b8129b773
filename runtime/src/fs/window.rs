//! The part of a caller's buffer lent to one read or write.
//!
//! ringloom's read and write ops always start at the beginning of a buffer, so the loops
//! that resume after a short transfer (`read_exact_at`, `write_all_at`, `fs::read`) lend
//! the kernel a window onto the rest of it instead.

use crate::buf::{IoBuf, IoBufMut};

/// Linux moves at most this much in one read or write (`MAX_RW_COUNT`); offering the
/// kernel more would only be clipped, so windows never claim more.
const MAX_RW: usize = 0x7fff_f000;

pub(super) struct Window<B> {
    buf: B,
    begin: usize,
}

impl<B: IoBuf> Window<B> {
    /// # Safety
    /// The first `begin` bytes of `buf` must be initialised (by the caller, or by earlier
    /// reads into it): a read through the window marks them as data along with what it
    /// reads.
    pub(super) unsafe fn new(buf: B, begin: usize) -> Window<B> {
        Window { buf, begin }
    }

    pub(super) fn into_inner(self) -> B {
        self.buf
    }
}

// SAFETY: the pointer is the inner buffer's stable pointer moved forward by `begin`, and
// the lengths are the inner buffer's minus `begin` (zero once `begin` passes them), so
// they describe memory inside the inner buffer, which does not move with the window.
unsafe impl<B: IoBuf> IoBuf for Window<B> {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr().wrapping_add(self.begin)
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init().saturating_sub(self.begin).min(MAX_RW)
    }
    fn bytes_total(&self) -> usize {
        self.buf
            .bytes_total()
            .saturating_sub(self.begin)
            .min(MAX_RW)
    }
}

// SAFETY: as for IoBuf; writes through the pointer stay within the inner buffer's
// `bytes_total`, which it guarantees writable.
unsafe impl<B: IoBufMut> IoBufMut for Window<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.buf.stable_mut_ptr().wrapping_add(self.begin)
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the first `begin` bytes were initialised before the window was made
        // (Window::new's contract) and our caller guarantees the `pos` after them.
        unsafe { self.buf.set_init(self.begin + pos) }
    }
}
