//! Task cells carved from per-thread chunks of equal slots instead of one malloc each.
//!
//! Why: on a worker thread glibc's malloc grows its arena a few pages at a time (an
//! `mprotect` and a VMA split per step) and trims it again on the way down, which made a
//! burst of a million spawns cost as much as running them. Here an executor thread takes
//! cells from 256 KiB chunks, one size class per chunk, carved eight at a time from
//! 2 MiB regions (see `Region`):
//!
//! - a cell freed on its chunk's thread goes back on that chunk's free list, no atomics;
//! - one freed on another thread goes on the chunk's atomic list, which the owner takes
//!   back when it looks for room;
//! - a chunk that empties is unmapped, unless it is its class's current one;
//! - when the owner thread exits, chunks with live cells are abandoned: the last free
//!   unmaps them.
//!
//! Cells bigger than 512 bytes or aligned to more than 16, and cells made on threads that
//! are not executors, use the global allocator (the caller picks the matching vtable).
//! So do all cells with `RINGLOOM_TASK_SLAB=0`: ASan and valgrind see a reused slot as
//! live memory, so their runs turn the slab off to catch a task freed too early.

use std::cell::UnsafeCell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::region::{self, Region};

/// The size (and alignment) of a chunk: a slot's address masked down gives its chunk.
pub(super) const CHUNK_BYTES: usize = 256 * 1024;
/// Slot sizes step by 8 bytes, not by the 16 of malloc: a task cell of 72 bytes (the
/// header and a small future) then takes 72, not 80.
const GRAIN: usize = 8;
/// The largest alignment a slot gives: a cell aligned to 16 is rounded up to a multiple
/// of 16, so every slot of its class is aligned (slots start 128 bytes in).
const MAX_ALIGN: usize = 16;
/// Slot sizes 8, 16, ... 512 bytes.
const CLASSES: usize = 64;
const MAX_SLOT: usize = GRAIN * CLASSES;
/// The first slot's offset: the chunk's header, rounded to a cache line.
const FIRST_SLOT: usize = 128;
/// `Chunk::remote` once the owner thread is gone.
const ABANDONED: usize = 1;

const _: () = assert!(std::mem::size_of::<Chunk>() <= FIRST_SLOT);

/// The head of every chunk (it is aligned to `CHUNK_BYTES`, so a slot's address masked
/// down gives its chunk).
#[repr(C)]
struct Chunk {
    /// Slots freed by other threads (an intrusive stack), or `ABANDONED`.
    remote: AtomicUsize,
    /// Once abandoned: cells still live, minus frees since (see `Cache::drop`).
    orphans: AtomicIsize,
    /// Its cache's id; written before any slot is handed out, never after.
    owner: u64,
    slot_bytes: usize,
    // The rest is touched by the owner thread only.
    free: *mut FreeSlot,
    /// Offset of the first slot never handed out.
    bump: usize,
    /// Slots handed out and not back on `free`.
    used: usize,
    /// Its position in its class's `chunks`.
    index: usize,
}

struct FreeSlot {
    next: *mut FreeSlot,
}

#[derive(Default)]
struct Class {
    /// Where allocations go first; null until the first one.
    current: Option<NonNull<Chunk>>,
    /// Every chunk of this class, `current` included.
    chunks: Vec<NonNull<Chunk>>,
    /// Where the next search for room starts in `chunks`.
    cursor: usize,
}

struct Cache {
    id: u64,
    classes: [Class; CLASSES],
    /// The region new chunks are carved from.
    region: Region,
}

/// Ids of caches, never reused, so that a chunk never mistakes a new thread for its
/// owner.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    // Reached only by `allocate`, `free` and `enable`, which call no code that could
    // reach it again while they hold the reference.
    static CACHE: UnsafeCell<Option<Cache>> = const { UnsafeCell::new(None) };
}

/// Lets this thread (an executor: a worker or a `block_on` caller) carve task cells.
pub(crate) fn enable_on_this_thread() {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    let enabled = ENABLED.get_or_init(|| {
        !matches!(
            std::env::var("RINGLOOM_TASK_SLAB").as_deref(),
            Ok("0") | Ok("off")
        )
    });
    if !enabled {
        return;
    }
    let _ = CACHE.try_with(|cache| {
        // SAFETY: see `CACHE`: no other reference to it is live on this thread.
        let cache = unsafe { &mut *cache.get() };
        if cache.is_none() {
            *cache = Some(Cache {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                classes: std::array::from_fn(|_| Class::default()),
                region: Region::default(),
            });
        }
    });
}

