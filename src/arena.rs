//! Frame stacks for virtual threads without a `mmap` and a `munmap` each.
//!
//! CPython 3.11 keeps a thread's (and so each greenlet's) frames in 16 KiB "data stack
//! chunks" that it takes from its arena allocator, which maps and unmaps each one. A
//! virtual thread gets its own chunk when it first calls a function and gives it back
//! when it ends, so 10,000 virtual threads cost 10,000 `mmap` and `munmap` calls. The
//! unmaps flush the TLB of every CPU the process runs on and all of them take the
//! address space's lock for writing: profiled, they were a third of the workers' time
//! in a burst of 10,000 sleeps.
//!
//! This wraps the arena allocator: requests of exactly one chunk's size are carved from
//! 1 MiB regions (64 chunks, one mapping) and freed chunks are reused; a region goes
//! back to the system once all its chunks are free, beyond [`SPARE_REGIONS`] kept for
//! the next burst. A region that a few chunks in use pin (the greenlets a hub keeps idle
//! end in any order) keeps its free chunks' pages only up to [`DIRTY_LIMIT`] chunks in
//! all; past that, free chunks' pages are dropped down to half the limit, a run of
//! neighbouring chunks in one call (see [`Pool::release_dirty`]). Every other request
//! (pymalloc's arenas, bigger chunks) goes to the
//! allocator that was installed before, and so does the free of any block this did not
//! hand out. `RINGLOOM_FRAME_CHUNKS=system` leaves the allocator alone.
//!
//! CPython calls the arena allocator with the GIL held; the lock here is for Rust's sake
//! and never contended.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, Once, OnceLock};

use pyo3::ffi;

/// `_PY_DATA_STACK_CHUNK_SIZE` (`Python/pystate.c`): the size of the first chunk of
/// every thread's and greenlet's frame stack, and the only size served here.
const CHUNK: usize = 16 * 1024;
const REGION_CHUNKS: usize = 64;
const REGION: usize = CHUNK * REGION_CHUNKS;
/// Fully free regions kept mapped: a burst of that many times 64 virtual threads
/// starts without mapping anything.
const SPARE_REGIONS: usize = 2;
/// Free chunks whose pages are kept (reused without a page fault) at most; past this,
/// free chunks have their pages dropped (`MADV_DONTNEED`) until half this many keep
/// theirs. Regions pinned by a few chunks in use (greenlets a hub keeps idle,
/// long-lived threads) would otherwise keep the pages of all their free chunks.
const DIRTY_LIMIT: usize = 256;

/// The arena allocator installed before this one (CPython's `mmap` one, or whatever a
/// host installed), for everything this does not serve.
struct Previous(ffi::PyObjectArenaAllocator);

// SAFETY: the allocator's context and functions are shared process-wide by CPython
// itself; they are only called with the GIL held, as CPython calls them.
unsafe impl Send for Previous {}
// SAFETY: as above.
unsafe impl Sync for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();
static POOL: Mutex<Pool> = Mutex::new(Pool::new());
static INSTALL: Once = Once::new();

struct Region {
    /// Indices of the region's chunks that are free.
    free: Vec<u8>,
    /// Bit `i`: chunk `i` is free and its pages are still there.
    dirty: u64,
}

struct Pool {
    /// By base address (aligned to `REGION`).
    regions: Option<HashMap<usize, Region>>,
    /// Regions with a free chunk, the one to carve from last.
    with_room: Vec<usize>,
    /// Regions whose chunks are all free.
    empty: usize,
    /// Free chunks whose pages are kept (see [`DIRTY_LIMIT`]).
    dirty: usize,
    /// Chunks handed out and not given back, and the most there ever were.
    in_use: usize,
    peak: usize,
}

