//! Prediction samples for the server's Data Hub: now and then a frame per predicted class.
//!
//! The service feeds them through a [`PredictionSampler`] handle: [`PredictionSampler::wants`]
//! is a cheap per-class rate check (call it before encoding a JPEG), [`PredictionSampler::offer`]
//! hands the encoded image over. Neither ever waits: both use `try_lock` and say "no" when the
//! sync thread is draining. Samples wait in memory (bounded per class and in bytes) until the
//! next package; a crash loses the pending few, which is acceptable for periodic samples and
//! keeps camera images off the SD card.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tinylcm_protocol::datahub::valid_class_name;

/// Largest image accepted.
pub const MAX_IMAGE_BYTES: usize = 256 << 10;
/// Most classes tracked.
pub const MAX_CLASSES: usize = 64;

/// A sample waiting for a package.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingSample {
    /// The predicted class.
    pub class: String,
    /// The model's confidence, 0..=1.
    pub confidence: f32,
    /// When the frame was taken (Unix ms).
    pub unix_ms: u64,
    /// The JPEG.
    pub jpeg: Vec<u8>,
}

#[derive(Debug, Default)]
struct Inner {
    last_taken: BTreeMap<String, u64>,
    pending: Vec<PendingSample>,
}

/// The handle the service feeds (cheap to clone).
#[derive(Debug, Clone)]
pub struct PredictionSampler {
    inner: Arc<Mutex<Inner>>,
    per_class: usize,
    interval_ms: u64,
}

impl PredictionSampler {
    /// At most `per_class` pending samples per class, one per class every `interval_ms`.
    pub fn new(per_class: usize, interval_ms: u64) -> Self {
        PredictionSampler {
            inner: Arc::default(),
            per_class,
            interval_ms,
        }
    }

    /// Whether a frame of `class` at `now_ms` would be taken (never waits).
    pub fn wants(&self, class: &str, now_ms: u64) -> bool {
        let Ok(inner) = self.inner.try_lock() else {
            return false;
        };
        self.admits(&inner, class, now_ms)
    }

    fn admits(&self, inner: &Inner, class: &str, now_ms: u64) -> bool {
        if self.per_class == 0 || !valid_class_name(class) {
            return false;
        }
        let due = inner
            .last_taken
            .get(class)
            .is_none_or(|t| now_ms.saturating_sub(*t) >= self.interval_ms);
        let pending = inner.pending.iter().filter(|s| s.class == class).count();
        let known = inner.last_taken.contains_key(class) || inner.last_taken.len() < MAX_CLASSES;
        due && known && pending < self.per_class
    }

    /// Hands over a JPEG of a frame predicted as `class`; `false` when not taken (rate, bounds,
    /// not a JPEG, or the sync thread holds the lock).
    pub fn offer(&self, class: &str, confidence: f32, unix_ms: u64, jpeg: Vec<u8>) -> bool {
        if jpeg.len() > MAX_IMAGE_BYTES
            || !jpeg.starts_with(&[0xff, 0xd8])
            || !(0.0..=1.0).contains(&confidence)
        {
            return false;
        }
        let Ok(mut inner) = self.inner.try_lock() else {
            return false;
        };
        if !self.admits(&inner, class, unix_ms) {
            return false;
        }
        inner.last_taken.insert(class.to_string(), unix_ms);
        inner.pending.push(PendingSample {
            class: class.to_string(),
            confidence,
            unix_ms,
            jpeg,
        });
        true
    }

    /// Takes every pending sample (for the sync thread).
    pub fn take(&self) -> Vec<PendingSample> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut inner.pending)
    }

    /// Puts samples back that did not fit a package (oldest kept first, bounds still hold).
    pub fn put_back(&self, samples: Vec<PendingSample>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut merged = samples;
        merged.append(&mut inner.pending);
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        merged.retain(|s| {
            let n = per.entry(s.class.clone()).or_default();
            *n += 1;
            *n <= self.per_class
        });
        inner.pending = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: [u8; 4] = [0xff, 0xd8, 0xff, 0xd9];

    #[test]
    fn rate_and_bounds_per_class() {
        let s = PredictionSampler::new(2, 1000);
        assert!(s.wants("cube", 0));
        assert!(s.offer("cube", 0.9, 0, JPEG.to_vec()));
        assert!(!s.wants("cube", 500));
        assert!(!s.offer("cube", 0.9, 500, JPEG.to_vec()));
        assert!(s.offer("cube", 0.9, 1000, JPEG.to_vec()));
        // Per-class bound reached until the sync thread takes them.
        assert!(!s.offer("cube", 0.9, 5000, JPEG.to_vec()));
        assert!(s.offer("ball", 0.5, 5000, JPEG.to_vec()));
        assert!(!s.offer("bad name", 0.5, 5000, JPEG.to_vec()));
        assert!(!s.offer("ball", 1.5, 9000, JPEG.to_vec()));
        assert!(!s.offer("ball", 0.5, 9000, b"PNG".to_vec()));
        let taken = s.take();
        assert_eq!(taken.len(), 3);
        assert!(s.offer("cube", 0.9, 6000, JPEG.to_vec()));
        s.put_back(taken);
        let again = s.take();
        assert_eq!(again.iter().filter(|p| p.class == "cube").count(), 2);
        assert_eq!(again.len(), 3);
    }
}
