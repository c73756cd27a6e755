//! Deterministic random numbers and trigonometry for the synthetic scene.
//!
//! The scene must be byte-identical for a seed on every platform. Random
//! numbers come from SplitMix64 (integer only), and the only float operations
//! used by the renderer are IEEE-754 basic operations (`+ - * /`, `sqrt`,
//! `floor`), which are correctly rounded everywhere. The platform `libm`
//! (`sin`, `cos`, `exp`, …) is *not* used: its results differ between C
//! libraries and architectures, so [`sin_cos`] is a plain polynomial.

/// SplitMix64: tiny, fast, and good enough for picture generation.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Generator for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        finalize(self.0)
    }

    /// Uniform integer in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// Uniform float in `[0, 1)` with 24 bits of resolution.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
    }

    /// Uniform float in `[lo, hi)`.
    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `lo..=hi`.
    pub(crate) fn range_i32(&mut self, lo: i32, hi: i32) -> i32 {
        let span = (hi - lo + 1).max(1) as u32;
        lo + self.below(span) as i32
    }

    /// `true` with probability `p`.
    pub(crate) fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }
}

/// SplitMix64 output function; also a good 64-bit mixing hash.
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Combine two values into one well-mixed seed (e.g. scene seed and frame index).
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    finalize(finalize(a ^ 0x6A09_E667_F3BC_C909).wrapping_add(b))
}

/// Sine and cosine of an angle given in turns (1.0 = 360°), platform independent.
///
/// Absolute error below 1e-6, which is far below one pixel at any size we render.
pub(crate) fn sin_cos(turns: f32) -> (f32, f32) {
    let t = turns - turns.floor(); // [0, 1)
    let q4 = t * 4.0;
    let quadrant = q4.floor();
    let a = (q4 - quadrant) * core::f32::consts::FRAC_PI_2; // [0, pi/2)
    let a2 = a * a;
    // Taylor series, accurate to ~1e-7 on [0, pi/2].
    let s = a
        * (1.0
            - a2 / 6.0
                * (1.0 - a2 / 20.0 * (1.0 - a2 / 42.0 * (1.0 - a2 / 72.0 * (1.0 - a2 / 110.0)))));
    let c = 1.0
        - a2 / 2.0
            * (1.0
                - a2 / 12.0
                    * (1.0
                        - a2 / 30.0 * (1.0 - a2 / 56.0 * (1.0 - a2 / 90.0 * (1.0 - a2 / 132.0)))));
    match quadrant as i32 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_cos_matches_libm_closely() {
        for i in -1000..=1000 {
            let turns = i as f32 / 357.0;
            let (s, c) = sin_cos(turns);
            let a = f64::from(turns) * std::f64::consts::TAU;
            assert!((f64::from(s) - a.sin()).abs() < 2e-6, "sin {turns}");
            assert!((f64::from(c) - a.cos()).abs() < 2e-6, "cos {turns}");
        }
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
            b.unit();
            assert!(a.below(10) < 10);
            b.below(10);
            let r = a.range_i32(-3, 3);
            assert!((-3..=3).contains(&r));
            b.range_i32(-3, 3);
        }
        assert_eq!(Rng::new(1).next_u64(), Rng::new(1).next_u64());
        assert_ne!(mix(1, 2), mix(2, 1));
    }
}
