//! Where the task slab's chunks come from: 2 MiB regions of fresh memory, mapped a
//! region at a time and cut into chunks, with a process-wide count of what is mapped.

use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::slab::CHUNK_BYTES;

/// Chunks are carved from 2 MiB regions rather than mapped one by one, and a thread's
/// regions after its first are faulted in whole when mapped (`MADV_POPULATE_WRITE`,
/// Linux 5.14): a burst of spawns then makes one call per 2 MiB instead of taking a
/// page fault per 4 KiB. The first region faults in page by page, so that a program
/// with a few tasks per worker does not pay 2 MiB each.
///
/// Not transparent huge pages: on a VM, a huge page is zeroed at first touch of memory
/// the host may have taken back, which made bursts slower and erratic (see
/// `benches/notes/rust.spawn.md`).
#[derive(Default)]
pub(super) struct Region {
    /// The next chunk to hand out and the region's end (equal: none left).
    next: usize,
    end: usize,
    /// Regions this thread has mapped so far.
    mapped: usize,
}

/// Bytes of regions mapped and not yet unmapped again, process-wide.
static MAPPED: AtomicUsize = AtomicUsize::new(0);

/// Bytes the task-cell regions of every thread hold mapped (a thread's first region
/// becomes resident as it is touched, the others at once).
pub fn mapped_bytes() -> usize {
    MAPPED.load(Ordering::Relaxed)
}

impl Region {
    pub(super) const BYTES: usize = 2 * 1024 * 1024;

    /// A fresh chunk's address, aligned to `CHUNK_BYTES`, or `None` when out of memory.
    pub(super) fn take_chunk(&mut self) -> Option<NonNull<u8>> {
        if self.next == self.end {
            self.map()?;
        }
        let chunk = self.next;
        self.next += CHUNK_BYTES;
        NonNull::new(chunk as *mut u8)
    }

    /// Maps the next region, aligned to its size (map twice the size, trim the ends).
    fn map(&mut self) -> Option<()> {
        let span = 2 * Self::BYTES;
        // SAFETY: a fresh private anonymous mapping; no memory of ours is involved.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let base = base as usize;
        let start = (base + Self::BYTES - 1) & !(Self::BYTES - 1);
        let (head, tail) = (start - base, base + span - (start + Self::BYTES));
        // SAFETY: both ranges lie in the mapping just made and outside the region kept;
        // the advice only concerns the region, which nothing uses yet.
        unsafe {
            if head > 0 {
                libc::munmap(base as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap((start + Self::BYTES) as *mut libc::c_void, tail);
            }
            if self.mapped > 0 {
                // Faults the region in with one call. Advice only: where it fails (an
                // older kernel, no memory to spare now) pages fault in as touched.
                libc::madvise(
                    start as *mut libc::c_void,
                    Self::BYTES,
                    libc::MADV_POPULATE_WRITE,
                );
            }
        }
        self.mapped += 1;
        MAPPED.fetch_add(Self::BYTES, Ordering::Relaxed);
        (self.next, self.end) = (start, start + Self::BYTES);
        Some(())
    }

    /// Unmaps the chunks never handed out.
    pub(super) fn release_rest(&mut self) {
        if self.next < self.end {
            // SAFETY: the range was mapped by `map` and no chunk in it was handed out.
            unsafe { libc::munmap(self.next as *mut libc::c_void, self.end - self.next) };
            MAPPED.fetch_sub(self.end - self.next, Ordering::Relaxed);
        }
        self.next = self.end;
    }
}

/// Gives a chunk's memory back to the system.
///
/// # Safety
/// `chunk` came from `Region::take_chunk`, holds nothing live, and nobody touches it
/// again.
pub(super) unsafe fn unmap_chunk(chunk: NonNull<u8>) {
    // SAFETY: the caller's guarantee; the range is the chunk `take_chunk` handed out.
    unsafe { libc::munmap(chunk.as_ptr() as *mut libc::c_void, CHUNK_BYTES) };
    MAPPED.fetch_sub(CHUNK_BYTES, Ordering::Relaxed);
}