/// What the pool holds, for `Loom.stats()`.
pub(crate) struct ChunkStats {
    pub(crate) regions: usize,
    pub(crate) chunks_in_use: usize,
    /// Free chunks whose pages are kept.
    pub(crate) chunks_cached: usize,
    /// The most chunks ever in use at once. A region is mapped only when every mapped
    /// one is full, so regions never exceed `chunks_peak / REGION_CHUNKS + 1`.
    pub(crate) chunks_peak: usize,
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            regions: None,
            with_room: Vec::new(),
            empty: 0,
            dirty: 0,
            in_use: 0,
            peak: 0,
        }
    }

    fn regions(&mut self) -> &mut HashMap<usize, Region> {
        self.regions.get_or_insert_with(HashMap::new)
    }

    fn take(&mut self) -> Option<usize> {
        loop {
            let Some(&base) = self.with_room.last() else {
                let base = map_region()?;
                self.regions().insert(
                    base,
                    Region {
                        free: (0..REGION_CHUNKS as u8).rev().collect(),
                        dirty: 0,
                    },
                );
                self.with_room.push(base);
                self.empty += 1;
                continue;
            };
            let Some(region) = self.regions().get_mut(&base) else {
                self.with_room.pop();
                continue;
            };
            let was_empty = region.free.len() == REGION_CHUNKS;
            let Some(index) = region.free.pop() else {
                self.with_room.pop();
                continue;
            };
            let bit = 1u64 << index;
            let was_dirty = region.dirty & bit != 0;
            region.dirty &= !bit;
            if region.free.is_empty() {
                self.with_room.pop();
            }
            if was_dirty {
                self.dirty -= 1;
            }
            if was_empty {
                self.empty -= 1;
            }
            self.in_use += 1;
            self.peak = self.peak.max(self.in_use);
            return Some(base + index as usize * CHUNK);
        }
    }

    /// Takes back a chunk this pool handed out; false if `ptr` is not one.
    fn give_back(&mut self, ptr: usize) -> bool {
        let base = ptr & !(REGION - 1);
        let Some(region) = self.regions().get_mut(&base) else {
            return false;
        };
        let index = (ptr - base) / CHUNK;
        region.free.push(index as u8);
        region.dirty |= 1 << index;
        let (free, dirty_in_region) = (region.free.len(), region.dirty.count_ones() as usize);
        self.in_use -= 1;
        self.dirty += 1;
        if free == 1 {
            self.with_room.push(base);
        }
        if free == REGION_CHUNKS {
            self.empty += 1;
            if self.empty > SPARE_REGIONS {
                self.regions().remove(&base);
                self.with_room.retain(|&other| other != base);
                self.empty -= 1;
                self.dirty -= dirty_in_region;
                unmap(base, REGION);
                return true;
            }
        }
        if self.dirty > DIRTY_LIMIT {
            self.release_dirty(DIRTY_LIMIT / 2);
        }
        true
    }

    /// Drops the pages of free chunks until at most `keep` chunks keep theirs: a run of
    /// neighbouring free chunks in one `madvise`, and first in the regions with the
    /// most chunks in use, whose free ones are the least likely to go back with their
    /// whole region soon. A burst of virtual threads ending (thousands of chunks given
    /// back, most of them in regions that then go back whole) made one call per chunk
    /// when each chunk past the limit was dropped as it came back.
    fn release_dirty(&mut self, keep: usize) {
        let mut order: Vec<(usize, usize)> = self
            .regions()
            .iter()
            .filter(|(_, region)| region.dirty != 0)
            .map(|(&base, region)| (REGION_CHUNKS - region.free.len(), base))
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        for (_, base) in order {
            if self.dirty <= keep {
                return;
            }
            let Some(region) = self.regions().get_mut(&base) else {
                continue;
            };
            let mut bits = region.dirty;
            region.dirty = 0;
            let mut released = 0;
            while bits != 0 {
                let start = bits.trailing_zeros() as usize;
                let run = (bits >> start).trailing_ones() as usize;
                // SAFETY: a dirty bit marks a free chunk (nobody uses its memory), and
                // the run lies within this region's mapping; the pages read as zeros
                // when next touched.
                unsafe {
                    libc::madvise(
                        (base + start * CHUNK) as *mut c_void,
                        run * CHUNK,
                        libc::MADV_DONTNEED,
                    )
                };
                // A run of 64 is the whole word (and starts at 0).
                let mask = if run == 64 {
                    u64::MAX
                } else {
                    ((1u64 << run) - 1) << start
                };
                bits &= !mask;
                released += run;
            }
            self.dirty -= released;
        }
    }

    fn stats(&mut self) -> ChunkStats {
        let (chunks_cached, chunks_peak) = (self.dirty, self.peak);
        let regions = self.regions();
        ChunkStats {
            chunks_cached,
            chunks_peak,
            regions: regions.len(),
            chunks_in_use: regions
                .values()
                .map(|region| REGION_CHUNKS - region.free.len())
                .sum(),
        }
    }
}

