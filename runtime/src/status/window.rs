//! Confidence statistics of one reporting interval, in fixed memory.
//!
//! The low tail of the confidence (its 10th percentile) moves before the mean does when the
//! scene drifts, so the report carries it. A percentile needs the samples' distribution;
//! keeping every sample would allocate as the frame rate grows, so confidences are counted
//! into 1 001 bins of width 0.001 instead: O(1) per frame, 4 KiB, no allocation after
//! construction, and a resolution far below what the figure is read for.

use super::report::ConfidenceStats;

/// Bins of width 0.001 over 0..=1.
const BINS: usize = 1001;

/// Accumulates one interval's confidences.
#[derive(Debug, Clone)]
pub struct ConfidenceWindow {
    bins: Box<[u32; BINS]>,
    frames: u64,
    sum: f64,
    min: f32,
}

impl Default for ConfidenceWindow {
    fn default() -> Self {
        ConfidenceWindow {
            bins: Box::new([0; BINS]),
            frames: 0,
            sum: 0.0,
            min: f32::INFINITY,
        }
    }
}

impl ConfidenceWindow {
    /// Counts one confidence; NaN and infinities are skipped, values outside 0..=1 are
    /// clamped into it (a model may emit unnormalised scores).
    pub fn add(&mut self, confidence: f32) {
        if !confidence.is_finite() {
            return;
        }
        let c = confidence.clamp(0.0, 1.0);
        let bin = ((c * 1000.0).round() as usize).min(BINS - 1);
        self.bins[bin] = self.bins[bin].saturating_add(1);
        self.frames += 1;
        self.sum += f64::from(c);
        self.min = self.min.min(c);
    }

    /// The interval's statistics.
    pub fn stats(&self) -> ConfidenceStats {
        if self.frames == 0 {
            return ConfidenceStats::default();
        }
        // The smallest bin with at least 10 % of the samples at or below it.
        let rank = self.frames.div_ceil(10);
        let mut seen = 0u64;
        let p10 = self.bins.iter().position(|&n| {
            seen += u64::from(n);
            seen >= rank
        });
        ConfidenceStats {
            frames: self.frames,
            mean: Some(self.sum / self.frames as f64),
            min: Some(f64::from(self.min)),
            p10: p10.map(|b| b as f64 / 1000.0),
        }
    }

    /// Starts a new interval (no allocation).
    pub fn clear(&mut self) {
        self.bins.fill(0);
        self.frames = 0;
        self.sum = 0.0;
        self.min = f32::INFINITY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_min_and_tenth_percentile() {
        let mut w = ConfidenceWindow::default();
        assert_eq!(w.stats(), ConfidenceStats::default());
        for i in 1..=100 {
            w.add(i as f32 / 100.0);
        }
        let s = w.stats();
        assert_eq!(s.frames, 100);
        assert!((s.mean.unwrap() - 0.505).abs() < 1e-6, "{s:?}");
        assert!((s.min.unwrap() - 0.01).abs() < 1e-6, "{s:?}");
        assert_eq!(s.p10, Some(0.1));
        w.clear();
        w.add(0.7);
        assert_eq!(w.stats().p10, Some(0.7));
        assert_eq!(w.stats().frames, 1);
    }

    #[test]
    fn non_finite_is_skipped_and_out_of_range_clamped() {
        let mut w = ConfidenceWindow::default();
        w.add(f32::NAN);
        w.add(f32::INFINITY);
        assert_eq!(w.stats().frames, 0);
        w.add(7.0);
        w.add(-3.0);
        let s = w.stats();
        assert_eq!(s.frames, 2);
        assert_eq!(s.min, Some(0.0));
        assert_eq!(s.p10, Some(0.0));
        assert_eq!(s.mean, Some(0.5));
    }
}