/// A slot for a cell of `size` bytes aligned to `align`, or `None`: then the caller uses
/// the global allocator (too big, over-aligned, not an executor thread, or no memory).
pub(crate) fn allocate(size: usize, align: usize) -> Option<NonNull<u8>> {
    if size > MAX_SLOT || align > MAX_ALIGN || size == 0 {
        return None;
    }
    let class = class_of(size, align);
    CACHE
        .try_with(|cache| {
            // SAFETY: see `CACHE`.
            let cache = unsafe { &mut *cache.get() };
            cache.as_mut()?.allocate(class)
        })
        .ok()
        .flatten()
}

/// The class of a cell no bigger than `MAX_SLOT` and aligned to at most `MAX_ALIGN`.
fn class_of(size: usize, align: usize) -> usize {
    size.next_multiple_of(align.max(GRAIN)) / GRAIN - 1
}

/// Gives back a slot `allocate` returned, from any thread.
///
/// # Safety
/// `slot` came from `allocate`, is freed once, and is not used after.
pub(crate) unsafe fn free(slot: NonNull<u8>) {
    let chunk = chunk_of(slot);
    let freed_here = CACHE
        .try_with(|cache| {
            // SAFETY: see `CACHE`.
            let cache = unsafe { &mut *cache.get() };
            match cache {
                // SAFETY: `owner` never changes after the chunk is made, and this slot
                // reached us after that (handed over with its task).
                Some(cache) if unsafe { (*chunk.as_ptr()).owner } == cache.id => {
                    // SAFETY: our own chunk, and the caller's slot.
                    unsafe { cache.free_local(chunk, slot) };
                    true
                }
                _ => false,
            }
        })
        .unwrap_or(false);
    if !freed_here {
        // SAFETY: the caller's slot, of a chunk that stays mapped until it is back.
        unsafe { free_remote(chunk, slot) };
    }
}

fn chunk_of(slot: NonNull<u8>) -> NonNull<Chunk> {
    let address = slot.as_ptr() as usize & !(CHUNK_BYTES - 1);
    // SAFETY: a slot lies past its chunk's header, so the masked address is not null.
    unsafe { NonNull::new_unchecked(address as *mut Chunk) }
}

