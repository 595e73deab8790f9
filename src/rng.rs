//! SplitMix64: a tiny, well-known deterministic generator (Steele, Lea and Flood, 2014), for
//! the random weights of demos and tests and for the design-space sampler. Integer arithmetic
//! only, so a seed gives the same numbers on every machine.

/// SplitMix64's state.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi` (a multiply-shift, unbiased enough for ranges far below 2^32).
    pub(crate) fn int(&mut self, lo: usize, hi: usize) -> usize {
        let span = (hi - lo + 1) as u128;
        lo + ((self.next_u64() as u128 * span) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix;

    #[test]
    fn matches_the_published_sequence() {
        // SplitMix64 seeded with 1234567 (the reference C implementation's first outputs).
        let mut r = SplitMix::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn ints_stay_in_range() {
        let mut r = SplitMix::new(7);
        let v: Vec<usize> = (0..1000).map(|_| r.int(3, 5)).collect();
        assert!(v.iter().all(|x| (3..=5).contains(x)));
        assert!((3..=5).all(|k| v.contains(&k)));
    }
}
