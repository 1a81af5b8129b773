//! Seeded scheduling (`RINGLOOM_SCHED_SEED=n`, or `Builder::sched_seed`): the choices a
//! worker makes freely (which of its ready tasks runs next, where it looks first, whom
//! it steals from and when) come from a random sequence seeded with `n`, one stream per
//! worker. A test suite run under a few seeds tries interleavings that the default
//! FIFO order never produces; with one worker (or a fixed timing) a seed that found a
//! bug finds it again. Off by default: it costs a few queue rotations per task.

use std::io;

/// The environment variable that turns seeded scheduling on.
pub const SEED_VAR: &str = "RINGLOOM_SCHED_SEED";

/// The seed the environment asks for: `Ok(None)` if unset, an error if it is set to
/// anything but an unsigned integer.
pub fn seed_from_env() -> io::Result<Option<u64>> {
    match std::env::var(SEED_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => value.trim().parse().map(Some).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{SEED_VAR} must be an unsigned integer, not {value:?}"),
            )
        }),
        Err(err) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{SEED_VAR}: {err}"),
        )),
    }
}

/// One stream of choices (xorshift64*, seeded through splitmix64 so that nearby seeds
/// and streams start far apart).
#[derive(Clone, Debug)]
pub struct Shuffle {
    state: u64,
}

impl Shuffle {
    /// The stream `stream` (a worker index, say) of seed `seed`.
    pub fn new(seed: u64, stream: u64) -> Shuffle {
        let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Shuffle { state: z | 1 }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0). No choice (`n` of 0 or 1) takes no draw,
    /// so that how often a lone worker looks for work it cannot have leaves the
    /// sequence alone.
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    /// True about once in `n` calls.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Shuffle;

    #[test]
    fn a_seed_replays_and_streams_differ() {
        let draw = |seed, stream| {
            let mut shuffle = Shuffle::new(seed, stream);
            (0..64).map(|_| shuffle.below(10)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 0), draw(7, 0));
        assert_ne!(draw(7, 0), draw(7, 1));
        assert_ne!(draw(7, 0), draw(8, 0));
        let values = draw(7, 0);
        assert!(values.iter().all(|&v| v < 10));
        assert!((0..10).all(|v| values.contains(&v)), "every value comes up");
    }
}
