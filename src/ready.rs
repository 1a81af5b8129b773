//! The ready virtual threads of one hub, in the order they run: lowest priority number
//! first, and first come, first served within a priority.
//!
//! One FIFO per priority and a bitmap of the non-empty ones: a push is a queue push and
//! a bit set, a pop one scan of four words, whatever the number of ready threads. A
//! heap keyed on (priority, sequence) would cost a logarithm per push and pop, and the
//! 256 priorities make the buckets cheap (a few KiB per worker).
//!
//! Under seeded scheduling (`RINGLOOM_SCHED_SEED`) the order within a priority is
//! shuffled from the seed instead; priorities still come first.

use std::collections::VecDeque;

use ringloom::shuffle::Shuffle;

/// Hub keys of ready virtual threads, ordered by priority, then by when they got ready.
pub(crate) struct ReadyQueue {
    /// One FIFO per priority (an empty one has allocated nothing).
    buckets: Vec<VecDeque<usize>>,
    /// Bit `p` (word `p / 64`, bit `p % 64`) set while `buckets[p]` is not empty.
    occupied: [u64; 4],
    len: usize,
    /// Seeded scheduling's choices (None: first come, first served).
    shuffle: Option<Shuffle>,
}

impl ReadyQueue {
    pub(crate) fn new(shuffle: Option<Shuffle>) -> ReadyQueue {
        ReadyQueue {
            buckets: (0..256).map(|_| VecDeque::new()).collect(),
            occupied: [0; 4],
            len: 0,
            shuffle,
        }
    }

    pub(crate) fn push(&mut self, priority: u8, key: usize) {
        let p = usize::from(priority);
        self.buckets[p].push_back(key);
        self.occupied[p / 64] |= 1 << (p % 64);
        self.len += 1;
    }

    /// The key that got ready first among those of the lowest priority number (seeded:
    /// any one of them).
    pub(crate) fn pop(&mut self) -> Option<usize> {
        let word = self.occupied.iter().position(|&bits| bits != 0)?;
        let p = word * 64 + self.occupied[word].trailing_zeros() as usize;
        let bucket = &mut self.buckets[p];
        let at = self.shuffle.as_mut().map_or(0, |s| s.below(bucket.len()));
        let key = bucket.remove(at).expect("an occupied bucket is not empty");
        if bucket.is_empty() {
            self.occupied[word] &= !(1 << (p % 64));
        }
        self.len -= 1;
        Some(key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}
