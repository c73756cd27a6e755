//! Exponential backoff with full jitter: after the n-th failure in a row wait a uniformly
//! random time in `0..=min(cap, base · 2ⁿ)`. The jitter keeps a fleet that lost its server at
//! the same moment from coming back in lockstep; the cap bounds how stale a device gets.

use std::time::Duration;

/// Retry delays for one kind of request.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts with no failure; delays grow from `base` to at most `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The ceiling of the next delay: `min(cap, base · 2^failures)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure and returns how long to wait (full jitter, `random` in `0..=1`).
    pub fn fail_with(&mut self, random: f64) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(random.clamp(0.0, 1.0))
    }

    /// Records a failure and returns a random wait.
    pub fn fail(&mut self) -> Duration {
        self.fail_with(random_unit())
    }

    /// Records a success: the next failure starts from `base` again.
    pub fn succeed(&mut self) {
        self.failures = 0;
    }
}

/// A uniform random number in `0..=1` from the OS generator (0.5 if it fails, which only
/// weakens the jitter).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_reset_on_success() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            ceilings.push(b.ceiling().as_secs());
            assert_eq!(b.fail_with(1.0).as_secs(), *ceilings.last().unwrap());
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        // Huge failure counts neither overflow nor exceed the cap.
        for _ in 0..100 {
            b.fail_with(1.0);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(300));
        b.succeed();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        assert_eq!(b.fail_with(0.0), Duration::ZERO);
        assert_eq!(b.fail_with(0.5), Duration::from_millis(100));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let r = random_unit();
            assert!((0.0..=1.0).contains(&r));
            seen.insert((r * 1e6) as u64);
        }
        assert!(seen.len() > 40, "the generator repeats itself");
    }
}
