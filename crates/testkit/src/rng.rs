//! The one seeded random generator of tests and tools: a small deterministic PRNG (splitmix64
//! seeding, xorshift64* steps), so a run is reproduced from its printed seed.

/// splitmix64: spreads a seed or an id into well-mixed bits (also used to pick poison records).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `KPS_SEED` if set (to repeat a run), else a seed from the clock; print it where it is used.
pub fn seed_from_env_or_clock() -> u64 {
    std::env::var("KPS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            mix(nanos ^ u64::from(std::process::id()))
        })
}

impl Rng {
    /// A generator for `what`, seeded by [`seed_from_env_or_clock`]; the seed is printed (shown
    /// with a failing test's output) so that `KPS_SEED` can repeat the run.
    pub fn for_test(what: &str) -> Self {
        let seed = seed_from_env_or_clock();
        eprintln!("{what}: seed {seed} (KPS_SEED={seed} repeats it)");
        Self::new(seed)
    }
}

/// xorshift64*: fast, good enough for choosing faults and delays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // A zero state would stay zero forever.
        Self(mix(seed) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi` (`lo` if the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.range(0, n)
    }

    /// An index into a collection of `len` items (0 if it is empty).
    pub fn index(&mut self, len: usize) -> usize {
        self.range(0, len as u64) as usize
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() as u64) as usize]
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_ranges_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.range(5, 9);
            assert_eq!(x, b.range(5, 9));
            assert!((5..9).contains(&x));
        }
        assert_eq!(Rng::new(0).range(3, 3), 3);
        let hits = (0..10_000).filter(|_| a.chance(0.3)).count();
        assert!((2_500..3_500).contains(&hits), "{hits}");
    }
}