/// Maps a region aligned to its size (a chunk's region is then its address rounded
/// down), by mapping twice the size and unmapping the ends.
fn map_region() -> Option<usize> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choice
    // touches no existing memory.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * REGION,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let start = raw as usize;
    let base = (start + REGION - 1) & !(REGION - 1);
    if base > start {
        unmap(start, base - start);
    }
    let end = start + 2 * REGION;
    if end > base + REGION {
        unmap(base + REGION, end - (base + REGION));
    }
    Some(base)
}

fn unmap(addr: usize, len: usize) {
    // SAFETY: `addr..addr + len` is part of a mapping made by `map_region` that
    // nothing uses any more (an unused end, or a region whose chunks are all free).
    unsafe { libc::munmap(addr as *mut c_void, len) };
}

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // Nothing here panics while holding it, and a poisoned pool is still consistent.
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

extern "C" fn alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    if size == CHUNK {
        if let Some(chunk) = pool().take() {
            return chunk as *mut c_void;
        }
    }
    // `PREVIOUS` is set before this is installed.
    match PREVIOUS.get().map(|previous| previous.0) {
        Some(ffi::PyObjectArenaAllocator {
            ctx,
            alloc: Some(alloc),
            ..
        }) => alloc(ctx, size),
        _ => std::ptr::null_mut(),
    }
}

extern "C" fn free(_ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    if size == CHUNK && pool().give_back(ptr as usize) {
        return;
    }
    // Not handed out here, so the previous allocator did (before this one was
    // installed, or for another size): it is its to free.
    if let Some(ffi::PyObjectArenaAllocator {
        ctx,
        free: Some(free),
        ..
    }) = PREVIOUS.get().map(|previous| previous.0)
    {
        free(ctx, ptr, size);
    }
}

/// Installs the pooling arena allocator, once per process, unless
/// `RINGLOOM_FRAME_CHUNKS=system`. Needs the GIL (CPython's allocator settings).
pub(crate) fn install(_py: pyo3::Python<'_>) {
    INSTALL.call_once(|| {
        if std::env::var("RINGLOOM_FRAME_CHUNKS").as_deref() == Ok("system") {
            return;
        }
        let mut previous = ffi::PyObjectArenaAllocator {
            ctx: std::ptr::null_mut(),
            alloc: None,
            free: None,
        };
        // SAFETY: the GIL is held (`_py`); CPython fills in the allocator it uses.
        unsafe { ffi::PyObject_GetArenaAllocator(&mut previous) };
        if PREVIOUS.set(Previous(previous)).is_err() {
            return;
        }
        let mut pooled = ffi::PyObjectArenaAllocator {
            ctx: std::ptr::null_mut(),
            alloc: Some(alloc),
            free: Some(free),
        };
        // SAFETY: the GIL is held; blocks the previous allocator handed out are freed
        // through it (see `free`), so swapping with blocks live is sound.
        unsafe { ffi::PyObject_SetArenaAllocator(&mut pooled) };
    });
}

/// The pool's regions and the chunks in use in them.
pub(crate) fn stats() -> ChunkStats {
    pool().stats()
}
