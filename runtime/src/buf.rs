//! Owned buffers.
//!
//! The kernel may write into a read buffer after the future that asked for the read is
//! gone, so ringloom never borrows a caller's buffer for an operation: it takes ownership
//! and hands the buffer back with the result. A dropped operation keeps its buffer alive
//! in the driver until the completion arrives.

/// A buffer the kernel may read from. Its memory must not move while the value is alive
/// (a `Vec`'s heap storage qualifies, an inline array does not).
///
/// # Safety
/// `stable_ptr` must point to `bytes_init` readable bytes that stay at the same address
/// for as long as the value lives, even when the value itself is moved.
pub unsafe trait IoBuf: Send + 'static {
    fn stable_ptr(&self) -> *const u8;
    /// Bytes that hold data (what a write sends).
    fn bytes_init(&self) -> usize;
    /// Bytes of capacity (what a read may fill).
    fn bytes_total(&self) -> usize;
}

/// A buffer the kernel may write into.
///
/// # Safety
/// As for [`IoBuf`], and `stable_mut_ptr` must be valid for `bytes_total` bytes of writes.
pub unsafe trait IoBufMut: IoBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8;
    /// Records that the first `pos` bytes now hold data.
    ///
    /// # Safety
    /// The first `pos` bytes must have been initialised.
    unsafe fn set_init(&mut self, pos: usize);
}

// SAFETY: a Vec's heap storage does not move when the Vec is moved; len bytes are
// initialised and capacity bytes are allocated.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: see the IoBuf impl; writes go to the Vec's own allocation.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len() < pos {
            // SAFETY: the caller guarantees the first `pos` bytes are initialised and
            // pos <= capacity because the kernel was given at most `capacity` bytes.
            unsafe { self.set_len(pos) };
        }
    }
}

// SAFETY: a boxed slice's storage is fixed and fully initialised.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; the whole slice is writable.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _pos: usize) {}
}

// SAFETY: static data never moves or goes away.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: static data never moves or goes away.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: a String's heap storage does not move when the String is moved.
unsafe impl IoBuf for String {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

/// A raw pointer that may cross to the thread that performs a fallback syscall.
///
/// The pointee is owned by an in-flight operation, which the driver keeps alive until the
/// syscall has reported back, exactly as it would for the kernel.
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SendPtr<T> {}

// SAFETY: only used for memory that an in-flight op owns and keeps alive until the
// syscall using it has completed; the op is not touched meanwhile.
unsafe impl<T> Send for SendPtr<T> {}

impl<T> SendPtr<T> {
    pub(crate) fn new(ptr: *const T) -> Self {
        SendPtr(ptr as *mut T)
    }
}

/// An iovec array an op owns; the kernel reads it, and its entries point into buffers the
/// same op owns.
pub(crate) struct IoVecs(pub(crate) Vec<libc::iovec>);

// SAFETY: the pointers inside point into buffers owned by the same op, which moves
// between threads together with this array.
unsafe impl Send for IoVecs {}
