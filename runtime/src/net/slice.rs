//! An owned window onto a buffer.

use std::ops::{Bound, RangeBounds};

use crate::buf::IoBuf;

/// Part of an owned buffer, itself an owned buffer.
///
/// A short write leaves the rest of the buffer to send, but an operation can only take a
/// buffer by value, not borrow a piece of one: `Slice` keeps the whole buffer and sends
/// only its window. [`into_inner`](Slice::into_inner) gives the buffer back.
pub struct Slice<B> {
    buf: B,
    begin: usize,
    end: usize,
}

impl<B: IoBuf> Slice<B> {
    /// # Panics
    /// If `range` reaches past the buffer's initialised bytes, or is decreasing: the
    /// window must only ever cover data the buffer holds.
    pub fn new(buf: B, range: impl RangeBounds<usize>) -> Slice<B> {
        let init = buf.bytes_init();
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.checked_add(1).expect("slice start overflows"),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.checked_add(1).expect("slice end overflows"),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => init,
        };
        assert!(begin <= end, "slice starts at {begin} but ends at {end}");
        assert!(
            end <= init,
            "slice ends at {end} but the buffer holds {init} bytes"
        );
        Slice { buf, begin, end }
    }

    /// Where the window starts in the buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// Where the window ends (exclusive) in the buffer.
    pub fn end(&self) -> usize {
        self.end
    }

    /// Read-only, so the buffer cannot shrink under the window.
    pub fn get_ref(&self) -> &B {
        &self.buf
    }

    /// The window's bytes.
    pub fn as_slice(&self) -> &[u8] {
        let len = self.len();
        if len == 0 {
            return &[];
        }
        // SAFETY: `len` > 0 means begin < end <= bytes_init (see `len`), so the range
        // is initialised memory in `buf`'s storage, alive while `&self` is.
        unsafe { std::slice::from_raw_parts(self.buf.stable_ptr().add(self.begin), len) }
    }

    /// Clamped to the buffer's current contents, so a buffer that somehow shrank
    /// through `&B` can never make the window cover bytes it no longer holds.
    pub fn len(&self) -> usize {
        self.end
            .min(self.buf.bytes_init())
            .saturating_sub(self.begin)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_inner(self) -> B {
        self.buf
    }
}

// SAFETY: the pointer is `buf`'s stable pointer moved `begin` bytes on, and `len` counts
// only bytes from there that `buf` reports initialised; `buf` is owned by the slice, so
// the storage lives and stays put as long as the slice does.
unsafe impl<B: IoBuf> IoBuf for Slice<B> {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr().wrapping_add(self.begin)
    }

    fn bytes_init(&self) -> usize {
        self.len()
    }

    fn bytes_total(&self) -> usize {
        self.len()
    }
}