/// # Safety
/// `slot` is a live slot of `chunk`, freed on a thread that is not the chunk's owner.
unsafe fn free_remote(chunk: NonNull<Chunk>, slot: NonNull<u8>) {
    // SAFETY: the chunk is mapped while any of its slots is live (this one is).
    let header = unsafe { chunk.as_ref() };
    let slot = slot.as_ptr() as *mut FreeSlot;
    let mut head = header.remote.load(Ordering::Relaxed);
    loop {
        if head == ABANDONED {
            // The owner has gone: the last cell back unmaps the chunk.
            if header.orphans.fetch_sub(1, Ordering::AcqRel) == 1 {
                // SAFETY: no live slot is left, and the owner has let go of it.
                unsafe { unmap(chunk) };
            }
            return;
        }
        // SAFETY: the slot is ours until the exchange publishes it.
        unsafe { (*slot).next = head as *mut FreeSlot };
        match header.remote.compare_exchange_weak(
            head,
            slot as usize,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

impl Cache {
    fn allocate(&mut self, class: usize) -> Option<NonNull<u8>> {
        if let Some(chunk) = self.classes[class].current {
            // SAFETY: our own chunk.
            if let Some(slot) = unsafe { take_slot(chunk) } {
                return Some(slot);
            }
        }
        self.refill(class)
    }

    /// The current chunk is full: look for room in this class's chunks (taking back
    /// what other threads freed in them), else map a new one. At most `SCAN` chunks
    /// are looked at per call, from where the last call stopped, so a burst that fills
    /// thousands of chunks does not rescan all of them each time it needs another.
    #[cold]
    fn refill(&mut self, class: usize) -> Option<NonNull<u8>> {
        const SCAN: usize = 64;
        if let Some(chunk) = self.classes[class].current {
            // SAFETY: our own chunk.
            unsafe { take_back_remote(chunk) };
            // SAFETY: as above.
            if let Some(slot) = unsafe { take_slot(chunk) } {
                return Some(slot);
            }
        }
        let mut looked = 0;
        while looked < SCAN && !self.classes[class].chunks.is_empty() {
            let Class {
                current,
                chunks,
                cursor,
            } = &mut self.classes[class];
            if *cursor >= chunks.len() {
                *cursor = 0;
            }
            let chunk = chunks[*cursor];
            looked += 1;
            // SAFETY: our own chunk.
            unsafe { take_back_remote(chunk) };
            // SAFETY: as above.
            let header = unsafe { &*chunk.as_ptr() };
            if header.used == 0 && *current != Some(chunk) {
                // Emptied by other threads: unmap it rather than let it linger (the
                // chunk moved into its place is looked at next).
                // SAFETY: our own chunk, with no live slot.
                unsafe { self.release(class, chunk) };
                continue;
            }
            *cursor += 1;
            if !header.free.is_null() || header.bump + header.slot_bytes <= CHUNK_BYTES {
                *current = Some(chunk);
                // SAFETY: our own chunk, which has room.
                return unsafe { take_slot(chunk) };
            }
        }
        let chunk = self.region.take_chunk()?;
        let chunk = init_chunk(
            chunk,
            self.id,
            (class + 1) * GRAIN,
            self.classes[class].chunks.len(),
        );
        self.classes[class].chunks.push(chunk);
        self.classes[class].current = Some(chunk);
        // SAFETY: our own new chunk.
        unsafe { take_slot(chunk) }
    }

    /// # Safety
    /// `slot` is a live slot of `chunk`, one of this cache's.
    unsafe fn free_local(&mut self, chunk: NonNull<Chunk>, slot: NonNull<u8>) {
        // SAFETY: our own chunk; the slot is the caller's to give back.
        let header = unsafe { &mut *chunk.as_ptr() };
        let slot = slot.as_ptr() as *mut FreeSlot;
        // SAFETY: the slot is ours again.
        unsafe { (*slot).next = header.free };
        header.free = slot;
        header.used -= 1;
        let class = header.slot_bytes / GRAIN - 1;
        if header.used == 0 && self.classes[class].current != Some(chunk) {
            // SAFETY: ours, and nothing in it is live; remote frees would have made
            // `used` higher than the live count, never lower.
            unsafe { self.release(class, chunk) };
        }
    }

    /// Drops an empty chunk from its class and unmaps it.
    ///
    /// # Safety
    /// `chunk` is this cache's, of `class`, with no live slot.
    unsafe fn release(&mut self, class: usize, chunk: NonNull<Chunk>) {
        let chunks = &mut self.classes[class].chunks;
        // SAFETY: our own chunk.
        let index = unsafe { (*chunk.as_ptr()).index };
        chunks.swap_remove(index);
        if let Some(moved) = chunks.get(index) {
            // SAFETY: our own chunk.
            unsafe { (*moved.as_ptr()).index = index };
        }
        // A remote free may still sit on its list: that slot is counted in `used`
        // only until `take_back_remote`, so `used == 0` means none is pending.
        // SAFETY: the caller's guarantee.
        unsafe { unmap(chunk) };
    }
}

impl Drop for Cache {
    /// The thread is exiting: unmap chunks with no live cell, abandon the others to the
    /// thread that frees their last one.
    fn drop(&mut self) {
        self.region.release_rest();
        for class in &mut self.classes {
            for chunk in class.chunks.drain(..) {
                // SAFETY: our own chunk.
                let header = unsafe { &*chunk.as_ptr() };
                let pending = header.remote.swap(ABANDONED, Ordering::Acquire);
                // SAFETY: the list was built by `free_remote` from slots of this chunk.
                let back = unsafe { list_length(pending as *mut FreeSlot) };
                let live = (header.used - back) as isize;
                // Remote frees from here on count down `orphans`, perhaps below zero
                // before this adds the live count: whoever brings it to zero unmaps.
                if live == 0 || header.orphans.fetch_add(live, Ordering::AcqRel) + live == 0 {
                    // SAFETY: no live slot, and no remote free will touch it again.
                    unsafe { unmap(chunk) };
                }
            }
        }
    }
}

/// # Safety
/// `chunk` is the calling thread's own.
unsafe fn take_slot(chunk: NonNull<Chunk>) -> Option<NonNull<u8>> {
    // SAFETY: the caller's guarantee.
    let header = unsafe { &mut *chunk.as_ptr() };
    let slot = if !header.free.is_null() {
        let slot = header.free;
        // SAFETY: a slot on the free list holds the next one's address.
        header.free = unsafe { (*slot).next };
        slot as *mut u8
    } else if header.bump + header.slot_bytes <= CHUNK_BYTES {
        let slot = (chunk.as_ptr() as *mut u8).wrapping_add(header.bump);
        header.bump += header.slot_bytes;
        slot
    } else {
        return None;
    };
    header.used += 1;
    NonNull::new(slot)
}

/// Moves the slots other threads freed onto the chunk's own free list.
///
/// # Safety
/// `chunk` is the calling thread's own (so not abandoned).
unsafe fn take_back_remote(chunk: NonNull<Chunk>) {
    // SAFETY: the caller's guarantee.
    let header = unsafe { &mut *chunk.as_ptr() };
    if header.remote.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut slot = header.remote.swap(0, Ordering::Acquire) as *mut FreeSlot;
    while !slot.is_null() {
        // SAFETY: published by `free_remote` with release; the acquire above sees it.
        let next = unsafe { (*slot).next };
        // SAFETY: the slot is ours again.
        unsafe { (*slot).next = header.free };
        header.free = slot;
        header.used -= 1;
        slot = next;
    }
}

/// # Safety
/// `slot` heads a list of free slots.
unsafe fn list_length(mut slot: *mut FreeSlot) -> usize {
    let mut length = 0;
    while !slot.is_null() {
        // SAFETY: the caller's guarantee.
        slot = unsafe { (*slot).next };
        length += 1;
    }
    length
}

/// Writes a chunk's header at the start of a fresh chunk.
fn init_chunk(chunk: NonNull<u8>, owner: u64, slot_bytes: usize, index: usize) -> NonNull<Chunk> {
    let chunk = chunk.cast::<Chunk>();
    // SAFETY: the chunk is mapped, writable, aligned and not handed out before.
    unsafe {
        chunk.as_ptr().write(Chunk {
            remote: AtomicUsize::new(0),
            orphans: AtomicIsize::new(0),
            owner,
            slot_bytes,
            free: ptr::null_mut(),
            bump: FIRST_SLOT,
            used: 0,
            index,
        })
    };
    chunk
}

/// # Safety
/// The chunk has no live slot and nobody will touch it again.
unsafe fn unmap(chunk: NonNull<Chunk>) {
    // SAFETY: the caller's guarantee; the chunk came from `Region::take_chunk`.
    unsafe { region::unmap_chunk(chunk.cast()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live_chunks(class: usize) -> usize {
        CACHE.with(|cache| {
            // SAFETY: no other reference is live.
            unsafe { &*cache.get() }
                .as_ref()
                .map_or(0, |cache| cache.classes[class].chunks.len())
        })
    }

    /// Runs `f` on a new thread that carves cells (as an executor's does), and waits.
    fn on_executor_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(|| {
            enable_on_this_thread();
            f();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_that_is_not_an_executor_gets_none() {
        std::thread::spawn(|| assert!(allocate(64, 8).is_none()))
            .join()
            .unwrap();
    }

    #[test]
    fn big_or_over_aligned_cells_are_refused() {
        on_executor_thread(|| {
            assert!(allocate(MAX_SLOT + 1, 8).is_none());
            assert!(allocate(64, 32).is_none());
            let slot = allocate(MAX_SLOT, 16).expect("the largest class");
            // SAFETY: just allocated.
            unsafe { free(slot) };
        });
    }

    #[test]
    fn slots_are_distinct_aligned_and_reused_and_empty_chunks_go() {
        on_executor_thread(|| {
            let per_chunk = (CHUNK_BYTES - FIRST_SLOT) / 48;
            let slots: Vec<_> = (0..3 * per_chunk)
                .map(|i| {
                    let slot = allocate(48, 16).unwrap();
                    assert_eq!(slot.as_ptr() as usize % 16, 0);
                    // SAFETY: 48 writable bytes.
                    unsafe { slot.as_ptr().write_bytes(i as u8, 48) };
                    slot
                })
                .collect();
            let mut addresses: Vec<_> = slots.iter().map(|s| s.as_ptr() as usize).collect();
            addresses.sort_unstable();
            addresses.dedup();
            assert_eq!(addresses.len(), slots.len(), "no slot handed out twice");
            assert_eq!(live_chunks(class_of(48, 16)), 3);
            for slot in &slots {
                // SAFETY: each allocated above, freed once.
                unsafe { free(*slot) };
            }
            // The two full chunks were unmapped when they emptied; the current stays.
            assert_eq!(live_chunks(class_of(48, 16)), 1);
            let again = allocate(48, 16).unwrap();
            assert!(addresses.binary_search(&(again.as_ptr() as usize)).is_ok());
            // SAFETY: allocated above.
            unsafe { free(again) };
        });
    }

    #[test]
    fn slots_step_by_eight_bytes_and_keep_an_alignment_of_sixteen() {
        on_executor_thread(|| {
            let packed: Vec<_> = (0..100).map(|_| allocate(72, 8).unwrap()).collect();
            for pair in packed.windows(2) {
                assert_eq!(pair[1].as_ptr() as usize - pair[0].as_ptr() as usize, 72);
            }
            // 40 bytes aligned to 16 take a 48-byte slot, every one of them aligned.
            let aligned: Vec<_> = (0..100).map(|_| allocate(40, 16).unwrap()).collect();
            for slot in &aligned {
                assert_eq!(slot.as_ptr() as usize % 16, 0);
            }
            for slot in packed.into_iter().chain(aligned) {
                // SAFETY: each allocated above, freed once.
                unsafe { free(slot) };
            }
        });
    }

    #[test]
    fn chunks_are_carved_eight_to_an_aligned_region() {
        on_executor_thread(|| {
            let per_chunk = (CHUNK_BYTES - FIRST_SLOT) / 512;
            let per_region = Region::BYTES / CHUNK_BYTES;
            // Two regions' worth of chunks, then one more.
            let slots: Vec<_> = (0..(2 * per_region + 1) * per_chunk)
                .map(|_| allocate(512, 8).unwrap().as_ptr() as usize)
                .collect();
            let mut regions: Vec<usize> = slots.iter().map(|s| s & !(Region::BYTES - 1)).collect();
            regions.dedup();
            assert_eq!(regions.len(), 3, "eight chunks to a region");
            for slot in slots {
                // SAFETY: each allocated above, freed once.
                unsafe { free(NonNull::new(slot as *mut u8).unwrap()) };
            }
        });
    }

    #[test]
    fn cells_freed_on_other_threads_come_back_and_outlive_their_owner() {
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<usize>>();
        let owner = std::thread::spawn(move || {
            enable_on_this_thread();
            let per_chunk = (CHUNK_BYTES - FIRST_SLOT) / 64;
            let first: Vec<_> = (0..per_chunk).map(|_| allocate(64, 8).unwrap()).collect();
            let first_addresses: Vec<usize> = first.iter().map(|s| s.as_ptr() as usize).collect();
            // Freed on another thread: they come back through the chunk's remote list.
            let freer = std::thread::spawn(move || {
                for slot in first_addresses {
                    // SAFETY: allocated above, freed once here.
                    unsafe { free(NonNull::new(slot as *mut u8).unwrap()) };
                }
            });
            freer.join().unwrap();
            let reused = allocate(64, 8).unwrap();
            assert!(
                first.contains(&reused),
                "a remotely freed slot is taken back before a new chunk is mapped"
            );
            assert_eq!(live_chunks(class_of(64, 8)), 1);
            // Cells still live when this thread exits: freed later, elsewhere.
            let left: Vec<usize> = (0..1000)
                .map(|_| allocate(64, 8).unwrap().as_ptr() as usize)
                .chain([reused.as_ptr() as usize])
                .collect();
            sender.send(left).unwrap();
        });
        owner.join().unwrap();
        let left = receiver.recv().unwrap();
        for slot in left {
            // SAFETY: live slots of an abandoned chunk, each freed once.
            unsafe { free(NonNull::new(slot as *mut u8).unwrap()) };
        }
    }
}
