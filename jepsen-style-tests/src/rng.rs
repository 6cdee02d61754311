//! A small seeded generator (SplitMix64): every random choice of a run follows from its seed, so
//! a run can be replayed with `--seed`.

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty), for millisecond durations.
    pub fn between(&mut self, lo: u128, hi: u128) -> u64 {
        let lo = u64::try_from(lo).unwrap_or(u64::MAX);
        let hi = u64::try_from(hi).unwrap_or(u64::MAX);
        lo + self.below(hi.saturating_sub(lo))
    }

    /// A seed for a sub-generator (one per worker).
    pub fn fork(&mut self) -> u64 {
        self.next_u64()
    }
}
